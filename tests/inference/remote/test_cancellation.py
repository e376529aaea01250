"""Closing or cancelling a generation drops the connection, so the server stops generating."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import GenerationError
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Chunk, Prompt, SamplingParams
from tests.inference.remote._fake_vllm import FakeVLLM, Reply, token


async def test_closing_the_iterator_disconnects(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """``aclose()`` after the first chunk closes the connection; the server sees it at once."""
    fake.queue(Reply([token("Hello")], then="drip"))
    chunks = backend.generate(prompt, SamplingParams())
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(fake.disconnected.wait(), timeout=2)


async def test_cancelling_the_consumer_disconnects(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Cancelling the task that reads the stream closes the connection."""
    fake.queue(Reply([token("Hello")], then="drip"))
    flowing = asyncio.Event()
    received: list[Chunk] = []

    async def consume() -> None:
        async for chunk in backend.generate(prompt, SamplingParams()):
            received.append(chunk)
            if len(received) == 3:
                flowing.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(flowing.wait(), timeout=2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.disconnected.wait(), timeout=2)


async def test_close_fails_the_generation_in_flight(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """``close()`` ends a generation waiting on the server with a shutting-down GenerationError."""
    fake.queue(Reply([token("Hello")], then="stall"))
    chunks = backend.generate(prompt, SamplingParams())
    await anext(chunks)
    waiting = asyncio.ensure_future(anext(chunks))
    await asyncio.sleep(0.05)
    await backend.close()
    with pytest.raises(GenerationError, match="shutting down"):
        await asyncio.wait_for(waiting, timeout=2)


async def test_generate_after_close_is_refused(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """After ``close()`` a new generation fails at once and sends nothing."""
    await backend.close()
    with pytest.raises(GenerationError, match="shutting down"):
        await anext(backend.generate(prompt, SamplingParams()))
    assert fake.requests == []
