"""The chat service: storage order and statuses around a streamed reply."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config, GenerationConfig
from bot.core.chat import Author, ChatOptions, ChatService
from bot.errors import BusyError, GenerationError, PromptError, PromptTooLongError
from bot.inference.tokenizer import HFTokenizer
from bot.store import MessageStatus, Role, Store
from tests.doubles import ScriptedBackend, scripted_engine

ALICE = Author(1, "Alice")
BOB = Author(2, "Bob")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        yield store


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three four")


@pytest.fixture
def chat(store: Store, backend: ScriptedBackend) -> ChatService:
    config = Config()
    return ChatService(store, scripted_engine(config, backend), config.generation)


async def answer(chat: ChatService, text: str, author: Author = ALICE, **kwargs: object) -> str:
    async with chat.respond("thread:1", author, text, **kwargs) as reply:  # type: ignore[arg-type]
        return "".join([d async for d in reply.deltas()])


async def messages(store: Store) -> list[tuple[Role, str, MessageStatus]]:
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    rows = await store.history(conversation.id, limit=100)
    return [(m.role, m.content, m.status) for m in rows]


async def test_user_message_is_stored_before_the_reply(chat: ChatService, store: Store) -> None:
    """While the reply streams the user's message is already in the database."""
    async with chat.respond("thread:1", ALICE, "hello") as reply:
        async for _ in reply.deltas():
            assert await messages(store) == [(Role.USER, "hello", MessageStatus.OK)]
    assert await messages(store) == [
        (Role.USER, "hello", MessageStatus.OK),
        (Role.ASSISTANT, "one two three four", MessageStatus.OK),
    ]
    assert reply.status == MessageStatus.OK


async def test_next_prompt_carries_the_history(chat: ChatService, backend: ScriptedBackend) -> None:
    """The second message's prompt contains the first exchange, with both authors named."""
    await answer(chat, "first question")
    await answer(chat, "second question", BOB)
    last = backend.prompts[-1].text
    assert "Alice: first question" in last
    assert "one two three four" in last
    assert "Bob: second question" in last


async def test_no_history_sends_only_the_new_message(chat: ChatService, backend: ScriptedBackend) -> None:
    """With history off the prompt holds just the new message."""
    await answer(chat, "first question")
    await answer(chat, "second question", options=ChatOptions(history=False))
    assert "first question" not in backend.prompts[-1].text


async def test_too_long_message_stores_nothing(store: Store, embedded_tokenizer: tuple[HFTokenizer, int]) -> None:
    """A message that cannot fit is refused before anything is stored."""
    config = Config(generation=GenerationConfig(max_new_tokens=64))
    backend = ScriptedBackend(embedded_tokenizer[0], context_length=128)
    chat = ChatService(store, scripted_engine(config, backend), config.generation)
    with pytest.raises(PromptTooLongError):
        await answer(chat, "word " * 200)
    assert await store.get_conversation("thread:1") is None
    assert backend.prompts == []


async def test_busy_stores_nothing(chat: ChatService, store: Store) -> None:
    """A request refused as busy leaves no message behind."""
    chat.engine.variant().scheduler.max_per_user = 0
    with pytest.raises(BusyError):
        await answer(chat, "hello")
    assert await store.get_conversation("thread:1") is None


async def test_stopping_early_stores_a_partial_reply(chat: ChatService, store: Store) -> None:
    """A reply the reader stopped after some text is kept, marked partial."""
    async with chat.respond("thread:1", ALICE, "hello") as reply:
        async for _ in reply.deltas():
            break
    assert reply.status == MessageStatus.PARTIAL
    assert (await messages(store))[-1] == (Role.ASSISTANT, "one", MessageStatus.PARTIAL)


async def test_model_failure_is_stored_as_failed_and_left_out_of_history(
    chat: ChatService, store: Store, backend: ScriptedBackend
) -> None:
    """A failed reply is recorded as failed and never reaches a later prompt."""
    backend.script = lambda prompt: "FAIL now"
    with pytest.raises(GenerationError):
        await answer(chat, "hello")
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    last = await store.last_message(conversation.id)
    assert last is not None
    assert (last.role, last.status) == (Role.ASSISTANT, MessageStatus.FAILED)
    assert await messages(store) == [(Role.USER, "hello", MessageStatus.OK)]


