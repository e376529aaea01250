"""Fixtures for the core's tests: a real store in ``tmp_path`` and the chat service on the module's scripted model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.chat import ChatService
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_chat


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store in the test's folder."""
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        yield store


@pytest.fixture
def chat(store: Store, backend: ScriptedBackend) -> ChatService:
    """The chat service on ``store``, answering with the module's ``backend`` fixture (default config)."""
    return scripted_chat(store, backend)
