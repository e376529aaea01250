"""A failing request fails alone: the rest of its batch goes on exactly and the worker keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from bot.config import ModelConfig
from bot.errors import GenerationError
from bot.inference.types import Prompt, SamplingParams
from bot.inference.worker import LocalBackend
from tests.inference._streams import WAIT_S, finished, greedy_params, run, start

QUESTIONS = ["Say hi.", "List three colors.", "Tell me a joke."]
VICTIM = "Translate 'hello' to Spanish."  # greedy: "Hola." whose first token no other reply here uses


def poisoned(prompt: Prompt, vocab_size: int) -> Prompt:
    """``prompt`` with a token id past the end of the vocabulary: the embedding lookup fails."""
    return dataclasses.replace(prompt, token_ids=(*prompt.token_ids[:-1], vocab_size + 7))


async def assert_fails_cleanly(task: asyncio.Task[Any]) -> None:
    with pytest.raises(GenerationError) as failure:
        async with asyncio.timeout(WAIT_S):
            await task
    message = str(failure.value)
    assert message == "The model failed while answering; please try again."


async def test_bad_token_id_fails_with_generation_error(backend, prompt_for, embedded, greedy):
    """A prompt with an out-of-vocabulary id fails alone, and the next request is answered."""
    vocab = embedded.model.config.vocab_size
    _, bad = start(backend, poisoned(prompt_for(QUESTIONS[0]), vocab), greedy_params(8))
    await assert_fails_cleanly(bad)

    prompt = prompt_for(QUESTIONS[1])
    stream = await run(backend, prompt, greedy_params(8))
    assert stream.matches(greedy(prompt, 8))


async def test_empty_prompt_fails_with_generation_error(backend, prompt_for, greedy):
    """A prompt without a single token fails alone instead of generating from nothing."""
    _, bad = start(backend, Prompt("", (), ()), greedy_params(8))
    await assert_fails_cleanly(bad)

    prompt = prompt_for(QUESTIONS[0])
    assert (await run(backend, prompt, greedy_params(8))).matches(greedy(prompt, 8))


async def test_bad_request_admitted_with_good_ones_fails_alone(seam_backend, prompt_for, embedded, greedy):
    """A bad prompt admitted in one group with good ones fails while the good ones finish exactly."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    worker, model = await seam_backend()
    pacer_prompt = prompt_for("What is 2+2?")
    pacer, pacer_task = start(worker, pacer_prompt, greedy_params(12))
    await pacer.reached(1)

    await model.hold()  # all three reach the inbox while the worker is parked: one drain, one admission
    good = [start(worker, p, greedy_params(16))[1] for p in prompts[:2]]
    _, bad = start(worker, poisoned(prompts[2], embedded.model.config.vocab_size), greedy_params(16))
    await model.release()
    await assert_fails_cleanly(bad)
    pacer, *streams = await finished(pacer_task, *good)

    assert (2, max(len(p) for p in prompts[:2])) in model.prefill_shapes  # the good two, prefilled together
    assert pacer.matches(greedy(pacer_prompt, 12)), pacer.text
    for prompt, stream in zip(prompts[:2], streams, strict=True):
        assert stream.matches(greedy(prompt, 16)), stream.text


async def test_bad_request_joining_a_running_batch_fails_alone(backend, prompt_for, embedded, greedy):
    """A bad prompt arriving mid-generation fails; the running rows finish exactly; the worker serves on."""
    prompts = [prompt_for(q) for q in QUESTIONS[:2]]
    runs = [start(backend, p, greedy_params(24)) for p in prompts]
    await runs[0][0].reached(3)

    _, bad = start(backend, poisoned(prompt_for(QUESTIONS[2]), embedded.model.config.vocab_size), greedy_params(8))
    await assert_fails_cleanly(bad)
    streams = await finished(*(task for _, task in runs))

    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 24)), stream.text
    after = prompt_for(QUESTIONS[2])
    assert (await run(backend, after, greedy_params(8))).matches(greedy(after, 8))


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_new_tokens=8, temperature=1.0, seed=2**64),
        SamplingParams(max_new_tokens=8, temperature=1e-45),
    ],
    ids=["seed-out-of-range", "temperature-overflows"],
)
async def test_unusable_sampling_settings_fail_alone(backend, prompt_for, greedy, params):
    """A request whose sampling cannot run (a seed torch rejects, logits / T = inf) fails; the batch goes on."""
    prompt = prompt_for(QUESTIONS[0])
    running, running_task = start(backend, prompt, greedy_params(24))
    await running.reached(2)

    _, bad = start(backend, prompt_for(QUESTIONS[1]), params)
    await assert_fails_cleanly(bad)
    (running,) = await finished(running_task)

    assert running.matches(greedy(prompt, 24)), running.text


async def test_out_of_vocabulary_ids_never_reach_the_model(seam_backend, prompt_for, embedded):
    """A bad id is refused before the forward pass (on a GPU the lookup would break CUDA for every request)."""
    worker, model = await seam_backend()
    vocab = embedded.model.config.vocab_size

    _, bad = start(worker, poisoned(prompt_for(QUESTIONS[0]), vocab), greedy_params(8))
    await assert_fails_cleanly(bad)
    await run(worker, prompt_for(QUESTIONS[1]), greedy_params(2))

    assert 0 <= model.largest_input_id < vocab