async def test_regenerate_replaces_the_last_reply(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """Regenerating answers the same question again and keeps only the new reply."""
    await answer(chat, "hello")
    backend.script = lambda prompt: "another answer"
    await answer(chat, "", mode="regenerate")
    assert await messages(store) == [
        (Role.USER, "hello", MessageStatus.OK),
        (Role.ASSISTANT, "another answer", MessageStatus.OK),
    ]
    assert backend.prompts[-1].text == backend.prompts[0].text


async def test_continue_extends_the_last_reply(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """Continuing asks the model to go on from the end of its last reply."""
    await answer(chat, "hello")
    backend.script = lambda prompt: "five six"
    await answer(chat, "", mode="continue")
    assert backend.prompts[-1].text.endswith("one two three four")
    assert (await messages(store))[-1] == (Role.ASSISTANT, "one two three fourfive six", MessageStatus.OK)


async def test_nothing_to_regenerate_is_a_clear_error(chat: ChatService) -> None:
    """Regenerate or continue without an earlier reply says so."""
    with pytest.raises(PromptError, match="no reply to regenerate"):
        await answer(chat, "", mode="regenerate")
    with pytest.raises(PromptError, match="no reply to continue"):
        await answer(chat, "", mode="continue")


async def test_empty_message_is_refused(chat: ChatService) -> None:
    """A blank message gets a clear error instead of an empty prompt."""
    with pytest.raises(PromptError, match="empty"):
        await answer(chat, "   ")


async def test_key_factory_opens_the_conversation_only_once_admitted(chat: ChatService, store: Store) -> None:
    """A new conversation's key is asked for after admission, and a busy refusal never asks."""
    opened: list[str] = []

    async def open_thread() -> str:
        opened.append("thread:9")
        return "thread:9"

    chat.engine.variant().scheduler.max_per_user = 0
    with pytest.raises(BusyError):
        async with chat.respond(open_thread, ALICE, "hi"):
            pass
    assert opened == []
    chat.engine.variant().scheduler.max_per_user = 3
    async with chat.respond(open_thread, ALICE, "hi") as reply:
        assert [d async for d in reply.deltas()]
    assert opened == ["thread:9"]
    assert await store.get_conversation("thread:9") is not None


async def test_reset_forgets_the_history(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """After a reset the next prompt starts fresh."""
    await answer(chat, "remember me")
    assert await chat.reset("thread:1") == 2
    await answer(chat, "new start")
    assert "remember me" not in backend.prompts[-1].text


CRASH = textwrap.dedent(
    """
    import asyncio, os, sys
    from bot.config import Config, ModelConfig
    from bot.core.chat import Author, ChatService
    from bot.inference.loading import load_tokenizer
    from bot.store import Store
    from tests.doubles import ScriptedBackend, scripted_engine

    async def main():
        tokenizer, _ = load_tokenizer(ModelConfig(name="smollm2"))
        config = Config()
        store = await Store.open(sys.argv[1])
        backend = ScriptedBackend(tokenizer, lambda p: "a b c d")
        chat = ChatService(store, scripted_engine(config, backend), config.generation)
        async with chat.respond("thread:1", Author(1, "Alice"), "survive me") as reply:
            async for _ in reply.deltas():
                os._exit(0)  # the process dies mid-reply, nothing is closed

    asyncio.run(main())
    """
)


def test_crash_mid_reply_keeps_the_user_message_and_no_ok_reply(tmp_path: Path) -> None:
    """A process killed between the user's message and the reply leaves the message and no ok reply."""
    path = tmp_path / "crash.sqlite3"
    subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=ROOT, check=True, timeout=120)

    async def stored() -> list[tuple[Role, str, MessageStatus]]:
        async with await Store.open(path) as store:
            conversation = await store.get_conversation("thread:1")
            assert conversation is not None
            last = await store.last_message(conversation.id)
            assert last is not None
            return [(m.role, m.content, m.status) for m in await store.history(conversation.id, limit=10)]

    assert asyncio.run(stored()) == [(Role.USER, "survive me", MessageStatus.OK)]
