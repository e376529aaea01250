"""Concurrent requests share decode steps instead of waiting for each other."""

from __future__ import annotations

from tests.inference._streams import finished, greedy_params, start

QUESTIONS = ["Say hi.", "List three colors.", "Tell me a joke."]
LATECOMER = "What is the capital of France?"


async def test_concurrent_requests_overlap_in_time(backend, prompt_for, greedy):
    """Requests sent together stream side by side: every one starts before any one ends."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    streams = await finished(*(start(backend, p, greedy_params(16))[1] for p in prompts))

    assert max(s.first for s in streams) < min(s.last for s in streams)
    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 16)), stream.text


async def test_latecomer_starts_before_the_running_batch_ends(backend, prompt_for, greedy):
    """A request sent while others decode gets its first chunk before any of them finishes."""
    prompts = [prompt_for(q) for q in QUESTIONS]
    runs = [start(backend, p, greedy_params(24)) for p in prompts]
    await runs[0][0].reached(4)

    late, late_task = start(backend, prompt_for(LATECOMER), greedy_params(24))
    streams = await finished(*(task for _, task in runs), late_task)

    assert late.first < min(s.last for s in streams[:-1])
    assert late.matches(greedy(prompt_for(LATECOMER), 24)), late.text
