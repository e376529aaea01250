"""Values that cross the async/device boundary; no torch here."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from bot.core.prompts import Prompt
from bot.core.tokens import Tokenizer


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one reply is sampled; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.5
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False
    """Generate exactly ``max_new_tokens`` (benchmarks): EOS does not end the reply."""


class FinishReason(enum.StrEnum):
    """Why a generation ended."""

    STOP = "stop"
    """EOS or a stop sequence."""
    LENGTH = "length"
    """``max_new_tokens`` or the context window was reached."""
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of streamed text; the last chunk of a generation carries ``finish_reason``."""

    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None


class Backend(Protocol):
    """Something that turns prompts into streamed text: the local worker or a remote server."""

    name: str
    max_batch_size: int

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (available once started)."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens in the model's context window (available once started)."""
        ...

    async def start(self) -> None:
        """Load and warm up; called once before the first request."""
        ...

    async def close(self) -> None:
        """Stop serving; in-flight generations end with :class:`~bot.errors.GenerationError`."""
        ...

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[Chunk, None]:
        """Stream the reply to ``prompt``; closing or cancelling the iterator aborts it.

        Failure raises :class:`~bot.errors.GenerationError` from the iterator.
        """
        ...
