"""Streaming from the worker: chunk by chunk, token for token what transformers' ``generate`` says."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.config import ModelConfig
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import PromptBuilder, make_format
from bot.inference.loading import LoadedModel, load_model
from bot.inference.random_model import random_weights_model
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import FinishReason, Prompt, SamplingParams
from bot.inference.worker import LocalBackend
from tests.inference._streams import finished, greedy_params, run, start

CAPITAL = "What is the capital of France?"  # greedy: "The capital of France is Paris." then EOS (8 tokens)
STORY = "Write a long story about a dragon who loves tea and lives in the mountains near a small village."
QUESTIONS = ["Say hi.", "List three colors.", "What is 2+2?", "Tell me a joke."]


async def test_chunks_arrive_one_by_one(backend, prompt_for):
    """A reply comes as several chunks with growing token counts; only the last carries a finish reason."""
    stream = await run(backend, prompt_for(STORY), greedy_params(16))

    assert len(stream.chunks) > 1
    assert all(chunk.finish_reason is None for chunk in stream.chunks[:-1])
    assert stream.chunks[-1].finish_reason is not None
    counts = [chunk.completion_tokens for chunk in stream.chunks]
    assert counts == sorted(counts)
    assert counts[-1] == 16


async def test_greedy_text_matches_transformers_generate(backend, prompt_for, greedy):
    """One request alone gives exactly the text and token count of greedy ``model.generate``."""
    prompt = prompt_for(STORY)
    expected = greedy(prompt, 20)

    stream = await run(backend, prompt, greedy_params(20))

    assert stream.text == expected.text
    assert stream.completion_tokens == len(expected.token_ids)


async def test_end_of_sequence_finishes_with_stop(backend, prompt_for, greedy):
    """A reply that reaches EOS ends with STOP, counting the EOS token, and no EOS text."""
    prompt = prompt_for(CAPITAL)
    expected = greedy(prompt, 24)
    assert expected.finish is FinishReason.STOP  # the premise: this answer is short

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.finish is FinishReason.STOP
    assert stream.text == expected.text == "The capital of France is Paris."
    assert stream.completion_tokens == len(expected.token_ids)


async def test_max_new_tokens_finishes_with_length(backend, prompt_for, greedy):
    """A reply cut by ``max_new_tokens`` ends with LENGTH after exactly that many tokens."""
    prompt = prompt_for(CAPITAL)

    stream = await run(backend, prompt, greedy_params(3))

    assert stream.finish is FinishReason.LENGTH
    assert stream.completion_tokens == 3
    assert stream.text == greedy(prompt, 3).text == "The capital of"


async def test_stop_sequence_cuts_the_text(backend, prompt_for):
    """A stop sequence spanning several tokens ends the reply just before it, with STOP."""
    prompt = prompt_for(CAPITAL, stop=("f Fra",))  # inside " of" + " France"

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.finish is FinishReason.STOP
    assert stream.text == "The capital o"
    assert stream.completion_tokens < 8


async def test_stop_sequence_never_streams_its_start(backend, prompt_for):
    """No chunk shows the beginning of a stop sequence that is later completed."""
    prompt = prompt_for(CAPITAL, stop=("France is",))

    stream = await run(backend, prompt, greedy_params(24))

    assert stream.text == "The capital of "
    assert all("France" not in chunk.text for chunk in stream.chunks)


async def test_prompts_of_different_lengths_batched_together_match_generate(seam_backend, prompt_for, greedy):
    """Rows with different prompt lengths prefilled as one left-padded batch each give their own greedy output."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) == len(prompts)
    worker, model = await seam_backend()
    pacer_prompt = prompt_for(STORY)
    pacer, pacer_task = start(worker, pacer_prompt, greedy_params(24))
    await pacer.reached(1)

    await model.hold()  # the worker waits inside a decode step while all four reach its inbox
    tasks = [start(worker, p, greedy_params(24))[1] for p in prompts]
    await model.release()
    *streams, pacer = await finished(*tasks, pacer_task)

    assert (len(prompts), max(len(p) for p in prompts)) in model.prefill_shapes  # one padded prefill
    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 24)), stream.text
    assert pacer.matches(greedy(pacer_prompt, 24)), pacer.text  # the row the four were merged into


async def test_request_joining_mid_generation_matches_generate(backend, prompt_for, greedy):
    """A request merged into a running batch, and the rows already there, decode exactly as alone."""
    first, second = prompt_for(STORY), prompt_for("Say hi.")
    running, running_task = start(backend, first, greedy_params(24))
    await running.reached(6)

    joined, joined_task = start(backend, second, greedy_params(24))
    await finished(running_task, joined_task)

    assert joined.first < running.last  # it really joined while the other was decoding
    assert running.matches(greedy(first, 24)), running.text
    assert joined.matches(greedy(second, 24)), joined.text


