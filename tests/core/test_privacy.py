"""Privacy in the core: the export formats (golden strings), the size limit, forgetting after a running reply."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.core.chat_prompts import Author
from bot.core.privacy import (
    ExportTooLargeError,
    HistoryExport,
    NoConversationError,
    forget_user,
    json_export,
    markdown_export,
)
from bot.inference.tokenizer import HFTokenizer
from bot.store import MessageStatus, Role, Store, StoredMessage
from tests.doubles import ScriptedBackend, scripted_chat

NOON = 1_704_196_800.0  # 2024-01-02 12:00:00 UTC
MESSAGES = [
    StoredMessage(1, 7, Role.USER, "Hi *there*", 42, "Alice", 3, MessageStatus.OK, NOON),
    StoredMessage(2, 7, Role.ASSISTANT, "Hello, “Alice”.", None, None, 4, MessageStatus.PARTIAL, NOON + 61),
]


def test_json_export_is_exact() -> None:
    """Each message is one JSON line with role, author name and id, UTC time, status and content."""
    assert json_export("thread:5", MESSAGES, NOON + 3600) == (
        '{"conversation": "thread:5", "exported_at": "2024-01-02T13:00:00Z", "messages": [\n'
        '{"id": 1, "role": "user", "author_name": "Alice", "author_id": 42, "time": "2024-01-02T12:00:00Z",'
        ' "status": "ok", "content": "Hi *there*"},\n'
        '{"id": 2, "role": "assistant", "author_name": "Assistant", "author_id": null, "time": "2024-01-02T12:01:01Z",'
        ' "status": "partial", "content": "Hello, “Alice”."}\n'
        "]}\n"
    )


def test_json_export_of_no_messages_is_valid_json() -> None:
    """An empty history is still one JSON object with an empty message list."""
    assert json.loads(json_export("dm:1", [], NOON))["messages"] == []


def test_markdown_export_is_exact() -> None:
    """A title, then ``## author · time`` over each message, with the status when it is not ok."""
    assert markdown_export("thread:5", MESSAGES, NOON + 3600) == (
        "# Conversation thread:5\n\nExported 2024-01-02 13:00 UTC.\n\n"
        "## Alice · 2024-01-02 12:00 UTC\n\nHi *there*\n\n"
        "## Assistant · 2024-01-02 12:01 UTC · partial\n\nHello, “Alice”.\n"
    )


async def test_export_reads_every_page_of_a_long_history(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history longer than one page comes out whole, in order, named after the place's id."""
    monkeypatch.setattr("bot.core.privacy._PAGE", 2)
    conversation = await store.get_or_create_conversation("thread:99", owner_id=1)
    for index in range(5):
        await store.add_message(conversation.id, role=Role.USER, content=f"m{index}", author_id=1)
    exported = await HistoryExport(store, max_bytes=2**20).export("thread:99", "json", now=NOON)
    assert exported.filename == "conversation-99.json"
    assert [m["content"] for m in json.loads(exported.data)["messages"]] == [f"m{i}" for i in range(5)]


async def test_export_refuses_a_history_over_the_limit(store: Store) -> None:
    """A history that would make a file over the limit is refused with the limit named."""
    conversation = await store.get_or_create_conversation("dm:1", owner_id=1)
    await store.add_message(conversation.id, role=Role.USER, content="x" * 3000, author_id=1)
    with pytest.raises(ExportTooLargeError, match="too large"):
        await HistoryExport(store, max_bytes=2048).export("dm:1", "markdown", now=NOON)


async def test_export_without_a_conversation_is_refused(store: Store) -> None:
    """A place with no stored conversation gets a clear error."""
    with pytest.raises(NoConversationError):
        await HistoryExport(store, max_bytes=2**20).export("dm:404", "json", now=NOON)


async def test_forget_waits_for_the_running_reply_and_deletes_it(
    store: Store, embedded_tokenizer: tuple[HFTokenizer, int]
) -> None:
    """Forgetting waits for the user's reply in flight to be stored, then deletes it with their message."""
    backend = ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three four five six", delay=0.05)
    chat = scripted_chat(store, backend)
    started = asyncio.Event()

    async def ask() -> None:
        async with chat.respond("thread:1", Author(1, "Alice"), "hello") as reply:
            assert reply is not None
            async for _ in reply.deltas():
                started.set()

    asking = asyncio.create_task(ask())
    await started.wait()
    forgotten = await forget_user(chat, 1)
    assert asking.done()
    assert forgotten.messages == 2
    assert await chat.history_of("thread:1") == []
