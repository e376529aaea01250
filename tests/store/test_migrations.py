from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import Role, Store
from bot.store import _migrations as migrations

from ._raw import query


async def test_new_file_is_migrated_to_the_latest_version(db_path: Path) -> None:
    """A database that does not exist yet is created, parent folders included, at the latest schema version."""
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
    tables = {name for (name,) in query(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "messages"} <= tables


async def test_empty_file_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    """A zero-byte file is treated as an empty database and migrated."""
    path = tmp_path / "empty.sqlite3"
    path.touch()
    async with await Store.open(path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)


async def test_reopening_keeps_the_version_and_the_data(db_path: Path) -> None:
    """Opening a migrated database again runs no migration and loses nothing."""
    async with await Store.open(db_path) as store:
        conversation = await store.get_or_create_conversation("dm:1")
        await store.add_message(conversation.id, role=Role.USER, content="hello")
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
        assert [m.content for m in await store.history(conversation.id, limit=10)] == ["hello"]


async def test_newer_schema_than_the_code_knows_raises_store_error(db_path: Path) -> None:
    """A database from a newer version of the bot is refused with a message naming the path and versions."""
    async with await Store.open(db_path):
        pass
    newer = len(migrations.MIGRATIONS) + 1
    query(db_path, f"PRAGMA user_version = {newer}")
    with pytest.raises(StoreError, match="schema version") as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)
    assert str(newer) in str(caught.value)


async def test_appended_migration_is_applied_to_an_existing_database(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration appended to MIGRATIONS upgrades a database that is at the previous version."""
    async with await Store.open(db_path):
        pass
    extra = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, extra))
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
    assert query(db_path, "SELECT name FROM sqlite_master WHERE name = 'notes'") == [("notes",)]


async def test_failed_migration_leaves_the_database_unchanged(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails half-way is rolled back entirely and reported as StoreError."""
    async with await Store.open(db_path):
        pass
    before = len(migrations.MIGRATIONS)
    broken = "CREATE TABLE half (id INTEGER PRIMARY KEY); CREATE TABLE half (id INTEGER PRIMARY KEY);"
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    with pytest.raises(StoreError, match=str(before + 1)):
        await Store.open(db_path)
    assert query(db_path, "PRAGMA user_version") == [(before,)]
    assert query(db_path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []


def test_split_statements_keeps_trigger_bodies_and_quoted_semicolons() -> None:
    """Semicolons inside a trigger body, a string literal or a comment do not split a statement."""
    script = """
        CREATE TABLE a (x TEXT); -- a comment; with a semicolon
        INSERT INTO a VALUES ('one; two');
        CREATE TRIGGER a_copy AFTER INSERT ON a BEGIN
            INSERT INTO a VALUES ('copy');
            DELETE FROM a WHERE x = 'never';
        END;
    """
    statements = migrations.split_statements(script)
    assert len(statements) == 3
    assert statements[0] == "CREATE TABLE a (x TEXT);"
    assert statements[1].startswith("-- a comment") and statements[1].endswith("VALUES ('one; two');")
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")
