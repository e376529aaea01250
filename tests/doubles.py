"""Test doubles at the inference seam: a scripted backend with the real tokenizer behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping

from bot.config import Config
from bot.core.engine import Engine
from bot.errors import BusyError, GenerationError
from bot.inference.types import Chunk, FinishReason, Prompt, SamplingParams, Tokenizer

Script = Callable[[Prompt], str]


class ScriptedBackend:
    """Streams a scripted reply word by word; records every prompt (and its sampling params) and how many ran at once.

    A reply starting with ``FAIL`` raises :class:`GenerationError` after its first word.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        script: Script | None = None,
        *,
        name: str = "smollm2",
        context_length: int = 2048,
        max_batch_size: int = 4,
        delay: float = 0.01,
    ) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.max_batch_size = max_batch_size
        self.script = script or (lambda prompt: "Hello there, friend.")
        self.delay = delay
        self.prompts: list[Prompt] = []
        self.params: list[SamplingParams] = []
        self.active = 0
        self.peak = 0
        self.closed = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    def healthy(self) -> bool:
        return not self.closed

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[Chunk, None]:
        self.prompts.append(prompt)
        self.params.append(params)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            words = self.script(prompt).split(" ")
            for count, word in enumerate(words[: params.max_new_tokens], start=1):
                await asyncio.sleep(self.delay)
                if words[0] == "FAIL":
                    raise GenerationError("The model failed while answering; please try again.")
                last = count == len(words) or count == params.max_new_tokens
                reason = (FinishReason.STOP if count == len(words) else FinishReason.LENGTH) if last else None
                yield Chunk(word if count == 1 else " " + word, count, reason)
        finally:
            self.active -= 1


def scripted_engine(config: Config, backend: ScriptedBackend) -> Engine:
    """An :class:`Engine` serving ``backend`` as the config's default variant."""
    model = config.default_model
    return Engine(config, {model.name: Engine._wrap(model, backend, config)})


def scripted_variants(config: Config, backends: Mapping[str, ScriptedBackend]) -> Engine:
    """An :class:`Engine` serving one backend per configured variant (``backends`` keyed by the config's names)."""
    return Engine(
        config, {name: Engine._wrap(config.model(name), backend, config) for name, backend in backends.items()}
    )


class RecordingMeter:
    """A rate meter (:class:`~bot.inference.scheduler.Meter`) admitting ``limit`` requests per user; records counts."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.counted: dict[str, int] = {}
        self.refunds: list[str] = []

    def count(self, user: str) -> None:
        if self.counted.get(user, 0) >= self.limit:
            raise BusyError("You're sending requests too fast.")
        self.counted[user] = self.counted.get(user, 0) + 1

    def refund(self, user: str) -> None:
        self.refunds.append(user)
        self.counted[user] -= 1
