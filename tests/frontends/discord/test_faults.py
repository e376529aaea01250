"""Discord misbehaving under a streaming reply: 429 bursts, 5xx answers, gateway outages and reconnects."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.store import MessageStatus, Role
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, eventually, final_reply, first_thread, settled
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

EDIT_ROUTE = r"/channels/\d+/messages/\d+"
POST_ROUTE = r"/channels/\d+/messages"
THREAD_ROUTE = r"/channels/\d+/messages/\d+/threads"
EDIT_BUDGET = 5
"""Discord's edit budget: about 5 edits per 5 seconds per channel."""
BUDGET_PACE = 0.2
"""The pace (seconds for Discord's second) of the tests that count edits against the budget. Retried requests land
late and bunch with the next edits; with a faster pace the fixed costs of each request (milliseconds) would stretch
the stream against the budget and change what is measured."""


def words(count: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(count))


def shown(messages: list[dict[str, Any]]) -> str:
    """The text of a reply shown across several messages, with the splitting's whitespace evened out."""
    return " ".join(" ".join(m["content"] for m in messages).split())


async def streaming(fake: FakeDiscord, channel_id: int, count: int = 1) -> dict[str, Any]:
    """The ``count``-th bot message of the channel, once its placeholder was replaced by streamed text."""
    message = await fake.wait_for(lambda: (bot_messages(fake, channel_id)[count - 1 :] or [None])[0], timeout=20)
    await fake.wait_for(lambda: fake.message(message["id"])["content"].startswith("w0") or None, timeout=20)
    return message


async def talk(fake: FakeDiscord, backend: ScriptedBackend, text: str | None = None, delay: float = 0.02) -> Any:
    """Alice's /chat whose reply (``text``, default 40 words) is streaming in its new thread; returns the thread."""
    backend.script = (lambda prompt: words(40)) if text is None else (lambda prompt: text)
    backend.delay = delay
    await chat(fake, "Talk for a while.")
    thread = await first_thread(fake)
    await streaming(fake, thread.id)
    return thread


