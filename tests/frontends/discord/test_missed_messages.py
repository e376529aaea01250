"""Messages Discord never delivered (a new gateway session, a restart) or delivered twice: each answered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import AccessConfig, Config
from bot.frontends.discord.ui.replying import HANDLED_MEMORY, Replies
from bot.inference.types import Prompt
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, eventually, final_reply, first_thread, settled
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)


ASKED = ("Hello", "Lost in the gap.", "Second.", "I am blocked.", "I am not.", "First while down.")
ASKED += ("Second while down.", "Once, please.")


def echo_last(prompt: Prompt) -> str:
    """``Re:`` and the last of :data:`ASKED` in the prompt: the message the reply answers."""
    return "Re: " + max(ASKED, key=prompt.text.rfind)


async def opened(fake: FakeDiscord, backend: ScriptedBackend) -> int:
    """Alice's thread with its first exchange finished; each reply names the message it answers."""
    backend.script = echo_last
    await chat(fake, "Hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    return int(thread.id)


async def stored(running: Running, thread_id: int) -> list[str]:
    """The conversation's history as stored, ``role: text`` per message."""
    return [f"{m.role.value}: {m.content}" for m in await running.chat.history_of(f"thread:{thread_id}")]


async def answers(fake: FakeDiscord, running: Running, thread_id: int, count: int) -> list[str]:
    """The bot's reply texts in the thread once ``count`` are finished and the bot settled (a doubled one shows)."""
    await final_reply(fake, thread_id, count=count, timeout=30)
    await settled(fake, running.bot)
    return [m["content"] for m in bot_messages(fake, thread_id)]


async def test_a_message_sent_while_the_session_was_lost_is_answered_once(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Discord ends the session (4009) and a message is sent meanwhile: after the new session it is answered once."""
    thread_id = await opened(fake, backend)
    async with fake.gateway_outage(4009):
        await fake.send_message(thread_id, fake.alice, "Lost in the gap.")
    await fake.wait_for(lambda: len(fake.sessions) == 2 and fake.sessions[1].ready, timeout=10)
    assert await answers(fake, running, thread_id, 2) == ["Re: Hello", "Re: Lost in the gap."]
    assert await stored(running, thread_id) == [
        "user: Hello",
        "assistant: Re: Hello",
        "user: Lost in the gap.",
        "assistant: Re: Lost in the gap.",
    ]


async def test_messages_answered_before_a_new_session_are_not_answered_again(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Nothing was missed: the new session reads the thread and answers nothing twice."""
    thread_id = await opened(fake, backend)
    await fake.send_message(thread_id, fake.alice, "Second.")
    await final_reply(fake, thread_id, count=2)
    prompts = len(backend.prompts)
    reads = len(fake.requests_to("GET", rf"/channels/{thread_id}/messages"))
    async with fake.gateway_outage(4009):
        pass
    await fake.wait_for(lambda: len(fake.sessions) == 2 and fake.sessions[1].ready, timeout=10)
    await eventually(lambda: len(fake.requests_to("GET", rf"/channels/{thread_id}/messages")) > reads, timeout=10)
    await settled(fake, running.bot)  # the catch-up read the thread: what it would answer again is answered
    assert [m["content"] for m in bot_messages(fake, thread_id)] == ["Re: Hello", "Re: Second."]
    assert len(backend.prompts) == prompts


async def test_a_blocked_users_missed_message_is_not_answered(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Of two messages missed, the blocked user's is neither answered nor stored; the other is answered."""
    engine = scripted_engine(Config(access=AccessConfig(blocked_users=[fake.bob.id])), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        thread_id = await opened(fake, backend)
        async with fake.gateway_outage(4009):
            await fake.send_message(thread_id, fake.bob, "I am blocked.")
            await fake.send_message(thread_id, fake.alice, "I am not.")
        assert await answers(fake, running, thread_id, 2) == ["Re: Hello", "Re: I am not."]
        assert await stored(running, thread_id) == [
            "user: Hello",
            "assistant: Re: Hello",
            "user: I am not.",
            "assistant: Re: I am not.",
        ]


async def test_messages_sent_while_the_bot_was_down_are_answered_in_order_after_a_restart(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """The bot stops; two messages arrive; on its next start it answers them, once, in the order they were sent."""
    engine = scripted_engine(Config(), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        thread_id = await opened(fake, backend)
    await fake.send_message(thread_id, fake.alice, "First while down.")
    await fake.send_message(thread_id, fake.alice, "Second while down.")
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        await final_reply(fake, thread_id, count=2, timeout=30)
        await settled(fake, running.bot)
        assert await stored(running, thread_id) == [
            "user: Hello",
            "assistant: Re: Hello",
            "user: First while down.",
            "user: Second while down.",
            "assistant: Re: Second while down.",
        ]
    assert len(bot_messages(fake, thread_id)) == 2


async def test_a_message_delivered_twice_is_answered_once(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """The same MESSAGE_CREATE arrives twice (as after a resume): one reply, one stored message."""
    thread_id = await opened(fake, backend)
    message = await fake.send_message(thread_id, fake.alice, "Once, please.")
    await fake.redeliver_message(message["id"])
    assert await answers(fake, running, thread_id, 2) == ["Re: Hello", "Re: Once, please."]
    await fake.redeliver_message(message["id"])  # and again once it was answered
    assert await answers(fake, running, thread_id, 2) == ["Re: Hello", "Re: Once, please."]
    assert await stored(running, thread_id) == [
        "user: Hello",
        "assistant: Re: Hello",
        "user: Once, please.",
        "assistant: Re: Once, please.",
    ]


def test_the_handled_message_ids_are_bounded() -> None:
    """A redelivery is recognized; past the memory's size the oldest id is forgotten (the store still knows it)."""
    replies = Replies(chat=None)  # type: ignore[arg-type]
    assert (replies.first_time(1), replies.first_time(1)) == (True, False)
    for message_id in range(2, HANDLED_MEMORY + 2):
        replies.first_time(message_id)
    assert (replies.first_time(1), replies.first_time(HANDLED_MEMORY + 1)) == (True, False)