async def test_failed_prefill_is_retried_one_by_one(seam_backend, prompt_for, greedy):
    """A prefill of several new requests that fails is redone per request: only the bad one fails."""
    prompts = [prompt_for(q) for q in QUESTIONS[:2]]
    victim = prompt_for(VICTIM)
    marker = next(t for t in victim.token_ids if t and all(t not in p.token_ids for p in prompts))
    worker, model = await seam_backend(fail_on=marker, during="prefill")
    pacer_prompt = prompt_for(QUESTIONS[2])
    pacer, pacer_task = start(worker, pacer_prompt, greedy_params(16))
    await pacer.reached(1)

    await model.hold()  # the three below reach the inbox while the worker is parked: one drain, one prefill
    good = [start(worker, p, greedy_params(16))[1] for p in prompts]
    _, bad = start(worker, victim, greedy_params(8))
    await model.release()

    await assert_fails_cleanly(bad)
    streams = await finished(pacer_task, *good)
    assert model.failed_batch_sizes == [3, 1]
    for prompt, stream in zip([pacer_prompt, *prompts], streams, strict=True):
        assert stream.matches(greedy(prompt, 16)), stream.text


async def test_decode_failure_is_bisected_to_the_failing_row(seam_backend, prompt_for, greedy):
    """A decode step that fails for one row is split until that row fails alone; the others go on exactly."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    victim = prompt_for(VICTIM)
    marker = greedy(victim, 1).token_ids[0]
    assert all(marker not in greedy(p, 24).token_ids for p in prompts)  # only the victim's row trips it
    worker, model = await seam_backend(fail_on=marker, during="decode")
    runs = [start(worker, p, greedy_params(24)) for p in prompts]
    for stream, _ in runs:
        await stream.reached(1)

    _, bad = start(worker, victim, greedy_params(8))
    await assert_fails_cleanly(bad)
    streams = await finished(*(task for _, task in runs))
    after = await run(worker, prompts[0], greedy_params(8))

    assert model.failed_batch_sizes == [4, 2, 1]  # the whole step, then the half holding the victim, then it alone
    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 24)), stream.text
    assert after.matches(greedy(prompts[0], 8))


async def test_decode_failure_of_a_lone_request_fails_it(seam_backend, prompt_for, greedy):
    """A request whose decode step fails while it is alone in the batch fails at once; the next one is served."""
    victim = prompt_for(VICTIM)
    worker, model = await seam_backend(fail_on=greedy(victim, 1).token_ids[0], during="decode")

    _, bad = start(worker, victim, greedy_params(8))
    await assert_fails_cleanly(bad)
    after = await run(worker, prompt_for(QUESTIONS[0]), greedy_params(8))

    assert model.failed_batch_sizes == [1]
    assert after.matches(greedy(prompt_for(QUESTIONS[0]), 8))


async def test_unexpected_error_fails_in_flight_requests_and_the_worker_carries_on(seam_backend, prompt_for, greedy):
    """An error of no expected kind fails all requests in flight, the one being admitted included; service resumes."""
    victim = prompt_for(VICTIM)
    marker = next(t for t in victim.token_ids if t and t not in prompt_for(QUESTIONS[0]).token_ids)
    worker, _ = await seam_backend(fail_on=marker, during="prefill", error=KeyError)
    running, running_task = start(worker, prompt_for(QUESTIONS[0]), greedy_params(24))
    await running.reached(1)

    _, bad = start(worker, victim, greedy_params(8))
    await assert_fails_cleanly(bad)
    await assert_fails_cleanly(running_task)

    prompt = prompt_for(QUESTIONS[1])
    assert (await run(worker, prompt, greedy_params(8))).matches(greedy(prompt, 8))


async def test_close_fails_running_and_queued_requests(embedded, prompt_for):
    """Closing the backend ends the running and the queued generation with GenerationError and refuses new ones."""
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded, max_batch_size=1)
    await worker.start()
    endless = SamplingParams(max_new_tokens=4000, temperature=0.0)
    running, running_task = start(worker, prompt_for(QUESTIONS[0]), endless)
    _, queued_task = start(worker, prompt_for(QUESTIONS[1]), endless)
    await running.reached(2)

    await worker.close()

    for task in (running_task, queued_task):
        with pytest.raises(GenerationError, match="shutting down"):
            await task
    with pytest.raises(GenerationError, match="shutting down"):
        await run(worker, prompt_for(QUESTIONS[2]), greedy_params(4))


class WorkerKiller(BaseException):
    """Not an Exception: nothing in the worker loop catches it, so the thread dies."""


async def test_a_dead_worker_thread_fails_its_requests_and_is_restarted(seam_backend: Any, prompt_for: Any) -> None:
    """If the worker thread dies, its requests fail instead of hanging, and the next request restarts it."""
    doomed, survivor = prompt_for("Say hi."), prompt_for("Tell me a joke.")
    marker = next(t for t in doomed.token_ids if t not in survivor.token_ids)
    worker, _ = await seam_backend(fail_on=marker, during="prefill", error=WorkerKiller)
    thread = worker._thread
    with pytest.raises(GenerationError):
        await run(worker, doomed, greedy_params(4))
    assert thread is not None
    thread.join(WAIT_S)
    assert not thread.is_alive()
    stream = await run(worker, survivor, greedy_params(4))
    assert stream.text
    assert worker._thread is not thread
