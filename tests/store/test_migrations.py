import sqlite3
from contextlib import closing
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


_REBUILD_CONVERSATIONS = """
CREATE TABLE conversations_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,
    guild_id    INTEGER,
    channel_id  INTEGER,
    owner_id    INTEGER,
    created_at  REAL    NOT NULL,
    title       TEXT
);
INSERT INTO conversations_new (id, key, guild_id, channel_id, owner_id, created_at)
    SELECT id, key, guild_id, channel_id, owner_id, created_at FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;
CREATE INDEX conversations_owner_id ON conversations (owner_id);
"""
"""SQLite's documented table rebuild (new table, copy, drop the old one, rename): conversations gains a column."""

_REBUILD_RENAMING_THE_OLD_TABLE_FIRST = """
ALTER TABLE conversations RENAME TO conversations_old;
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,
    guild_id    INTEGER,
    channel_id  INTEGER,
    owner_id    INTEGER,
    created_at  REAL    NOT NULL
);
INSERT INTO conversations SELECT id, key, guild_id, channel_id, owner_id, created_at FROM conversations_old;
DROP TABLE conversations_old;
"""
"""The wrong order: SQLite repoints the messages' foreign key at conversations_old, which is then dropped."""


async def _fill(store: Store, conversations: int = 20, per_conversation: int = 5) -> int:
    """Conversations with messages and links; returns how many messages were added."""
    for number in range(conversations):
        conversation = await store.get_or_create_conversation(f"thread:{number}", owner_id=number)
        for turn in range(per_conversation):
            role = Role.USER if turn % 2 == 0 else Role.ASSISTANT
            await store.add_message(
                conversation.id, role=role, content=f"{number}/{turn}", external_ids=[number * 1000 + turn]
            )
    return conversations * per_conversation


async def test_a_migration_that_rebuilds_a_parent_table_keeps_every_child_row(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilding conversations (parent of messages, ON DELETE CASCADE) keeps every message and link."""
    async with await Store.open(db_path) as store:
        added = await _fill(store)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, _REBUILD_CONVERSATIONS))
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(added,)]
    assert query(db_path, "SELECT COUNT(*) FROM message_links") == [(added,)]
    assert query(db_path, "SELECT COUNT(*) FROM conversations WHERE title IS NULL") == [(20,)]
    assert query(db_path, "PRAGMA foreign_key_check") == []


async def test_a_migration_that_leaves_a_dangling_foreign_key_is_rolled_back(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that leaves messages pointing at a dropped table is undone and named in a StoreError."""
    async with await Store.open(db_path) as store:
        added = await _fill(store, conversations=3)
    before = len(migrations.MIGRATIONS)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, _REBUILD_RENAMING_THE_OLD_TABLE_FIRST))
    with pytest.raises(StoreError, match=rf"version {before + 1}.*'messages'.*'conversations_old'"):
        await Store.open(db_path)
    assert query(db_path, "PRAGMA user_version") == [(before,)]
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(added,)]
    assert "conversations_old" not in query(db_path, "SELECT group_concat(sql) FROM sqlite_master")[0][0]


async def test_after_migrating_foreign_keys_are_enforced_again(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Foreign keys are off only while migrating: deleting a conversation afterwards still deletes its messages."""
    async with await Store.open(db_path) as store:
        await _fill(store, conversations=2)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, _REBUILD_CONVERSATIONS))
    async with await Store.open(db_path) as store:
        assert await store.delete_conversation("thread:0")
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(5,)]


async def test_a_database_full_of_conversations_upgrades_from_the_first_schema(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version-2 database filled through raw SQL upgrades through every migration (and a rebuild) keeping all rows."""
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])  # messages and their links
    async with await Store.open(db_path):
        pass
    monkeypatch.undo()
    conversations = [(number + 1, f"thread:{number}", number) for number in range(50)]
    messages = [
        (number * 10 + turn + 1, number + 1, "user" if turn % 2 == 0 else "assistant", f"text {number * 10 + turn + 1}")
        for number in range(50)
        for turn in range(10)
    ]
    with closing(sqlite3.connect(db_path)) as connection, connection:
        connection.executemany(
            "INSERT INTO conversations (id, key, owner_id, created_at) VALUES (?, ?, ?, 0)", conversations
        )
        connection.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, status, created_at)"
            " VALUES (?, ?, ?, ?, 'ok', 0)",
            messages,
        )
        connection.executemany(
            "INSERT INTO message_links (external_id, message_id, part) VALUES (?, ?, 0)",
            [(9000 + message[0], message[0]) for message in messages],
        )
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, _REBUILD_CONVERSATIONS))
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
        found = await store.message_by_external_id(9000 + 123)
        assert found is not None and found.content == "text 123"
    assert query(db_path, "SELECT id, key, owner_id FROM conversations ORDER BY id") == conversations
    assert query(db_path, "SELECT id, conversation_id, role, content FROM messages ORDER BY id") == messages
    assert query(db_path, "SELECT COUNT(*) FROM message_links") == [(500,)]
    assert query(db_path, "PRAGMA foreign_key_check") == []
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]


async def test_a_cards_examples_copied_into_the_speaking_style_are_taken_out(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading empties a speaking style that is an imported card's mes_example; real speaking styles stay."""
    before = migrations.MIGRATIONS.index(migrations._CARD_EXAMPLES_ARE_NOT_A_SPEAKING_STYLE)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:before])
    async with await Store.open(db_path) as store:
        examples = "<START>\n{{user}}: hi\n{{char}}: hello"
        ours = {"mes_example": "Terse.", "extensions": {"airoboros_bot": {"speaking_style": "Terse."}}}
        for name, style, extra in (
            ("Imported", examples, {"mes_example": examples}),
            ("Ours", "Terse.", ours),
            ("Typed", "Short sentences.", {}),
        ):
            await store.characters.create(
                guild_id=1, name=name, description="d", personality="", speaking_style=style, creator_id=2, extra=extra
            )
    monkeypatch.undo()
    async with await Store.open(db_path) as store:
        styles = {c.name: c.speaking_style for c in await store.characters.list(1)}
        imported = await store.characters.get(1, "Imported")
    assert styles == {"Imported": "", "Ours": "Terse.", "Typed": "Short sentences."}
    assert imported is not None and imported.extra["mes_example"] == examples
