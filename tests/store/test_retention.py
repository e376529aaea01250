"""Retention: `Privacy.purge_older_than` deletes conversations whose newest message is older than the cutoff."""

import time
from pathlib import Path

from bot.store import Purged, Role, Store

from ._raw import query

DAY = 86_400.0


async def _conversation(store: Store, db_path: Path, key: str, *ages_in_days: float) -> int:
    """A conversation with one message per age (days before now), oldest first, each shown in a Discord message."""
    conversation = await store.get_or_create_conversation(key, owner_id=1)
    for index, age in enumerate(ages_in_days):
        message = await store.add_message(
            conversation.id, role=Role.USER, content=f"{key}-{index}", author_id=1, external_ids=[hash(key) + index]
        )
        query(db_path, "UPDATE messages SET created_at = ? WHERE id = ?", (time.time() - age * DAY, message.id))
    return conversation.id


async def test_purge_deletes_a_conversation_whose_last_message_is_old(store: Store, db_path: Path) -> None:
    """Every message and link of a conversation idle past the cutoff goes, with the conversation."""
    await _conversation(store, db_path, "dm:1", 40, 35)
    purged = await store.privacy.purge_older_than(time.time() - 30 * DAY)
    assert purged == Purged(conversations=1, messages=2, scenes=0)
    assert query(db_path, "SELECT COUNT(*) FROM conversations") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM message_links") == [(0,)]


async def test_purge_keeps_a_conversation_with_one_recent_message_whole(store: Store, db_path: Path) -> None:
    """An old conversation someone wrote in yesterday keeps all its messages, the old ones included."""
    await _conversation(store, db_path, "thread:5", 90, 60, 1)
    assert await store.privacy.purge_older_than(time.time() - 30 * DAY) == Purged(0, 0, 0)
    assert query(db_path, "SELECT content FROM messages ORDER BY id") == [
        ("thread:5-0",),
        ("thread:5-1",),
        ("thread:5-2",),
    ]


async def test_purge_deletes_only_the_old_conversations(store: Store, db_path: Path) -> None:
    """Of an idle conversation and an active one, only the idle one goes."""
    await _conversation(store, db_path, "dm:1", 40)
    await _conversation(store, db_path, "dm:2", 2)
    await store.privacy.purge_older_than(time.time() - 30 * DAY)
    assert query(db_path, "SELECT key FROM conversations") == [("dm:2",)]


async def test_purge_counts_an_empty_conversation_from_its_creation(store: Store, db_path: Path) -> None:
    """A conversation without messages goes once it was created before the cutoff, and not before."""
    await store.get_or_create_conversation("dm:3")
    assert (await store.privacy.purge_older_than(time.time() - DAY)).conversations == 0
    query(db_path, "UPDATE conversations SET created_at = ?", (time.time() - 2 * DAY,))
    assert (await store.privacy.purge_older_than(time.time() - DAY)).conversations == 1


async def test_purge_takes_the_scene_of_a_purged_thread(store: Store, db_path: Path) -> None:
    """A scene whose thread's conversation is purged goes too, with the people in it."""
    await store.scenes.create(thread_id=77, guild_id=9, creator_id=1, setting="a cafe", cast=[])
    await store.scenes.add_human(77, 1, "one")
    await _conversation(store, db_path, "thread:77", 40)
    assert (await store.privacy.purge_older_than(time.time() - 30 * DAY)).scenes == 1
    assert query(db_path, "SELECT COUNT(*) FROM scenes") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM scene_humans") == [(0,)]


async def test_purge_removes_the_text_from_the_files(store: Store, db_path: Path) -> None:
    """The purged text is no longer in the database file or its write-ahead log."""
    await _conversation(store, db_path, "dm:secret", 40)
    await store.privacy.purge_older_than(time.time() - 30 * DAY)
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            assert b"dm:secret-0" not in path.read_bytes(), path
