"""The chat service when the database is busy or full: the person is told, nothing acknowledged is lost."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from bot.core.chat import ChatService
from bot.core.chat_prompts import Author
from bot.errors import StoreError
from bot.inference.tokenizer import HFTokenizer
from bot.store import MessageStatus, Role, Store
from bot.store import _database as database_module
from tests.doubles import ScriptedBackend
from tests.store._raw import limit_pages, write_lock_held

ALICE = Author(1, "Alice")
LONG = " ".join(f"{i:04}" + "x" * 60 for i in range(500))
"""A reply long enough to need new database pages when it is stored."""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    monkeypatch.setattr(database_module, "_BUSY_TIMEOUT_MS", 100)  # a busy database fails in 0.1 s, not 5 s
    async with await Store.open(db_path) as store:
        yield store


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three four", delay=0.0)


async def answer(chat: ChatService, text: str) -> str:
    async with chat.respond("thread:1", ALICE, text) as reply:
        assert reply is not None
        return "".join([d async for d in reply.deltas()])


async def rows(store: Store) -> list[tuple[Role, str, MessageStatus]]:
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    last = await store.last_message(conversation.id)
    everything = await store.history(conversation.id, limit=100)
    if last is not None and last not in everything:
        everything.append(last)
    return [(m.role, m.content, m.status) for m in everything]


async def test_a_busy_database_refuses_the_message_before_the_model_runs(
    chat: ChatService, store: Store, backend: ScriptedBackend, db_path: Path
) -> None:
    """With the write lock held elsewhere respond() raises "busy"; nothing is stored and the model never runs."""
    await answer(chat, "first")
    with write_lock_held(db_path), pytest.raises(StoreError, match="database is busy"):
        await answer(chat, "second")
    assert len(backend.prompts) == 1
    assert [content for _, content, _ in await rows(store)] == ["first", "one two three four"]


async def test_after_a_busy_database_the_next_message_is_answered(
    chat: ChatService, store: Store, backend: ScriptedBackend, db_path: Path
) -> None:
    """Once the lock is released the conversation goes on, without the refused message."""
    with write_lock_held(db_path), pytest.raises(StoreError):
        await answer(chat, "refused")
    assert await answer(chat, "again") == "one two three four"
    assert "refused" not in backend.prompts[-1].text
    assert [content for _, content, _ in await rows(store)] == ["again", "one two three four"]


async def test_a_full_disk_at_the_end_of_a_reply_leaves_it_marked_not_ok(
    chat: ChatService, store: Store, backend: ScriptedBackend, db_path: Path
) -> None:
    """A reply that cannot be stored stays as reserved (cancelled), the user's message stays, the file is sound."""
    backend.script = lambda prompt: LONG
    with pytest.raises(StoreError, match="disk is full"):
        async with chat.respond("thread:1", ALICE, "talk a lot") as reply:
            assert reply is not None
            async for _ in reply.deltas():
                pass
            await limit_pages(store, None)
    assert reply.status == MessageStatus.CANCELLED
    assert await rows(store) == [
        (Role.USER, "talk a lot", MessageStatus.OK),
        (Role.ASSISTANT, "", MessageStatus.CANCELLED),
    ]
    with closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_once_space_is_back_the_conversation_goes_on(
    chat: ChatService, store: Store, backend: ScriptedBackend
) -> None:
    """After a full disk is freed the next message is stored and answered, the unstored reply left out."""
    backend.script = lambda prompt: LONG
    await limit_pages(store, None)
    with pytest.raises(StoreError):
        await answer(chat, "talk a lot")
    await limit_pages(store, 1_000_000)
    backend.script = lambda prompt: "short"
    assert await answer(chat, "and now?") == "short"
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    history = await store.history(conversation.id, limit=100)
    assert [m.content for m in history] == ["talk a lot", "and now?", "short"]
