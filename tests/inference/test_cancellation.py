"""Aborting a generation: closing the stream or cancelling its task drops the request from the batch."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from bot.config import ModelConfig
from bot.inference.types import SamplingParams
from bot.inference.worker import LocalBackend
from tests.inference._streams import WAIT_S, Stream, finished, greedy_params, start

STORY = "Write a long story about a dragon who loves tea and lives in the mountains near a small village."
QUESTIONS = ["Say hi.", "List three colors.", "What is 2+2?", "Tell me a joke."]
ENDLESS = SamplingParams(max_new_tokens=4000, temperature=0.0)
"""Far longer than any test waits: a request that is not dropped keeps its batch slot."""


@pytest.fixture
async def pair_backend(embedded):
    """A worker whose batch holds only two rows, so a leftover row visibly blocks a newcomer."""
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded, max_batch_size=2)
    await worker.start()
    yield worker
    await worker.close()


async def close_after(backend, prompt, chunks: int) -> Stream:
    """Read ``chunks`` chunks, then leave the ``async with aclosing`` block (closing the generator)."""
    stream = Stream()
    async with asyncio.timeout(WAIT_S), aclosing(backend.generate(prompt, ENDLESS)) as generation:
        async for chunk in generation:
            stream.chunks.append(chunk)
            if len(stream.chunks) == chunks:
                break
    return stream


async def cancel_after(backend, prompt, chunks: int) -> Stream:
    """Consume in a task and cancel that task once ``chunks`` chunks came."""
    stream, task = start(backend, prompt, ENDLESS)
    await stream.reached(chunks)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return stream


@pytest.mark.parametrize("abort", [close_after, cancel_after], ids=["aclose", "task-cancel"])
async def test_aborted_request_leaves_the_batch(pair_backend, prompt_for, greedy, abort):
    """After an abort mid-generation the freed slot serves a newcomer while the other row goes on exactly."""
    other_prompt, newcomer_prompt = prompt_for(QUESTIONS[1]), prompt_for(QUESTIONS[0])
    other, other_task = start(pair_backend, other_prompt, greedy_params(24))
    await other.reached(1)

    aborted = await abort(pair_backend, prompt_for(STORY), 3)
    newcomer, newcomer_task = start(pair_backend, newcomer_prompt, greedy_params(8))
    await finished(other_task, newcomer_task)

    assert aborted.finish is None
    assert newcomer.first < other.last  # the batch holds two rows: the aborted one must be gone
    assert other.matches(greedy(other_prompt, 24)), other.text
    assert newcomer.matches(greedy(newcomer_prompt, 8)), newcomer.text


async def test_many_concurrent_requests_survive_cancelling_some(backend, prompt_for, greedy):
    """Of twelve concurrent requests, four are cancelled mid-way; the eight others get exact outputs."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    story = prompt_for(STORY)
    plans = [(i, prompts[i % len(prompts)], 8 + 2 * (i % 8)) for i in range(12)]
    doomed = {1, 4, 7, 10}
    runs = {
        i: start(backend, story if i in doomed else p, ENDLESS if i in doomed else greedy_params(n))
        for i, p, n in plans
    }

    for i in doomed:
        await runs[i][0].reached(2)
        runs[i][1].cancel()
    survivors = await finished(*(runs[i][1] for i, _, _ in plans if i not in doomed))
    cancelled = await asyncio.gather(*(runs[i][1] for i in doomed), return_exceptions=True)

    assert all(isinstance(result, asyncio.CancelledError) for result in cancelled)
    assert all(runs[i][0].finish is None for i in doomed)
    kept = [(p, n) for i, p, n in plans if i not in doomed]
    for (prompt, n), stream in zip(kept, survivors, strict=True):
        assert stream.matches(greedy(prompt, n)), stream.text
    # Still serving, with every slot free again: a full batch of newcomers all run side by side.
    fresh = await finished(
        *(start(backend, prompts[i % 4], greedy_params(8))[1] for i in range(backend.max_batch_size))
    )
    assert max(s.first for s in fresh) < min(s.last for s in fresh)
    for i, stream in enumerate(fresh):
        assert stream.matches(greedy(prompts[i % 4], 8)), stream.text
