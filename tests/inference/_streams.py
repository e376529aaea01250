"""Helpers for driving the worker: consume a generation while recording when each chunk came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Chunk, FinishReason, Prompt, SamplingParams
from bot.inference.worker import LocalBackend

REFERENCE_TOKENS = 24
"""How many tokens the greedy reference is computed for; tests ask for at most this many."""
WAIT_S = 60.0
"""No single wait in these tests should come anywhere near this on a laptop CPU."""


def greedy_params(max_new_tokens: int) -> SamplingParams:
    """Greedy decoding, so outputs can be compared token for token."""
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)


@dataclass(frozen=True, slots=True)
class Expected:
    """A reference generation: its tokens, its text, and why it ended."""

    token_ids: tuple[int, ...]
    text: str
    finish: FinishReason


def expected_from(ids: Sequence[int], tokenizer: HFTokenizer, eos: int | list[int] | None) -> Expected:
    """The reference for ``ids``: ``STOP`` if the last one is an end-of-sequence token."""
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    finish = FinishReason.STOP if ids and ids[-1] in eos_ids else FinishReason.LENGTH
    return Expected(tuple(ids), tokenizer.decode(ids), finish)


@dataclass
class Stream:
    """Everything one consumer saw: the chunks, when each came, and whether it ended."""

    chunks: list[Chunk] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    done: bool = False
    _grew: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def text(self) -> str:
        return "".join(chunk.text for chunk in self.chunks)

    @property
    def finish(self) -> FinishReason | None:
        return self.chunks[-1].finish_reason if self.chunks else None

    @property
    def completion_tokens(self) -> int:
        return self.chunks[-1].completion_tokens if self.chunks else 0

    @property
    def first(self) -> float:
        return self.times[0]

    @property
    def last(self) -> float:
        return self.times[-1]

    def matches(self, expected: Expected) -> bool:
        """Whether the stream ended exactly as the reference did."""
        return (self.text, self.completion_tokens, self.finish) == (
            expected.text,
            len(expected.token_ids),
            expected.finish,
        )

    async def consume(self, chunks: AsyncGenerator[Chunk]) -> Stream:
        """Read ``chunks`` to the end, closing the generator whatever happens."""
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    self.chunks.append(chunk)
                    self.times.append(time.monotonic())
                    async with self._grew:
                        self._grew.notify_all()
        finally:
            self.done = True
            async with self._grew:
                self._grew.notify_all()
        return self

    async def reached(self, count: int) -> None:
        """Wait until ``count`` chunks came (fails if the stream ended first)."""
        async with asyncio.timeout(WAIT_S), self._grew:
            await self._grew.wait_for(lambda: len(self.chunks) >= count or self.done)
        assert len(self.chunks) >= count, f"the stream ended after {len(self.chunks)} chunks"


def start(backend: LocalBackend, prompt: Prompt, params: SamplingParams) -> tuple[Stream, asyncio.Task[Stream]]:
    """Begin consuming a generation in its own task."""
    stream = Stream()
    return stream, asyncio.create_task(stream.consume(backend.generate(prompt, params)))


async def run(backend: LocalBackend, prompt: Prompt, params: SamplingParams) -> Stream:
    """One whole generation."""
    async with asyncio.timeout(WAIT_S):
        return await Stream().consume(backend.generate(prompt, params))


async def finished(*tasks: asyncio.Task[Stream]) -> list[Stream]:
    """Wait for ``tasks`` (bounded, so a hung worker fails the test instead of the run)."""
    async with asyncio.timeout(WAIT_S):
        return list(await asyncio.gather(*tasks))
