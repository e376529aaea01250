"""The real embedded model, loaded once per session, and a fresh worker around it per test.

Converted models are kept in ``$AIROBOROS_BOT_CACHE`` (default ``~/.cache/airoboros-bot``),
the bot's own cache folder, so only the first run pays for the GGUF conversion.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.config import ModelConfig
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import PromptBuilder, make_format
from bot.inference.loading import LoadedModel, load_model, resolve_model_path
from bot.inference.types import Prompt
from bot.inference.worker import LocalBackend
from tests.inference._seam import SeamModel
from tests.inference._streams import REFERENCE_TOKENS, Expected, expected_from


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where converted models live between runs."""
    return Path(os.environ.get("AIROBOROS_BOT_CACHE", "~/.cache/airoboros-bot")).expanduser()


@pytest.fixture(scope="session")
def embedded(model_cache: Path) -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct in float32 on the CPU."""
    return load_model(ModelConfig(name="smollm2"), device="cpu", dtype="float32", cache_dir=model_cache)


@pytest.fixture(scope="session")
def converted_folder(embedded: LoadedModel, model_cache: Path) -> Path:
    """The safetensors folder the embedded GGUF was converted to."""
    return resolve_model_path(ModelConfig(name="smollm2"), model_cache)


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


@pytest.fixture(scope="session")
def lora_adapter(converted_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the embedded model with random (non-zero) weights, saved the way PEFT saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(converted_folder), dtype=torch.float32)
    torch.manual_seed(0)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    folder = tmp_path_factory.mktemp("lora")
    adapted.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def nf4_lora(model_cache: Path, lora_adapter: Path) -> LoadedModel:
    """The nf4 embedded model with the LoRA adapter applied through PEFT (the QLoRA layout)."""
    variant = ModelConfig(name="qlora", load_4bit=True, adapter=str(lora_adapter))
    return load_model(variant, device="cpu", dtype="float32", cache_dir=model_cache)
