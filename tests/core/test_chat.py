"""The chat service: storage order and statuses around a streamed reply."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

from bot.config import Config, GenerationConfig
from bot.core.chat import ChatService
from bot.core.chat_prompts import Author, ChatOptions
from bot.core.messages import ChatMessage
from bot.errors import BusyError, GenerationError, PromptError, PromptTooLongError
from bot.inference.tokenizer import HFTokenizer
from bot.store import MessageStatus, Role, Store
from tests.doubles import ScriptedBackend, scripted_chat

ALICE = Author(1, "Alice")
BOB = Author(2, "Bob")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three four")


async def answer(chat: ChatService, text: str, author: Author = ALICE, **kwargs: object) -> str:
    async with chat.respond("thread:1", author, text, **kwargs) as reply:  # type: ignore[arg-type]
        assert reply is not None
        return "".join([d async for d in reply.deltas()])


async def redo(chat: ChatService, store: Store, mode: Literal["regenerate", "continue"]) -> str:
    """Regenerate or continue the conversation's last message."""
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    last = await store.last_message(conversation.id)
    assert last is not None
    async with chat.redo("thread:1", ALICE, last, mode) as reply:
        return "".join([d async for d in reply.deltas()])


async def messages(store: Store) -> list[tuple[Role, str, MessageStatus]]:
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    rows = await store.history(conversation.id, limit=100)
    return [(m.role, m.content, m.status) for m in rows]


async def test_user_message_is_stored_before_the_reply(chat: ChatService, store: Store) -> None:
    """While the reply streams the user's message is already in the database."""
    async with chat.respond("thread:1", ALICE, "hello") as reply:
        assert reply is not None
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
    chat = scripted_chat(store, backend, config)
    with pytest.raises(PromptTooLongError):
        await answer(chat, "word " * 200)
    assert await store.get_conversation("thread:1") is None
    assert backend.prompts == []


async def test_busy_keeps_the_message_for_the_next_reply(chat: ChatService, store: Store) -> None:
    """A message refused a reply as busy stays in the history and the next reply answers it too."""
    chat.engine.variant().scheduler.max_per_user = 0
    with pytest.raises(BusyError):
        await answer(chat, "hello")
    assert await messages(store) == [(Role.USER, "hello", MessageStatus.OK)]
    chat.engine.variant().scheduler.max_per_user = 3
    await answer(chat, "are you there?")
    assert [m[1] for m in await messages(store)] == ["hello", "are you there?", "one two three four"]


async def test_stopping_early_stores_a_partial_reply(chat: ChatService, store: Store) -> None:
    """A reply the reader stopped after some text is kept, marked partial."""
    async with chat.respond("thread:1", ALICE, "hello") as reply:
        assert reply is not None
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
    await redo(chat, store, "regenerate")
    assert await messages(store) == [
        (Role.USER, "hello", MessageStatus.OK),
        (Role.ASSISTANT, "another answer", MessageStatus.OK),
    ]
    assert backend.prompts[-1].text == backend.prompts[0].text