async def opened(fake: FakeDiscord, backend: ScriptedBackend) -> Any:
    """Alice's thread with its first (short) exchange finished."""
    backend.script = lambda prompt: "Hi."
    await chat(fake, "Hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    return thread


async def stored(running: Running, thread_id: int) -> list[tuple[Role, MessageStatus, str]]:
    """The conversation as stored: role, status and text of each message."""
    return [(m.role, m.status, m.content) for m in await running.chat.history_of(f"thread:{thread_id}")]


def every_message(tmp_path: Path, thread_id: int) -> list[tuple[str, str, str]]:
    """Every stored message of the thread's conversation (any status): role, status, text."""
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
        rows = db.execute(
            "SELECT m.role, m.status, m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.key = ? ORDER BY m.id",
            (f"thread:{thread_id}",),
        ).fetchall()
    return [(role, status, content) for role, status, content in rows]


def landed_edits_within(fake: FakeDiscord, window: float) -> int:
    """The most edits Discord accepted (2xx PATCH on a message) within any ``window`` seconds."""
    times = [r.at for r in fake.requests_to("PATCH", EDIT_ROUTE) if r.status < 300]
    start, best = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
async def budget_paced(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> AsyncIterator[Running]:
    """The bot pacing its edits at :data:`BUDGET_PACE`."""
    engine = scripted_engine(Config(), backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3", pace=BUDGET_PACE) as running:
        yield running


# -- 429s ------------------------------------------------------------------------------------------


async def test_a_burst_of_429s_on_edits_still_ends_with_the_whole_reply(
    fake: FakeDiscord, budget_paced: Running, backend: ScriptedBackend
) -> None:
    """Four 429s in a row on the streaming edits: the reply still ends exact, within the channel's edit budget."""
    # The stream (3 s) and each 429's wait (0.4 s), at the pace: as long against the budget as against Discord's.
    thread = await talk(fake, backend, words(60), delay=0.05 * BUDGET_PACE)
    fake.rate_limit_next("PATCH", EDIT_ROUTE, retry_after=0.4 * BUDGET_PACE, count=4)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == words(60)
    assert [r.status for r in fake.requests_to("PATCH", EDIT_ROUTE)].count(429) == 4
    assert landed_edits_within(fake, 5 * BUDGET_PACE) <= EDIT_BUDGET
    assert (await stored(budget_paced, thread.id))[-1] == (Role.ASSISTANT, MessageStatus.OK, words(60))


async def test_a_burst_of_429s_on_posts_still_shows_every_part_of_a_long_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """429s on the placeholder and on the continuation message: every part of a 2-message reply lands."""
    thread = await opened(fake, backend)
    text = words(500)  # about 2900 characters: two messages
    backend.script = lambda prompt: text
    backend.delay = 0.0
    fake.rate_limit_next("POST", POST_ROUTE, retry_after=0.3, count=3)
    await fake.send_message(thread.id, fake.alice, "Talk a lot.")
    messages = await final_reply(fake, thread.id, count=3)
    assert shown(messages[1:]) == text
    assert [r.status for r in fake.requests_to("POST", POST_ROUTE)].count(429) == 3


async def test_global_429s_hold_the_reply_but_it_completes(
    fake: FakeDiscord, budget_paced: Running, backend: ScriptedBackend
) -> None:
    """Global 429s (every route held) on the echo's post and on the streaming edits: the reply still ends exact."""
    # The stream (2 s) and each 429's wait (0.3 s), at the pace: as long against the budget as against Discord's.
    fake.rate_limit_next("POST", POST_ROUTE, retry_after=0.3 * BUDGET_PACE, count=1, global_=True)
    thread = await talk(fake, backend, delay=0.05 * BUDGET_PACE)
    fake.rate_limit_next("PATCH", EDIT_ROUTE, retry_after=0.3 * BUDGET_PACE, count=3, global_=True)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == words(40)
    statuses = [r.status for r in fake.requests_to("*", r"/channels/\d+/messages.*")]
    assert statuses.count(429) == 4
    assert landed_edits_within(fake, 5 * BUDGET_PACE) <= EDIT_BUDGET


# -- 5xx -------------------------------------------------------------------------------------------


async def test_a_transient_5xx_on_an_edit_is_retried_and_the_reply_completes(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A 502 on a streaming edit (discord.py retries it): the reply still ends exact and is stored ok."""
    thread = await talk(fake, backend)
    fake.fail_next("PATCH", EDIT_ROUTE, status=502)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == words(40)
    assert 502 in [r.status for r in fake.requests_to("PATCH", EDIT_ROUTE)]
    assert (await stored(running, thread.id))[-1] == (Role.ASSISTANT, MessageStatus.OK, words(40))


async def test_a_transient_5xx_on_the_placeholder_post_is_retried(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A 500 on the placeholder's post (discord.py retries it): the reply appears once, complete."""
    thread = await opened(fake, backend)
    backend.script = lambda prompt: words(10)
    fake.fail_next("POST", POST_ROUTE, status=500)
    await fake.send_message(thread.id, fake.alice, "Say something.")
    messages = await final_reply(fake, thread.id, count=2)
    assert [m["content"] for m in messages] == ["Hi.", words(10)]


async def test_a_transient_5xx_on_thread_creation_is_retried(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A 502 on opening /chat's thread (discord.py retries it): one thread, one complete reply."""
    backend.script = lambda prompt: words(10)
    fake.fail_next("POST", THREAD_ROUTE, status=502)
    await chat(fake, "Hello")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == words(10)
    assert len(fake.threads) == 1


async def test_a_persistent_5xx_on_the_placeholder_fails_the_reply_and_the_thread_goes_on(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Discord refusing the reply's post (503, not retried): an error is logged, the person is told, their message
    stays stored, the reply is stored failed, and the next message is answered."""
    thread = await opened(fake, backend)
    backend.script = lambda prompt: words(10)
    fake.fail_next("POST", POST_ROUTE, status=503, message="Service Unavailable")
    with caplog.at_level(logging.ERROR, logger="bot"):
        await fake.send_message(thread.id, fake.alice, "Are you there?")
        told = await fake.wait_for(lambda: bot_messages(fake, thread.id)[1:] or None, timeout=10)
    assert told[0]["content"].startswith("⚠️ Discord did not let me show my reply (503")
    assert any("stored as failed" in r.getMessage() and "503" in r.getMessage() for r in caplog.records)
    await fake.send_message(thread.id, fake.alice, "Now?")
    messages = await final_reply(fake, thread.id, count=3)
    assert messages[-1]["content"] == words(10)
    assert every_message(tmp_path, thread.id)[2:] == [
        ("user", "ok", "Are you there?"),
        ("assistant", "failed", ""),
        ("user", "ok", "Now?"),
        ("assistant", "ok", words(10)),
    ]


async def test_persistent_5xx_on_the_edits_store_the_reply_partial_and_the_thread_goes_on(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every edit refused (503) from mid-stream on: an error is logged, the reply (not shown whole) is stored
    partial, and once Discord recovers the next message is answered."""
    thread = await talk(fake, backend, words(30))
    fake.fail_next("PATCH", EDIT_ROUTE, status=503, count=1000, message="Service Unavailable")
    with caplog.at_level(logging.ERROR, logger="bot"):
        await eventually(lambda: every_message(tmp_path, thread.id)[-1][1] == "partial", timeout=10)
    assert any("stored as partial" in r.getMessage() for r in caplog.records)
    assert every_message(tmp_path, thread.id)[-1] == ("assistant", "partial", words(30))
    fake.clear_failures()
    backend.script = lambda prompt: "Back."
    await fake.send_message(thread.id, fake.alice, "Still there?")
    messages = await final_reply(fake, thread.id, count=2)
    assert messages[-1]["content"] == "Back."


async def test_a_persistent_5xx_on_thread_creation_returns_the_prompt(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/chat whose thread Discord will not open (503): a short private error with the prompt back, no echo left."""
    fake.fail_next("POST", THREAD_ROUTE, status=503, message="Service Unavailable")
    handle = await chat(fake, "Hello")
    original = await handle.wait_original(lambda original: "open a thread" in original["content"], timeout=10)
    assert original["content"].startswith("⚠️ Discord did not let me open a thread (503")
    assert original["flags"] & 64
    (upload,) = fake.requests_to("PATCH", r"/webhooks/\d+/.+/messages/@original")[-1].files
    assert upload == "your-message.txt"
    assert fake.threads == []
    assert bot_messages(fake, fake.channel.id) == []


# -- the gateway -----------------------------------------------------------------------------------


async def test_a_resumed_gateway_loses_and_doubles_no_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """The gateway drops (4000) mid-stream and a message is sent meanwhile: on RESUME Discord replays it, and each
    message gets exactly one reply, in order, in the thread and in the store."""
    thread = await talk(fake, backend)
    backend.script = lambda prompt: words(20, tag="v" if "another" in prompt.text else "w")
    async with fake.gateway_outage(4000):
        await fake.send_message(thread.id, fake.alice, "And another thing.")
    await fake.wait_for(lambda: fake.sessions[0].connection, timeout=10)
    messages = await final_reply(fake, thread.id, count=2)
    await settled(fake, running.bot)  # a doubled reply would show by now
    assert [m["content"] for m in bot_messages(fake, thread.id)] == [words(40), words(20, tag="v")]
    assert (len(fake.sessions), len(fake.threads)) == (1, 1)  # resumed, and no interaction replayed twice
    assert every_message(tmp_path, thread.id) == [
        ("user", "ok", "Talk for a while."),
        ("assistant", "ok", words(40)),
        ("user", "ok", "And another thing."),
        ("assistant", "ok", words(20, tag="v")),
    ]
    assert messages[-1]["content"] == words(20, tag="v")


async def test_a_full_reconnect_keeps_the_reply_in_flight_and_answers_the_gap_once(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """The gateway ends the session (4009) mid-stream: the bot identifies anew, the streaming reply completes, a
    message sent while it was away (never delivered) is read from the thread and answered once, after it."""
    thread = await talk(fake, backend)
    backend.script = lambda prompt: words(20, tag="v" if "gap" in prompt.text else "w")
    async with fake.gateway_outage(4009):
        await fake.send_message(thread.id, fake.alice, "Lost in the gap.")
    await fake.wait_for(lambda: len(fake.sessions) == 2 and fake.sessions[1].ready, timeout=10)
    await final_reply(fake, thread.id, count=2)
    await settled(fake, running.bot)  # a doubled reply would show by now
    assert [m["content"] for m in bot_messages(fake, thread.id)] == [words(40), words(20, tag="v")]
    assert every_message(tmp_path, thread.id) == [
        ("user", "ok", "Talk for a while."),
        ("assistant", "ok", words(40)),
        ("user", "ok", "Lost in the gap."),
        ("assistant", "ok", words(20, tag="v")),
    ]