async def test_sampling_settings_are_per_row(backend, prompt_for, greedy):
    """A greedy row stays greedy while it shares the batch with sampled rows."""
    prompt = prompt_for(STORY)
    sampled = [
        start(backend, prompt, SamplingParams(max_new_tokens=24, temperature=1.5, repetition_penalty=1.3, seed=s))[1]
        for s in range(3)
    ]
    greedy_stream, greedy_task = start(backend, prompt, greedy_params(24))

    await finished(greedy_task, *sampled)

    assert greedy_stream.matches(greedy(prompt, 24))


# -- a LLaMA-1-style tokenizer: Continue keeps the space before the first new word ---------------

CONTINUED = "one two three four"
CHAIN = ("▁four", "▁five", "▁six", "▁", "<0xF0>", "<0x9F>", "<0x90>", "<0x89>", "▁seven", "</s>")
"""What the tiny LLaMA below writes greedily: each token's successor; ``▁`` and four bytes make " 🐉"."""


def _follow(model: Any, chain: Sequence[int]) -> None:
    """Rewire ``model`` so that its greedy choice after each token of ``chain`` is the next one.

    With attention and MLP outputs zeroed, the last hidden state is the current token's embedding
    (normalized), so an output row equal to that embedding's direction wins by a wide margin.
    """
    assert not model.config.tie_word_embeddings  # the output rows are rewritten below
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings, head = model.get_input_embeddings().weight, model.lm_head.weight
        head.zero_()
        for token, following in itertools.pairwise(chain):
            head[following] = embeddings[token] / embeddings[token].norm()


@pytest.fixture(scope="module")
def llama_chain(
    llama_tokenizer_folder: Path, llama_tokenizer: HFTokenizer, tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    """A tiny LLaMA over the LLaMA-style tokenizer that writes :data:`CHAIN` greedily, loaded the bot's way."""
    cache = tmp_path_factory.mktemp("models")
    vocab = len(llama_tokenizer.hf)
    variant = random_weights_model("tiny", cache, tokenizer=llama_tokenizer_folder, vocab_size=vocab)
    loaded = load_model(variant, device="cpu", dtype="float32", cache_dir=cache)
    _follow(loaded.model, loaded.tokenizer.hf.convert_tokens_to_ids(list(CHAIN)))
    return loaded


@pytest.fixture
async def llama_backend(llama_chain: LoadedModel) -> AsyncIterator[LocalBackend]:
    """A started worker over the tiny LLaMA."""
    worker = LocalBackend(ModelConfig(name="llama", context_length=2048), loaded=llama_chain)
    await worker.start()
    yield worker
    await worker.close()


def continue_prompt(tokenizer: HFTokenizer) -> Prompt:
    """The airoboros prompt that asks the model to go on with its reply "one two three four"."""
    builder = PromptBuilder(make_format("airoboros", tokenizer, "A chat."), tokenizer, context_length=2048)
    turns = (ChatMessage("user", "Count to six."), ChatMessage("assistant", CONTINUED))
    return builder.build(Dialogue(None, turns, continue_last=True), max_new_tokens=24)


def reference(loaded: LoadedModel, prompt: Prompt, max_new_tokens: int) -> list[int]:
    """The tokens transformers' own greedy ``generate`` writes after ``prompt``."""
    ids = torch.tensor([prompt.token_ids])
    with torch.inference_mode():
        out = loaded.model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens
        )
    return list(out[0, ids.shape[1] :].tolist())


async def test_continue_with_llama_tokenizer_keeps_the_leading_space(llama_backend, llama_chain):
    """Continuing after "four", the worker streams " five six 🐉 seven": the whole decode minus the prompt's."""
    tokenizer = llama_chain.tokenizer
    prompt = continue_prompt(tokenizer)
    assert prompt.text.endswith("ASSISTANT: " + CONTINUED)
    generated = reference(llama_chain, prompt, 24)
    assert tokenizer.hf.convert_ids_to_tokens(generated) == list(CHAIN[1:])  # the premise: the model's greedy reply
    whole, before = tokenizer.decode([*prompt.token_ids, *generated]), tokenizer.decode(prompt.token_ids)

    stream = await run(llama_backend, prompt, greedy_params(24))

    assert stream.text == whole[len(before) :] == " five six 🐉 seven"
    assert (stream.finish, stream.completion_tokens) == (FinishReason.STOP, len(generated))


async def test_llama_reply_cut_inside_a_character_ends_as_the_whole_decode(llama_backend, llama_chain):
    """A length cut between the bytes of an emoji flushes what decoding prompt and reply together shows."""
    tokenizer = llama_chain.tokenizer
    prompt = continue_prompt(tokenizer)
    generated = reference(llama_chain, prompt, 5)  # "▁five ▁six ▁ <0xF0> <0x9F>"
    whole, before = tokenizer.decode([*prompt.token_ids, *generated]), tokenizer.decode(prompt.token_ids)

    stream = await run(llama_backend, prompt, greedy_params(5))

    assert stream.text == whole[len(before) :] == " five six \ufffd\ufffd"
    assert stream.finish is FinishReason.LENGTH
