import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store import MessageStatus, Role, Store, StoredMessage

from ._raw import query


async def test_add_message_returns_what_was_stored(store: Store) -> None:
    """add_message returns the stored row with every field as given."""
    conversation = await store.get_or_create_conversation("dm:1")
    message = await store.add_message(
        conversation.id, role=Role.USER, content="hello", author_id=1, author_name="Ann", token_count=3
    )
    assert (message.conversation_id, message.role, message.content) == (conversation.id, Role.USER, "hello")
    assert (message.author_id, message.author_name, message.token_count) == (1, "Ann", 3)
    assert message.status is MessageStatus.OK
    assert await store.last_message(conversation.id) == message


@pytest.mark.parametrize("status", list(MessageStatus))
async def test_every_status_round_trips(store: Store, db_path: Path, status: MessageStatus) -> None:
    """A message's status reads back as the same enum member after reopening."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.ASSISTANT, content="x", status=status)
    await store.close()
    async with await Store.open(db_path) as reopened:
        message = await reopened.last_message(conversation.id)
    assert message is not None
    assert message.status is status


async def test_history_returns_the_newest_messages_oldest_first(store: Store) -> None:
    """history(limit=N) is the last N messages, in the order they were written."""
    conversation = await store.get_or_create_conversation("dm:1")
    for number in range(6):
        await store.add_message(conversation.id, role=Role.USER, content=str(number))
    assert [m.content for m in await store.history(conversation.id, limit=3)] == ["3", "4", "5"]


async def test_history_skips_cancelled_and_failed_messages(store: Store) -> None:
    """Only ok and partial messages are history; cancelled and failed ones do not use up the limit."""
    conversation = await store.get_or_create_conversation("dm:1")
    statuses = [MessageStatus.OK, MessageStatus.PARTIAL, MessageStatus.CANCELLED, MessageStatus.FAILED]
    for status in statuses:
        await store.add_message(conversation.id, role=Role.ASSISTANT, content=status.value, status=status)
    assert [m.content for m in await store.history(conversation.id, limit=2)] == ["ok", "partial"]


async def test_history_only_reads_its_own_conversation(store: Store) -> None:
    """Messages of another conversation never appear in a history."""
    mine = await store.get_or_create_conversation("dm:1")
    theirs = await store.get_or_create_conversation("dm:2")
    await store.add_message(theirs.id, role=Role.USER, content="theirs")
    await store.add_message(mine.id, role=Role.USER, content="mine")
    assert [m.content for m in await store.history(mine.id, limit=10)] == ["mine"]


async def test_history_with_limit_zero_is_empty(store: Store) -> None:
    """A zero limit returns no messages."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.USER, content="x")
    assert await store.history(conversation.id, limit=0) == []


async def test_history_rejects_a_negative_limit(store: Store) -> None:
    """A negative limit is a programming error, not "no limit"."""
    with pytest.raises(ValueError, match="limit"):
        await store.history(1, limit=-1)


async def test_last_message_returns_the_newest_of_any_status(store: Store) -> None:
    """last_message includes cancelled and failed messages."""
    conversation = await store.get_or_create_conversation("dm:1")
    await store.add_message(conversation.id, role=Role.USER, content="question")
    failed = await store.add_message(conversation.id, role=Role.ASSISTANT, content="", status=MessageStatus.FAILED)
    assert await store.last_message(conversation.id) == failed


async def test_delete_message_removes_only_that_message(store: Store) -> None:
    """delete_message deletes one message and leaves the others."""
    conversation = await store.get_or_create_conversation("dm:1")
    keep = await store.add_message(conversation.id, role=Role.USER, content="keep")
    drop = await store.add_message(conversation.id, role=Role.ASSISTANT, content="drop")
    await store.delete_message(drop.id)
    assert await store.history(conversation.id, limit=10) == [keep]


async def test_message_ids_are_not_reused_after_deletion(store: Store) -> None:
    """A new message always sorts after every message ever written, even deleted ones."""
    conversation = await store.get_or_create_conversation("dm:1")
    last = await store.add_message(conversation.id, role=Role.USER, content="a")
    await store.delete_message(last.id)
    again = await store.add_message(conversation.id, role=Role.USER, content="b")
    assert again.id > last.id


async def test_message_for_an_unknown_conversation_raises_store_error(store: Store) -> None:
    """The foreign key refuses a message whose conversation does not exist."""
    with pytest.raises(StoreError):
        await store.add_message(12345, role=Role.USER, content="orphan")


async def test_concurrent_adds_all_land_in_order_of_their_ids(store: Store) -> None:
    """Fifty concurrent add_message calls store fifty distinct messages."""
    conversation = await store.get_or_create_conversation("dm:1")
    added = await asyncio.gather(
        *(store.add_message(conversation.id, role=Role.USER, content=str(n)) for n in range(50))
    )
    history = await store.history(conversation.id, limit=100)
    assert sorted(m.id for m in added) == [m.id for m in history]


async def test_cancelled_calls_leave_the_store_usable(store: Store) -> None:
    """Cancelling half of twenty in-flight add_message calls loses none of the others and leaves no open transaction."""
    conversation = await store.get_or_create_conversation("dm:1")
    tasks = [asyncio.create_task(store.add_message(conversation.id, role=Role.USER, content=str(n))) for n in range(20)]
    for _ in range(3):
        await asyncio.sleep(0)  # let the first calls get into the database before cancelling
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    kept = [result for result in results[1::2] if isinstance(result, StoredMessage)]
    assert len(kept) == 10
    assert not store._db.in_transaction
    after = await store.add_message(conversation.id, role=Role.USER, content="after")
    stored_ids = {m.id for m in await store.history(conversation.id, limit=100)}
    assert {m.id for m in kept} | {after.id} <= stored_ids


async def test_user_message_survives_a_close_before_the_reply(db_path: Path) -> None:
    """A user message added just before the store goes away is there on reopen, with no reply after it."""
    store = await Store.open(db_path)
    conversation = await store.get_or_create_conversation("dm:1")
    question = await store.add_message(conversation.id, role=Role.USER, content="are you there?", author_id=1)
    await store.close()
    async with await Store.open(db_path) as reopened:
        assert await reopened.last_message(conversation.id) == question
    assert query(db_path, "SELECT COUNT(*) FROM messages WHERE role = 'assistant'") == [(0,)]


def test_user_message_survives_a_killed_process(db_path: Path) -> None:
    """A process that dies right after add_message returns (no close, no cleanup) leaves the message on disk."""
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from bot.store import Role, Store

        async def main():
            store = await Store.open({str(db_path)!r})
            conversation = await store.get_or_create_conversation("dm:1")
            await store.add_message(conversation.id, role=Role.USER, content="last words")
            os._exit(0)

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30, cwd=Path(__file__).parents[2])
    rows = query(db_path, "SELECT role, content FROM messages")
    assert rows == [("user", "last words")]


@pytest.mark.parametrize(
    ("column", "value"),
    [("role", "system"), ("status", "done"), ("token_count", -1)],
)
async def test_check_constraints_reject_bad_values(store: Store, db_path: Path, column: str, value: object) -> None:
    """The schema itself refuses an unknown role or status, or a negative token count."""
    conversation = await store.get_or_create_conversation("dm:1")
    row = {"role": "user", "status": "ok", "token_count": None, column: value}
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection, pytest.raises(sqlite3.IntegrityError):
        connection.execute(
            "INSERT INTO messages (conversation_id, role, content, token_count, status, created_at)"
            " VALUES (?, ?, 'x', ?, ?, 0)",
            (conversation.id, row["role"], row["token_count"], row["status"]),
        )
