"""Fixtures for the core: the embedded model's real tokenizer, loaded once per session."""

from __future__ import annotations

import copy

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
