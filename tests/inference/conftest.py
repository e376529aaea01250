"""Around the real embedded model (loaded once per session: tests/conftest.py): prompts, references, a fresh worker
per test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.config import ModelConfig
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import PromptBuilder, make_format
from bot.inference.loading import LoadedModel, load_model
from bot.inference.types import Prompt
from bot.inference.worker import LocalBackend
from tests.inference._seam import SeamModel
from tests.inference._streams import REFERENCE_TOKENS, Expected, expected_from


@pytest.fixture(scope="session")
def prompt_for(embedded: LoadedModel) -> Callable[..., Prompt]:
    """Build the chat-template prompt for one user message, with optional stop sequences."""
    tokenizer = embedded.tokenizer
    builder = PromptBuilder(
        make_format("chat-template", tokenizer, None), tokenizer, context_length=embedded.context_length
    )

    def build(question: str, stop: tuple[str, ...] = ()) -> Prompt:
        prompt = builder.build(Dialogue(None, (ChatMessage("user", question),)), max_new_tokens=64)
        return dataclasses.replace(prompt, stop=stop)

    return build


@pytest.fixture(scope="session")
def greedy(embedded: LoadedModel) -> Callable[[Prompt, int], Expected]:
    """What transformers' own ``generate(do_sample=False)`` answers, one unpadded row at a time."""
    full: dict[tuple[int, ...], list[int]] = {}
    eos = embedded.model.generation_config.eos_token_id

    def expected(prompt: Prompt, max_new_tokens: int) -> Expected:
        assert max_new_tokens <= REFERENCE_TOKENS
        if prompt.token_ids not in full:
            ids = torch.tensor([prompt.token_ids])
            with torch.inference_mode():
                out = embedded.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=REFERENCE_TOKENS
                )
            full[prompt.token_ids] = out[0, ids.shape[1] :].tolist()
        return expected_from(full[prompt.token_ids][:max_new_tokens], embedded.tokenizer, eos)

    return expected


@pytest.fixture
async def backend(embedded: LoadedModel) -> AsyncIterator[LocalBackend]:
    """A started worker over the shared embedded model."""
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded)
    await worker.start()
    yield worker
    await worker.close()


@pytest.fixture
async def seam_backend(
    embedded: LoadedModel,
) -> AsyncIterator[Callable[..., Awaitable[tuple[LocalBackend, SeamModel]]]]:
    """Start workers over the shared weights behind a :class:`SeamModel` (keyword arguments go to it)."""
    started: list[tuple[LocalBackend, SeamModel]] = []

    async def make(**seam: Any) -> tuple[LocalBackend, SeamModel]:
        model = SeamModel(embedded.model, **seam)
        worker = LocalBackend(ModelConfig(name="smollm2"), loaded=dataclasses.replace(embedded, model=model))
        await worker.start()
        started.append((worker, model))
        return worker, model

    yield make
    for worker, model in started:
        await model.release(0)
        await worker.close()


@pytest.fixture(scope="session")
def nf4(model_cache: Path) -> LoadedModel:
    """The embedded model quantized to 4-bit nf4 with bitsandbytes."""
    return load_model(ModelConfig(name="nf4", load_4bit=True), device="cpu", dtype="float32", cache_dir=model_cache)
