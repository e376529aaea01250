"""Starting the backend: the local tokenizer, the context window and the API key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import ModelConfig
from bot.errors import BotError, ModelLoadError
from bot.inference.remote import OpenAIBackend

SMOLLM2_POSITIONS = 8192


async def test_tokenizer_and_window_from_the_embedded_model(
    variant_for: Callable[..., ModelConfig], embedded_folder: Path
) -> None:
    """With ``path = "embedded"`` the embedded model's tokenizer and window are used."""
    remote = OpenAIBackend(variant_for(path="embedded", context_length=None))
    await remote.start()
    try:
        assert (remote.context_length, "<|im_end|>" in remote.tokenizer.special_tokens) == (SMOLLM2_POSITIONS, True)
    finally:
        await remote.close()


async def test_tokenizer_folder_is_used(variant_for: Callable[..., ModelConfig], embedded_folder: Path) -> None:
    """``tokenizer = <folder>`` loads the tokenizer and the window from that folder."""
    remote = OpenAIBackend(variant_for(path="/nonexistent", tokenizer=str(embedded_folder), context_length=None))
    await remote.start()
    try:
        assert remote.context_length == SMOLLM2_POSITIONS
    finally:
        await remote.close()


async def test_configured_window_wins(variant_for: Callable[..., ModelConfig], embedded_folder: Path) -> None:
    """``context_length`` in the config overrides the model's own."""
    remote = OpenAIBackend(variant_for(tokenizer=str(embedded_folder), context_length=1024))
    await remote.start()
    try:
        assert remote.context_length == 1024
    finally:
        await remote.close()


async def test_missing_tokenizer_folder(variant_for: Callable[..., ModelConfig], tmp_path: Path) -> None:
    """A tokenizer folder that does not exist fails start-up with a ModelLoadError naming it."""
    remote = OpenAIBackend(variant_for(tokenizer=str(tmp_path / "gone")))
    with pytest.raises(ModelLoadError, match="gone does not exist"):
        await remote.start()


async def test_unset_api_key_variable(
    variant_for: Callable[..., ModelConfig], embedded_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``api_key_env`` naming an unset variable fails start-up, naming the variable."""
    monkeypatch.delenv("REMOTE_TEST_KEY", raising=False)
    remote = OpenAIBackend(variant_for(api_key_env="REMOTE_TEST_KEY", tokenizer=str(embedded_folder)))
    with pytest.raises(ModelLoadError, match="REMOTE_TEST_KEY"):
        await remote.start()


def test_window_unknown_before_start(variant_for: Callable[..., ModelConfig]) -> None:
    """Before ``start()`` the context window is not known yet."""
    with pytest.raises(BotError, match="not started"):
        _ = OpenAIBackend(variant_for(context_length=None)).context_length
