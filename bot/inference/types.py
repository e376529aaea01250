"""Values that cross the async/device boundary, and the protocols on either side of it; no torch here."""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol


class Tokenizer(Protocol):
    """What prompt building needs from a model's tokenizer."""

    @property
    def special_tokens(self) -> frozenset[str]:
        """Every string the tokenizer would turn into a special (added) token."""
        ...

    @property
    def bos_token_ids(self) -> list[int]:
        """The ids the tokenizer puts before a whole prompt (``[bos]`` for LLaMA, often none)."""
        ...

    def special_token_id(self, token: str) -> int:
        """The id of one special token string."""
        ...

    def encode_plain(self, text: str) -> list[int]:
        """Tokenize ``text`` with no BOS/EOS added and special-token strings kept as plain text."""
        ...

    def render_chat_template(self, messages: Sequence[dict[str, str]], *, continue_final_message: bool) -> str:
        """The tokenizer's own ``chat_template`` applied to ``messages`` (with a generation prompt)."""
        ...


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt: the exact string, its token ids, and where generation must stop."""

    text: str
    token_ids: tuple[int, ...]
    stop: tuple[str, ...]
    dropped_turns: int = 0
    conversation: str | None = None
    """The conversation this prompt continues (its key): the local worker keeps the KV cache of its reply for
    the next turn. ``None``: a one-off prompt, whose cache is not kept (it may still reuse a kept one)."""

    def __len__(self) -> int:
        return len(self.token_ids)


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

    def healthy(self) -> bool:
        """Whether the backend can serve now (the heartbeat behind ``python -m bot healthcheck`` reports it)."""
        ...

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[Chunk, None]:
        """Stream the reply to ``prompt``; closing or cancelling the iterator aborts it.

        Failure raises :class:`~bot.errors.GenerationError` from the iterator.
        """
        ...
