"""`CatchUp.recent`: the conversations active lately, with the newest platform ids the store knows in each."""

import time
from pathlib import Path

import pytest

from bot.store import RecentConversation, Role, Store
from bot.store import _migrations as migrations
from bot.store._migrations import _CATCH_UP_MARKS as MARKS

from ._raw import query


async def test_recent_lists_active_conversations_with_their_newest_ids(store: Store) -> None:
    """The newest person's message id and the newest id of any message, per conversation, most active first."""
    first = await store.get_or_create_conversation("thread:10", guild_id=9)
    await store.add_message(first.id, role=Role.USER, content="a", author_id=1, external_ids=[11])
    await store.add_message(first.id, role=Role.ASSISTANT, content="b", external_ids=[12, 13])
    second = await store.get_or_create_conversation("dm:20")
    await store.add_message(second.id, role=Role.ASSISTANT, content="c")
    assert await store.catchup.recent(0, limit=10) == [
        RecentConversation("dm:20", None, None, None),
        RecentConversation("thread:10", 9, 11, 13),
    ]


async def test_recent_leaves_out_idle_conversations_and_keeps_to_the_limit(store: Store, db_path: Path) -> None:
    """A conversation whose last message is older than ``since`` is left out; at most ``limit`` are listed."""
    for key in ("thread:1", "thread:2", "thread:3"):
        conversation = await store.get_or_create_conversation(key)
        await store.add_message(conversation.id, role=Role.USER, content=key, author_id=1)
    query(db_path, "UPDATE messages SET created_at = 0 WHERE content = 'thread:1'")
    recent = await store.catchup.recent(time.time() - 3600, limit=1)
    assert [r.key for r in recent] == ["thread:3"]
    assert {r.key for r in await store.catchup.recent(time.time() - 3600, limit=10)} == {"thread:2", "thread:3"}


async def test_forgetting_the_newest_messages_leaves_the_mark_where_it_was(store: Store) -> None:
    """Bob's messages forgotten, Alice's newest deleted on Discord: the catch-up still starts after Bob's."""
    thread = await store.get_or_create_conversation("thread:10", guild_id=9, owner_id=1)
    await store.add_message(thread.id, role=Role.USER, content="alice", author_id=1, external_ids=[11])
    await store.add_message(thread.id, role=Role.ASSISTANT, content="reply", external_ids=[12])
    await store.add_message(thread.id, role=Role.USER, content="bob", author_id=2, external_ids=[13])
    alice = await store.add_message(thread.id, role=Role.USER, content="alice again", author_id=1, external_ids=[14])
    await store.privacy.forget(2)
    await store.delete_message(alice.id)
    assert await store.catchup.recent(0, limit=10) == [RecentConversation("thread:10", 9, 14, 12)]


async def test_a_reset_conversation_is_read_only_after_its_mark(store: Store) -> None:
    """/reset empties the conversation (nothing to catch up); the next message raises the mark past the old ones."""
    thread = await store.get_or_create_conversation("thread:10", guild_id=9)
    for external_id in (11, 13):
        await store.add_message(thread.id, role=Role.USER, content="before", author_id=1, external_ids=[external_id])
    await store.reset_conversation(thread.id)
    assert await store.catchup.recent(0, limit=10) == []
    await store.add_message(thread.id, role=Role.ASSISTANT, content="a reply shown in 15", external_ids=[15])
    assert await store.catchup.recent(0, limit=10) == [RecentConversation("thread:10", 9, 13, 15)]


async def test_the_mark_of_an_older_database_is_its_newest_persons_message(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading sets each conversation's mark from the person's messages it holds."""
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[: migrations.MIGRATIONS.index(MARKS)])
    async with await Store.open(db_path):
        pass
    monkeypatch.undo()
    query(db_path, "INSERT INTO conversations (id, key, guild_id, created_at) VALUES (1, 'thread:10', 9, 0)")
    for id_, role, external_id in ((1, "user", 11), (2, "assistant", 12)):
        query(
            db_path,
            "INSERT INTO messages (id, conversation_id, role, content, status, created_at)"
            " VALUES (?, 1, ?, '', 'ok', 0)",
            (id_, role),
        )
        query(db_path, "INSERT INTO message_links (external_id, message_id, part) VALUES (?, ?, 0)", (external_id, id_))
    async with await Store.open(db_path) as store:
        assert await store.catchup.recent(0, limit=10) == [RecentConversation("thread:10", 9, 11, 12)]
    assert query(db_path, "SELECT seen_up_to FROM conversations") == [(11,)]
