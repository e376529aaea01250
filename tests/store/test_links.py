"""Links between stored messages and the platform messages that show them; in-place updates."""

from pathlib import Path

import pytest

from bot.store import MessageStatus, Role, Store
from bot.store import _migrations as migrations

from ._raw import query


async def test_a_message_is_found_from_any_of_its_platform_messages(store: Store) -> None:
    """Every part of a long reply leads back to the one stored reply."""
    conversation = await store.get_or_create_conversation("thread:1")
    reply = await store.add_message(conversation.id, role=Role.ASSISTANT, content="long", external_ids=[11, 12, 13])
    for external_id in (11, 12, 13):
        assert await store.message_by_external_id(external_id) == reply
    assert await store.external_ids(reply.id) == [11, 12, 13]
    assert await store.message_by_external_id(99) is None


async def test_update_changes_the_message_in_place_and_replaces_its_links(store: Store) -> None:
    """A finished reply keeps its row id (its place in the history) and gets its final parts."""
    conversation = await store.get_or_create_conversation("thread:1")
    reply = await store.add_message(
        conversation.id, role=Role.ASSISTANT, content="", status=MessageStatus.CANCELLED, external_ids=[5]
    )
    later = await store.add_message(conversation.id, role=Role.USER, content="meanwhile", author_id=2)
    assert await store.update_message(
        reply.id, content="done", token_count=1, status=MessageStatus.OK, external_ids=[5, 6]
    )
    history = await store.history(conversation.id, limit=10)
    assert [(m.id, m.content) for m in history] == [(reply.id, "done"), (later.id, "meanwhile")]
    assert await store.external_ids(reply.id) == [5, 6]
    assert await store.update_message(12345, content="gone") is False


async def test_deleting_a_message_removes_its_links(store: Store) -> None:
    """A deleted message cannot be found from its old platform ids."""
    conversation = await store.get_or_create_conversation("thread:1")
    message = await store.add_message(conversation.id, role=Role.USER, content="hi", external_ids=[7])
    await store.delete_message(message.id)
    assert await store.message_by_external_id(7) is None


async def test_upgrade_from_version_one_keeps_every_conversation(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database written by the first schema gains the links table and loses nothing."""
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    async with await Store.open(db_path) as old:
        conversation = await old.get_or_create_conversation("thread:1")
        for index in range(20):
            await old.add_message(conversation.id, role=Role.USER, content=f"message {index}")
    monkeypatch.undo()
    async with await Store.open(db_path) as store:
        assert await store.schema_version() == len(migrations.MIGRATIONS)
        assert len(await store.history(conversation.id, limit=100)) == 20
    assert query(db_path, "SELECT COUNT(*) FROM message_links") == [(0,)]
