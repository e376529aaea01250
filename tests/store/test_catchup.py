"""`CatchUp.recent`: the conversations active lately, with the newest platform ids the store knows in each."""

import time
from pathlib import Path

from bot.store import RecentConversation, Role, Store

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
