"""Prefix reuse in the worker: a conversation's follow-up prefills only its new tokens and answers the same."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest
import torch

from bot.config import ModelConfig
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import PromptBuilder, make_format
from bot.inference.batch import PREFIX_MIN_TOKENS
from bot.inference.loading import LoadedModel
from bot.inference.prefix import common_prefix
from bot.inference.types import Prompt, SamplingParams
from bot.inference.worker import LocalBackend
from tests.inference._streams import finished, greedy_params, run, start

OPENING = "Here is my story, read it closely: " + "the old lighthouse keeper counted ships at dusk " * 8
OTHER = "A different thread about gardening: " + "tomatoes need sun, water and patience every day " * 8
NEW_TOKENS = 12

Builder = Callable[..., Prompt]


@pytest.fixture(scope="module")
def thread(embedded: LoadedModel) -> Builder:
    """Build a conversation's prompt from alternating messages (user first), tagged with its conversation key."""
    tokenizer = embedded.tokenizer
    builder = PromptBuilder(
        make_format("chat-template", tokenizer, None), tokenizer, context_length=embedded.context_length
    )

    def build(key: str | None, *texts: str) -> Prompt:
        roles = ("user", "assistant")
        messages = tuple(ChatMessage(roles[i % 2], text) for i, text in enumerate(texts))  # type: ignore[arg-type]
        prompt = builder.build(Dialogue(None, messages), max_new_tokens=64)
        return dataclasses.replace(prompt, conversation=key)

    return build


@pytest.fixture
async def sized(embedded: LoadedModel) -> AsyncIterator[Callable[..., LocalBackend]]:
    """Start workers over the shared model with a given prefix cache budget (MB)."""
    workers: list[LocalBackend] = []

    async def make(prefix_cache_mb: float) -> LocalBackend:
        worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded, prefix_cache_mb=prefix_cache_mb)
        await worker.start()
        workers.append(worker)
        return worker

    yield make  # type: ignore[misc]
    for worker in workers:
        await worker.close()


async def turn(worker: LocalBackend, prompt: Prompt) -> tuple[str, int]:
    """Run one greedy reply; its text and how many prompt tokens were prefilled for it."""
    before = worker.prefilled_tokens
    stream = await run(worker, prompt, greedy_params(NEW_TOKENS))
    return stream.text, worker.prefilled_tokens - before


async def test_follow_up_with_reuse_answers_as_a_full_prefill_would(backend, thread, greedy):
    """The follow-up's greedy reply with the kept prefix equals transformers' generate() on the whole prompt."""
    first = thread("a", OPENING)
    reply, _ = await turn(backend, first)
    follow_up = thread("a", OPENING, reply, "And what happened next?")

    stream = await run(backend, follow_up, greedy_params(NEW_TOKENS))

    assert backend.prefixes.hits == 1
    assert stream.matches(greedy(follow_up, NEW_TOKENS)), stream.text


async def test_follow_up_prefills_only_its_new_tokens(backend, thread):
    """The follow-up runs only the tokens past what its conversation's kept entry shares with it."""
    first = thread("a", OPENING)
    reply, _ = await turn(backend, first)
    (kept,) = backend.prefixes.entries
    follow_up = thread("a", OPENING, reply, "And what happened next?")

    _, prefilled = await turn(backend, follow_up)

    shared = common_prefix(kept.token_ids, follow_up.token_ids)
    assert shared >= len(first)  # at least the whole earlier prompt is reused
    assert prefilled == len(follow_up) - shared


async def test_reuse_prefills_far_fewer_tokens_than_without(sized, thread):
    """With the prefix cache off the follow-up prefills the whole thread; with it, a small fraction of that."""
    counts = []
    for budget in (0, 64):
        worker = await sized(budget)
        reply, _ = await turn(worker, thread("a", OPENING))
        counts.append((await turn(worker, thread("a", OPENING, reply, "And then?")))[1])

    without, with_reuse = counts
    assert without == len(thread("a", OPENING, reply, "And then?"))
    assert with_reuse * 4 < without


async def test_regenerate_reuses_the_prompt_up_to_its_last_token(backend, thread, greedy):
    """Sending the same prompt again (Regenerate) prefills one token, answers the same, and keeps one entry."""
    prompt = thread("a", OPENING)
    await turn(backend, prompt)

    stream = await run(backend, prompt, greedy_params(NEW_TOKENS))

    assert backend.prefilled_tokens == len(prompt) + 1
    assert stream.matches(greedy(prompt, NEW_TOKENS)), stream.text
    assert len(backend.prefixes) == 1


async def test_next_turn_replaces_the_conversations_entry(backend, thread):
    """After the follow-up's reply, its conversation has one entry: the longer one, starting with the first."""
    first = thread("a", OPENING)
    reply, _ = await turn(backend, first)
    follow_up = thread("a", OPENING, reply, "And then?")
    await turn(backend, follow_up)

    (kept,) = backend.prefixes.entries
    assert kept.token_ids[: len(follow_up)] == follow_up.token_ids


