from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Role, Store

from ._raw import query


async def test_journal_mode_is_wal(store: Store, db_path: Path) -> None:
    """The database file is in WAL mode, as another connection sees it."""
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_foreign_keys_are_enforced_on_the_store_connection(store: Store) -> None:
    """PRAGMA foreign_keys is on for the store's own connection (it is per connection, not per file)."""
    rows = list(await store._db.execute_fetchall("PRAGMA foreign_keys"))
    assert rows == [(1,)]


async def test_busy_timeout_is_set(store: Store) -> None:
    """The store waits for another process's write lock instead of failing at once."""
    rows = list(await store._db.execute_fetchall("PRAGMA busy_timeout"))
    assert rows[0][0] > 0


async def test_garbage_file_raises_store_error_naming_the_path(tmp_path: Path) -> None:
    """A file that is not an SQLite database is refused with StoreError, not a raw sqlite3 error."""
    path = tmp_path / "not-a-database.sqlite3"
    path.write_bytes(b"this is not an SQLite file\n" * 200)
    with pytest.raises(StoreError) as caught:
        await Store.open(path)
    assert str(path) in str(caught.value)


async def test_path_that_is_a_folder_raises_store_error(tmp_path: Path) -> None:
    """A path that cannot be opened as a file is refused with StoreError naming it."""
    with pytest.raises(StoreError) as caught:
        await Store.open(tmp_path)
    assert str(tmp_path) in str(caught.value)


async def test_memory_database_works() -> None:
    """The path ":memory:" opens a migrated private database."""
    async with await Store.open(":memory:") as store:
        conversation = await store.get_or_create_conversation("terminal:1")
        await store.add_message(conversation.id, role=Role.USER, content="hi")
        assert (await store.last_message(conversation.id)) is not None


async def test_closed_store_raises_store_error(db_path: Path) -> None:
    """Using a store after close() raises StoreError."""
    store = await Store.open(db_path)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_conversation("dm:1")


async def test_closing_twice_is_harmless(db_path: Path) -> None:
    """A second close() does nothing."""
    store = await Store.open(db_path)
    await store.close()
    await store.close()
