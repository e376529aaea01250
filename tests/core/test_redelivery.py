"""A platform message delivered twice is stored and answered once (the store knows its external id)."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.chat import ChatService
from bot.core.chat_prompts import Author
from bot.inference.tokenizer import HFTokenizer
from tests.doubles import ScriptedBackend

ALICE = Author(1, "Alice")


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three")


async def ask(chat: ChatService, key: str, external_id: int) -> str | None:
    """Send ``Hello`` as platform message ``external_id``; the reply's text, or None if nothing was answered."""
    async with chat.respond(key, ALICE, "Hello", external_id=external_id) as reply:
        return None if reply is None else "".join([d async for d in reply.deltas()])


async def test_a_message_stored_already_is_not_stored_or_answered_again(
    chat: ChatService, backend: ScriptedBackend
) -> None:
    """The second delivery of message 77 yields no reply, and the conversation holds it once."""
    assert await ask(chat, "thread:1", 77) == "one two three"
    assert await ask(chat, "thread:1", 77) is None
    assert [m.content for m in await chat.history_of("thread:1")] == ["Hello", "one two three"]
    assert len(backend.prompts) == 1


async def test_two_deliveries_at_once_store_the_message_once(chat: ChatService, backend: ScriptedBackend) -> None:
    """Both deliveries racing for the conversation's turn: one stores and answers, the other finds it stored."""
    results = await asyncio.gather(ask(chat, "thread:1", 77), ask(chat, "thread:1", 77))
    assert sorted(results, key=str) == [None, "one two three"]
    assert [m.content for m in await chat.history_of("thread:1")] == ["Hello", "one two three"]


async def test_a_message_opening_a_conversation_twice_opens_it_once(chat: ChatService) -> None:
    """A mention delivered twice opens no second thread: the second delivery finds its message stored."""
    opened: list[str] = []

    async def open_thread() -> str:
        opened.append(f"thread:{len(opened) + 1}")
        return opened[-1]

    for _ in range(2):
        async with chat.respond(open_thread, ALICE, "Hello", external_id=77) as reply:
            if reply is not None:
                _ = [d async for d in reply.deltas()]
    assert opened == ["thread:1"]