async def test_continue_extends_the_last_reply(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """Continuing asks the model to go on from the end of its last reply."""
    await answer(chat, "hello")
    backend.script = lambda prompt: " five six"  # a decoder that keeps the leading space, as LLaMA's must
    await redo(chat, store, "continue")
    assert backend.prompts[-1].text.endswith("one two three four")
    assert await messages(store) == [
        (Role.USER, "hello", MessageStatus.OK),
        (Role.ASSISTANT, "one two three four five six", MessageStatus.OK),
    ]


async def test_only_the_latest_reply_can_be_regenerated_or_continued(chat: ChatService, store: Store) -> None:
    """A reply with a newer message after it is refused clearly, and nothing changes."""
    await answer(chat, "first")
    conversation = await store.get_conversation("thread:1")
    assert conversation is not None
    old = await store.last_message(conversation.id)
    assert old is not None
    await answer(chat, "second")
    before = await messages(store)
    for mode in ("regenerate", "continue"):
        with pytest.raises(PromptError, match="Only the latest reply"):
            async with chat.redo("thread:1", ALICE, old, mode):  # type: ignore[arg-type]
                pass
    assert await messages(store) == before


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
        assert reply is not None
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
    from bot.core.chat import ChatService
    from bot.core.chat_prompts import Author
    from bot.inference.loading import load_tokenizer
    from bot.core.chat import Author, ChatService
    from bot.store import Store
    from tests.doubles import ScriptedBackend, WordTokenizer, scripted_engine

    async def main():
        config = Config(models=[ModelConfig(name="smollm2", prompt_format="airoboros")])
        store = await Store.open(sys.argv[1])
        backend = ScriptedBackend(WordTokenizer(), lambda p: "a b c d")
        chat = ChatService(store, scripted_engine(config, backend), config.generation)
        async with chat.respond("thread:1", Author(1, "Alice"), "survive me") as reply:
            print(reply.stored.id, flush=True)
            async for _ in reply.deltas():
                os._exit(0)  # the process dies mid-reply, nothing is closed

    asyncio.run(main())
    """
)


def test_crash_mid_reply_keeps_the_user_message_and_marks_the_reply(tmp_path: Path) -> None:
    """A process killed mid-reply leaves the user's message, and the reply's row marked cancelled, never ok."""
    path = tmp_path / "crash.sqlite3"
    subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=ROOT, check=True, timeout=120)

    async def stored() -> tuple[list[tuple[Role, str, MessageStatus]], MessageStatus]:
        async with await Store.open(path) as store:
            conversation = await store.get_conversation("thread:1")
            assert conversation is not None
            last = await store.last_message(conversation.id)
            assert last is not None and last.role == Role.ASSISTANT
            history = [(m.role, m.content, m.status) for m in await store.history(conversation.id, limit=10)]
            return history, last.status

    assert asyncio.run(stored()) == ([(Role.USER, "survive me", MessageStatus.OK)], MessageStatus.CANCELLED)


async def test_messages_that_arrive_during_a_reply_are_answered_once_together(
    chat: ChatService, store: Store, backend: ScriptedBackend
) -> None:
    """Two people posting while a reply streams are stored in order and answered by one reply that sees both."""
    backend.delay = 0.05
    first = asyncio.create_task(answer(chat, "first"))
    await asyncio.sleep(0.1)  # the first reply is streaming
    bob = asyncio.create_task(answer(chat, "from Bob", BOB))
    carol = asyncio.create_task(answer(chat, "from Carol", Author(3, "Carol")))
    await first
    results = await asyncio.gather(bob, carol, return_exceptions=True)
    assert results[0] == "one two three four"
    assert isinstance(results[1], AssertionError)  # Carol's message had no reply of its own: Bob's answered it
    assert [m[1] for m in await messages(store)] == [
        "first",
        "one two three four",
        "from Bob",
        "from Carol",
        "one two three four",
    ]
    assert len(backend.prompts) == 2
    assert "Bob: from Bob" in backend.prompts[-1].text and "Carol: from Carol" in backend.prompts[-1].text


async def test_different_conversations_reply_in_parallel(chat: ChatService, backend: ScriptedBackend) -> None:
    """The serialization is per conversation: two threads stream at the same time."""
    backend.delay = 0.05

    async def talk(key: str) -> None:
        async with chat.respond(key, ALICE, "hi") as reply:
            assert reply is not None
            async for _ in reply.deltas():
                pass

    await asyncio.gather(talk("thread:1"), talk("thread:2"))
    assert backend.peak == 2


async def test_a_reset_waits_for_the_reply_in_flight(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """/reset during a reply takes its turn: the reply is stored, then everything is forgotten."""
    backend.delay = 0.05
    reply = asyncio.create_task(answer(chat, "hello"))
    await asyncio.sleep(0.1)
    assert chat.replying("thread:1")
    assert await chat.reset("thread:1") == 2
    assert reply.done()
    assert await messages(store) == []


async def test_a_one_off_answer_stores_nothing(chat: ChatService, store: Store, backend: ScriptedBackend) -> None:
    """generate() answers outside any conversation, with the per-request sampling, and leaves no row."""
    async with chat.generate(
        ALICE, [ChatMessage("user", "Tell me a joke about cats.")], ChatOptions(top_p=0.9)
    ) as reply:
        assert "".join([d async for d in reply.deltas()]) == "one two three four"
    assert "Tell me a joke about cats." in backend.prompts[-1].text
    assert await store.get_conversation("thread:1") is None
    assert chat.params(ChatOptions(top_p=0.9, seed=7)).top_p == 0.9
