"""Storage faults: another process holding the write lock (busy) and a full disk; clear errors, nothing lost."""

from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Role, Store
from bot.store import _database as database_module

from ._raw import limit_pages, query, write_lock_held


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wait 0.1 s instead of 5 s for another connection's write lock, so a busy database fails fast."""
    monkeypatch.setattr(database_module, "_BUSY_TIMEOUT_MS", 100)


async def test_a_write_while_another_process_holds_the_lock_fails_as_busy(store: Store, db_path: Path) -> None:
    """A write that waits past the busy timeout fails with "the database is busy"; what was stored stays."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.USER, content="first")
    with write_lock_held(db_path), pytest.raises(StoreError, match=r"^The database is busy, so it could not save"):
        await store.add_message(conversation.id, role=Role.USER, content="second")
    assert [m.content for m in await store.history(conversation.id, limit=10)] == ["first"]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


async def test_reads_go_on_while_another_process_writes(store: Store, db_path: Path) -> None:
    """In WAL mode even an exclusive write transaction elsewhere does not block reading the history."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.USER, content="first")
    with write_lock_held(db_path, "BEGIN EXCLUSIVE"):
        assert [m.content for m in await store.history(conversation.id, limit=10)] == ["first"]


async def test_writes_work_again_once_the_lock_is_released(store: Store, db_path: Path) -> None:
    """After a busy failure the same store writes normally as soon as the other process lets go."""
    conversation = await store.get_or_create_conversation("dm:1")
    with write_lock_held(db_path), pytest.raises(StoreError, match="busy"):
        await store.add_message(conversation.id, role=Role.USER, content="lost")
    await store.add_message(conversation.id, role=Role.USER, content="kept")
    assert [m.content for m in await store.history(conversation.id, limit=10)] == ["kept"]
    assert query(db_path, "SELECT COUNT(*) FROM conversations WHERE key = 'dm:other'") == [(0,)]


async def test_a_full_disk_fails_with_a_clear_error_and_keeps_earlier_rows(store: Store, db_path: Path) -> None:
    """A write that needs space the disk does not have fails with "disk is full"; earlier rows and the file are fine."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.USER, content="before")
    await limit_pages(store, None)
    with pytest.raises(StoreError, match=r"^The database disk is full, so it could not save the message"):
        await store.add_message(conversation.id, role=Role.USER, content="x" * 100_000)
    assert [m.content for m in await store.history(conversation.id, limit=10)] == ["before"]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


async def test_a_full_disk_then_space_again_works(store: Store, db_path: Path) -> None:
    """Once space is back the store writes again without a restart."""
    conversation = await store.get_or_create_conversation("dm:1")
    await limit_pages(store, None)
    with pytest.raises(StoreError, match="disk is full"):
        await store.add_message(conversation.id, role=Role.USER, content="x" * 100_000)
    await limit_pages(store, 1_000_000)
    await store.add_message(conversation.id, role=Role.USER, content="y" * 100_000)
    assert [len(m.content) for m in await store.history(conversation.id, limit=10)] == [100_000]
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


async def test_an_unexpected_database_error_stays_generic(store: Store) -> None:
    """Errors other than busy or full keep the plain "could not ..." text (no internals shown)."""
    with pytest.raises(StoreError, match=r"^The database could not save the message\.$"):
        await store.add_message(999, role=Role.USER, content="no such conversation")  # a foreign key error