async def test_interleaved_conversations_keep_separate_entries(backend, thread):
    """Two threads taking turns each reuse their own kept prefix and keep one entry each."""
    replies = {}
    for key, opening in (("a", OPENING), ("b", OTHER)):
        replies[key], _ = await turn(backend, thread(key, opening))
    prefilled = {}
    for key, opening in (("a", OPENING), ("b", OTHER)):
        follow_up = thread(key, opening, replies[key], "Go on.")
        prefilled[key] = (await turn(backend, follow_up))[1]

    assert sorted(e.conversation for e in backend.prefixes.entries) == ["a", "b"]
    assert all(count < 40 for count in prefilled.values())
    assert backend.prefixes.hits == 2


async def test_tiny_budget_evicts_the_least_recent_conversation(sized, thread):
    """With room for one entry, a second thread's reply evicts the first's, whose follow-up prefills in full."""
    worker = await sized(64)
    reply_a, _ = await turn(worker, thread("a", OPENING))
    one_entry = worker.prefixes.nbytes  # a's kept entry (the storage's size is gone once the worker idles)
    worker.prefixes.budget_bytes = int(one_entry * 1.5)
    await turn(worker, thread("b", OTHER))

    follow_up = thread("a", OPENING, reply_a, "And then?")
    _, prefilled = await turn(worker, follow_up)

    assert worker.prefixes.evictions >= 1
    assert prefilled == len(follow_up)
    assert worker.prefixes.nbytes <= worker.prefixes.budget_bytes


async def test_one_off_prompts_are_not_kept(backend, thread):
    """A prompt with no conversation key (a /joke, say) leaves nothing in the prefix cache."""
    await turn(backend, thread(None, OPENING))

    assert len(backend.prefixes) == 0


@pytest.mark.parametrize("error", [MemoryError, torch.OutOfMemoryError], ids=["MemoryError", "torch-OOM"])
async def test_failure_restoring_an_entry_falls_back_to_a_full_prefill(backend, thread, greedy, prompt_for, error):
    """Out of memory copying a kept prefix in: that request is prefilled in full and answers right; a running row
    is untouched and the entry is gone."""
    first = thread("a", OPENING)
    reply, _ = await turn(backend, first)
    kept = backend.prefixes.entries[0]

    def load(*args, **kwargs):
        raise error("injected")

    backend.kv.load = load
    other = prompt_for("List three colors.")
    running, running_task = start(backend, other, greedy_params(24))
    await running.reached(2)
    follow_up = thread("a", OPENING, reply, "And then?")
    before = backend.prefilled_tokens
    stream = await run(backend, follow_up, greedy_params(NEW_TOKENS))
    (running,) = await finished(running_task)

    assert backend.prefilled_tokens - before == len(follow_up)
    assert stream.matches(greedy(follow_up, NEW_TOKENS)), stream.text
    assert running.matches(greedy(other, 24)), running.text
    assert kept not in backend.prefixes.entries


async def test_failure_keeping_an_entry_loses_only_the_entry(backend, thread, greedy):
    """Out of memory copying a finished reply's cache out: the reply is whole, nothing is kept, the next turn
    is prefilled in full."""

    def snapshot(*args, **kwargs):
        raise torch.OutOfMemoryError("injected")

    backend.kv.snapshot = snapshot
    first = thread("a", OPENING)
    stream = await run(backend, first, greedy_params(NEW_TOKENS))
    follow_up = thread("a", OPENING, stream.text, "And then?")
    _, prefilled = await turn(backend, follow_up)

    assert stream.matches(greedy(first, NEW_TOKENS)), stream.text
    assert len(backend.prefixes) == 0
    assert prefilled == len(follow_up)


async def test_a_short_shared_head_is_not_reused(backend, thread):
    """A new thread sharing only the system prompt with a kept entry is prefilled in full (no pass of its own)."""
    await turn(backend, thread("a", OPENING))

    prompt = thread("b", "Hi!")
    _, prefilled = await turn(backend, prompt)

    assert common_prefix(backend.prefixes.entries[0].token_ids, prompt.token_ids) < PREFIX_MIN_TOKENS
    assert prefilled == len(prompt)


async def test_a_generating_conversations_kv_is_held_once(backend, thread):
    """While a follow-up generates, its conversation's kept entry is out of the cache (its slot holds that KV)."""
    reply, _ = await turn(backend, thread("a", OPENING))
    follow_up = thread("a", OPENING, reply, "And then?")

    stream, task = start(backend, follow_up, SamplingParams(max_new_tokens=24, temperature=0.0, ignore_eos=True))
    await stream.reached(1)
    during = len(backend.prefixes)
    await finished(task)

    assert during == 0
    assert len(backend.prefixes) == 1
