"""The chat service labels each request's log line with its conversation and user, and reports too-long prompts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config
from bot.core.chat import ChatService
from bot.core.chat_prompts import Author
from bot.core.messages import ChatMessage
from bot.errors import PromptTooLongError
from bot.inference.tokenizer import HFTokenizer
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine

ALICE = Author(456, "Alice")


@pytest.fixture
async def chat(tmp_path: Path, embedded_tokenizer: tuple[HFTokenizer, int]) -> AsyncIterator[ChatService]:
    backend = ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three", context_length=512)
    config = Config()
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        yield ChatService(store, scripted_engine(config, backend), config.generation.model_copy(
            update={"max_new_tokens": 64}))  # fmt: skip


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [
        dict(pair.split("=", 1) for pair in r.getMessage().split(" ")[1:])
        for r in caplog.records
        if r.name == "bot.requests"
    ]


async def test_conversation_reply_is_logged_with_its_key_and_user(
    chat: ChatService, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply in a conversation logs ``conversation=<key> user=<author id> outcome=ok``."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    async with chat.respond("thread:123", ALICE, "hello") as reply:
        assert reply is not None
        async for _ in reply.deltas():
            pass
    (line,) = request_lines(caplog)
    assert (line["conversation"], line["user"], line["outcome"], line["reply_tokens"]) == (
        "thread:123", "456", "ok", "3",
    )  # fmt: skip


async def test_one_off_answer_is_logged_without_a_conversation(
    chat: ChatService, caplog: pytest.LogCaptureFixture
) -> None:
    """A one-off answer (a joke, say) logs ``conversation=-``."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    async with chat.generate(ALICE, [ChatMessage("user", "a joke")]) as reply:
        async for _ in reply.deltas():
            pass
    (line,) = request_lines(caplog)
    assert (line["conversation"], line["outcome"]) == ("-", "ok")


async def test_new_conversation_is_logged_with_the_key_it_opened(
    chat: ChatService, caplog: pytest.LogCaptureFixture
) -> None:
    """A message that opens a conversation (a /chat thread) logs the key made for it."""
    caplog.set_level(logging.INFO, logger="bot.requests")

    async def open_thread() -> str:
        return "thread:777"

    async with chat.respond(open_thread, ALICE, "hello") as reply:
        assert reply is not None
        async for _ in reply.deltas():
            pass
    (line,) = request_lines(caplog)
    assert line["conversation"] == "thread:777"


async def test_message_too_long_is_logged_too_long(chat: ChatService, caplog: pytest.LogCaptureFixture) -> None:
    """A message that cannot fit the window logs ``outcome=too_long`` once, and still raises."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    with pytest.raises(PromptTooLongError):
        async with chat.respond("thread:123", ALICE, "word " * 800):
            pass
    (line,) = request_lines(caplog)
    assert (line["conversation"], line["user"], line["outcome"]) == ("thread:123", "456", "too_long")
