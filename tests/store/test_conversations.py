import asyncio
from pathlib import Path

from bot.store import Role, Store

from ._raw import query


async def test_get_conversation_returns_none_for_an_unknown_key(store: Store) -> None:
    """An unknown key has no conversation."""
    assert await store.get_conversation("thread:404") is None


async def test_get_or_create_stores_the_ids(store: Store) -> None:
    """A new conversation keeps its key, guild, channel and owner."""
    conversation = await store.get_or_create_conversation("thread:1", guild_id=10, channel_id=20, owner_id=30)
    assert (conversation.key, conversation.guild_id, conversation.channel_id, conversation.owner_id) == (
        "thread:1",
        10,
        20,
        30,
    )
    assert await store.get_conversation("thread:1") == conversation


async def test_get_or_create_is_idempotent(store: Store) -> None:
    """Calling get_or_create twice returns the same conversation, unchanged by the second call's ids."""
    first = await store.get_or_create_conversation("dm:5", owner_id=5)
    second = await store.get_or_create_conversation("dm:5", owner_id=99)
    assert second == first


async def test_get_or_create_is_safe_under_concurrency(store: Store, db_path: Path) -> None:
    """Twenty concurrent get_or_create calls for one key return one conversation and create one row."""
    results = await asyncio.gather(*(store.get_or_create_conversation("thread:7") for _ in range(20)))
    assert len({conversation.id for conversation in results}) == 1
    assert query(db_path, "SELECT COUNT(*) FROM conversations WHERE key = 'thread:7'") == [(1,)]


async def test_get_or_create_is_safe_across_two_stores(db_path: Path) -> None:
    """Two stores (two connections) racing on one key agree on one conversation."""
    async with await Store.open(db_path) as one, await Store.open(db_path) as two:
        results = await asyncio.gather(
            *(s.get_or_create_conversation("dm:8") for _ in range(10) for s in (one, two)),
        )
    assert len({conversation.id for conversation in results}) == 1


async def test_reset_conversation_deletes_its_messages_and_keeps_it(store: Store) -> None:
    """reset_conversation deletes every message, returns how many, and leaves the conversation in place."""
    conversation = await store.get_or_create_conversation("dm:1")
    other = await store.get_or_create_conversation("dm:2")
    for text in ("a", "b", "c"):
        await store.add_message(conversation.id, role=Role.USER, content=text)
    await store.add_message(other.id, role=Role.USER, content="kept")
    assert await store.reset_conversation(conversation.id) == 3
    assert await store.last_message(conversation.id) is None
    assert await store.get_conversation("dm:1") == conversation
    assert [m.content for m in await store.history(other.id, limit=10)] == ["kept"]


async def test_delete_conversation_cascades_to_its_messages(store: Store, db_path: Path) -> None:
    """Deleting a conversation deletes its messages through ON DELETE CASCADE."""
    conversation = await store.get_or_create_conversation("thread:3")
    await store.add_message(conversation.id, role=Role.USER, content="q")
    await store.add_message(conversation.id, role=Role.ASSISTANT, content="a")
    assert await store.delete_conversation("thread:3") is True
    assert await store.get_conversation("thread:3") is None
    assert query(db_path, "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation.id,)) == [(0,)]


async def test_delete_conversation_returns_false_for_an_unknown_key(store: Store) -> None:
    """Deleting a conversation that does not exist reports False."""
    assert await store.delete_conversation("thread:404") is False
