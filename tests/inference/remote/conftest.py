"""A fake vLLM per test, the embedded model's real tokenizer, and a started backend pointed at the fake."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ModelConfig
from bot.inference.remote import OpenAIBackend
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Prompt
from tests.inference.remote._fake_vllm import MODEL, FakeVLLM


@pytest.fixture(scope="session")
def remote_cache() -> Path:
    """The bot's cache folder, where the embedded GGUF is converted once."""
    return Path(os.environ.get("AIROBOROS_BOT_CACHE", "~/.cache/airoboros-bot")).expanduser()


@pytest.fixture(scope="session")
def embedded_folder(remote_cache: Path) -> Path:
    """The embedded model as a transformers folder (converted on the first run, ~25 s)."""
    from bot.inference.loading import resolve_model_path

    return resolve_model_path(ModelConfig(name="smollm2"), remote_cache)


@pytest.fixture(scope="session")
def tokenizer(embedded_folder: Path) -> HFTokenizer:
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(str(embedded_folder)))


@pytest.fixture
def prompt(tokenizer: HFTokenizer) -> Prompt:
    """A short airoboros-style prompt with its stop string."""
    text = "A chat. USER: Say hello. ASSISTANT:"
    return Prompt(text, tuple(tokenizer.bos_token_ids + tokenizer.encode_plain(text)), ("USER:",))


@pytest.fixture
async def fake() -> AsyncIterator[FakeVLLM]:
    server = FakeVLLM()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def variant_for(fake: FakeVLLM) -> Callable[..., ModelConfig]:
    """A ``backend = "openai"`` variant pointed at the fake; keyword arguments override fields."""

    def make(**fields: object) -> ModelConfig:
        values: dict[str, object] = {
            "name": "remote",
            "backend": "openai",
            "base_url": fake.base_url,
            "model": MODEL,
            "path": "embedded",
            "context_length": 2048,
        }
        return ModelConfig.model_validate(values | fields)

    return make


MakeBackend = Callable[..., Awaitable[OpenAIBackend]]


@pytest.fixture
async def make_backend(variant_for: Callable[..., ModelConfig], tokenizer: HFTokenizer) -> AsyncIterator[MakeBackend]:
    """Start a backend pointed at the fake (``variant=`` to replace it, other keywords to the constructor)."""
    started: list[OpenAIBackend] = []

    async def make(variant: ModelConfig | None = None, **options: Any) -> OpenAIBackend:
        options.setdefault("tokenizer", tokenizer)
        remote = OpenAIBackend(variant or variant_for(), **options)
        await remote.start()
        started.append(remote)
        return remote

    yield make
    for remote in started:
        await remote.close()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> OpenAIBackend:
    """A started backend pointed at the fake, sharing the session's tokenizer."""
    return await make_backend()
