"""Fixtures for the core: the embedded model's real tokenizer, loaded once per session."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bot.config import ModelConfig
from bot.inference.tokenizer import HFTokenizer


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
