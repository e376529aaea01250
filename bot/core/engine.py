"""The engine: every configured model variant with its backend, prompt builder and scheduler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.config import Config, ModelConfig
from bot.core.prompts import PromptBuilder, make_format
from bot.errors import ConfigError
from bot.inference.scheduler import Admission, Scheduler
from bot.inference.types import Backend, Tokenizer

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Variant:
    """A model variant ready to serve."""

    config: ModelConfig
    backend: Backend
    builder: PromptBuilder
    scheduler: Scheduler

    @property
    def name(self) -> str:
        return self.config.name


def make_backend(variant: ModelConfig, config: Config) -> Backend:
    """The backend a variant's ``backend`` key names (not started yet)."""
    if variant.backend == "openai":
        from bot.inference.remote import OpenAIBackend

        return OpenAIBackend(
            variant,
            cache_dir=config.inference.cache_dir,
            max_batch_size=config.inference.max_batch_size,
            send_token_ids=variant.send_token_ids,
        )
    from bot.inference.worker import LocalBackend

    return LocalBackend(
        variant,
        device=config.inference.device,
        dtype=config.inference.dtype,
        cache_dir=config.inference.cache_dir,
        max_batch_size=config.inference.max_batch_size,
        prefix_cache_mb=config.inference.prefix_cache_mb,
        prefix_cache_offload=config.inference.prefix_cache_offload,
        compile=config.inference.compile,
    )


def make_builder(
    model: ModelConfig, config: Config, tokenizer: Tokenizer, context_length: int, *, prompt_format: str | None = None
) -> PromptBuilder:
    """The prompt builder for ``model``: its format (or ``prompt_format``), default system prompt and window."""
    name = prompt_format or model.resolved_prompt_format
    system = model.system_prompt
    if system is None and name == "airoboros":
        system = config.generation.system_prompt  # chat templates bring their own default
    return PromptBuilder(make_format(name, tokenizer, system), tokenizer, context_length=context_length)


class Engine:
    """Owns the variants' backends; open with :meth:`start`, close with :meth:`close`."""

    def __init__(self, config: Config, variants: dict[str, Variant]) -> None:
        self.config = config
        self._variants = variants
        self.admission = Admission()
        """Shared by every variant's scheduler: ``max_queued_per_user`` is one cap across variants, and a frontend's
        rate meter (:attr:`Admission.meter`) counts every request, whichever variant serves it."""
        for variant in variants.values():
            variant.scheduler.admission = self.admission

    @classmethod
    async def start(cls, config: Config, *, names: Sequence[str] | None = None) -> Engine:
        """Load and start the variants called ``names`` (default: all configured)."""
        chosen = [config.model(n) for n in names] if names else list(config.models)
        variants: dict[str, Variant] = {}
        try:
            for model in chosen:
                backend = make_backend(model, config)
                await backend.start()
                variants[model.name] = cls._wrap(model, backend, config)
        except BaseException:
            await asyncio.gather(*(v.backend.close() for v in variants.values()), return_exceptions=True)
            raise
        return cls(config, variants)

    @staticmethod
    def _wrap(model: ModelConfig, backend: Backend, config: Config) -> Variant:
        builder = make_builder(model, config, backend.tokenizer, backend.context_length)
        scheduler = Scheduler(
            backend,
            max_per_user=config.inference.max_queued_per_user,
            max_total=config.inference.max_queued_total,
        )
        return Variant(model, backend, builder, scheduler)

    @property
    def names(self) -> list[str]:
        return list(self._variants)

    def variant(self, name: str | None = None) -> Variant:
        """The variant called ``name``, or the default one."""
        if name is None:
            name = self.config.inference.default_model or next(iter(self._variants))
        try:
            return self._variants[name]
        except KeyError:
            raise ConfigError(f"no loaded model called {name!r}; available: {', '.join(self._variants)}") from None

    async def close(self) -> None:
        await asyncio.gather(*(v.backend.close() for v in self._variants.values()))
