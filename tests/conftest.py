"""Session fixtures: the embedded model's real tokenizer, and the real embedded model in the layouts the bot loads.

Converted models are kept in ``$AIROBOROS_BOT_CACHE`` (default ``~/.cache/airoboros-bot``), the bot's own cache
folder, so only the first run pays for the GGUF conversion. Each model is loaded once per session, for the inference
tests and the Discord tests on the real model alike.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.config import ModelConfig
from bot.inference.tokenizer import HFTokenizer

if TYPE_CHECKING:
    from bot.inference.loading import LoadedModel


@pytest.fixture(scope="session")
def embedded_tokenizer() -> tuple[HFTokenizer, int]:
    """The SmolLM2 tokenizer and context window, as ``render-prompt`` loads them."""
    from bot.inference.loading import load_tokenizer

    return load_tokenizer(ModelConfig(name="smollm2"))


@pytest.fixture(scope="session")
def llama_like_tokenizer(embedded_tokenizer: tuple[HFTokenizer, int]) -> HFTokenizer:
    """The embedded tokenizer with LLaMA's ``<s>``/``</s>`` added as special tokens, as in airoboros' vocabulary."""
    hf = copy.deepcopy(embedded_tokenizer[0].hf)
    hf.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    hf.add_bos_token = True
    return HFTokenizer(hf)


@pytest.fixture(scope="session")
def llama_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaMA-1-style tokenizer (sentencepiece pieces, byte fallback, prefix space) saved as a folder."""
    from tests.llama_tokenizer import save_llama_tokenizer

    return save_llama_tokenizer(tmp_path_factory.mktemp("llama-tokenizer"))


@pytest.fixture(scope="session")
def llama_tokenizer(llama_tokenizer_folder: Path) -> HFTokenizer:
    """The LLaMA-1-style tokenizer, loaded from its folder as the bot loads a remote model's tokenizer."""
    from bot.inference.loading import load_tokenizer

    variant = ModelConfig(name="llama", tokenizer=str(llama_tokenizer_folder), context_length=2048)
    return load_tokenizer(variant)[0]


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where converted models live between runs."""
    return Path(os.environ.get("AIROBOROS_BOT_CACHE", "~/.cache/airoboros-bot")).expanduser()


@pytest.fixture(scope="session")
def embedded(model_cache: Path) -> LoadedModel:
    """The embedded SmolLM2-135M-Instruct in float32 on the CPU."""
    from bot.inference.loading import load_model

    return load_model(ModelConfig(name="smollm2"), device="cpu", dtype="float32", cache_dir=model_cache)


@pytest.fixture(scope="session")
def converted_folder(embedded: LoadedModel, model_cache: Path) -> Path:
    """The safetensors folder the embedded GGUF was converted to."""
    from bot.inference.loading import resolve_model_path

    return resolve_model_path(ModelConfig(name="smollm2"), model_cache)


@pytest.fixture(scope="session")
def lora_adapter(converted_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter for the embedded model with random (non-zero) weights, saved the way PEFT saves it."""
    import torch
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
    from bot.inference.loading import load_model

    variant = ModelConfig(name="qlora", load_4bit=True, adapter=str(lora_adapter))
    return load_model(variant, device="cpu", dtype="float32", cache_dir=model_cache)
