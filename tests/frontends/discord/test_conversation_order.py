"""Conversations that stay correct: one order per conversation, buttons on any part, restarts, edits, deletions."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.frontends.discord.ui.rendering import RESTART_MARK
from bot.store import MessageStatus, Role, Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import (
    bot_messages,
    chat,
    eventually,
    final_reply,
    first_thread,
    long_reply_streaming,
    settled,
)
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(90)


async def stored(store: Store, thread_id: int) -> list[tuple[Role, str, MessageStatus]]:
    conversation = await store.get_conversation(f"thread:{thread_id}")
    assert conversation is not None
    return [(m.role, m.content, m.status) for m in await store.history(conversation.id, limit=100)]


def buttons(message: dict[str, Any]) -> dict[str, bool]:
    """The message's buttons: label -> enabled."""
    return {c["label"]: not c.get("disabled") for row in message.get("components", []) for c in row["components"]}


async def test_people_posting_while_a_reply_streams_are_answered_once_in_discord_order(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Two messages sent during a reply are stored in the order Discord shows and answered by one reply."""
    thread, _ = await long_reply_streaming(fake, backend)
    carol = fake.add_member(fake.guild, "carol", "Carol")
    await fake.send_message(thread.id, fake.bob, "Bob here.")
    await fake.send_message(thread.id, carol, "Carol here.")
    backend.script = lambda prompt: "Hello both."
    backend.delay = 0.0
    await fake.wait_for(lambda: bot_messages(fake, thread.id)[-1]["content"] == "Hello both." or None, timeout=30)
    await settled(fake, running.bot)  # nothing else follows
    assert len(backend.prompts) == 2
    assert len(bot_messages(fake, thread.id)) == 2
    assert "Bob: Bob here." in backend.prompts[-1].text and "Carol: Carol here." in backend.prompts[-1].text
    history = [content for _, content, _ in await stored(running.store, thread.id)]
    shown = [m["content"] for m in fake.messages_in(thread.id)]
    assert history[2:] == ["Bob here.", "Carol here.", "Hello both."]
    assert shown[-3:] == ["Bob here.", "Carol here.", "Hello both."]


async def test_different_conversations_stream_at_the_same_time(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Serializing one conversation does not hold up another."""
    backend.script = lambda prompt: " ".join(f"w{i}" for i in range(20))
    backend.delay = 0.05
    await chat(fake, "first thread")
    await chat(fake, "second thread", user=fake.bob)
    threads = await fake.wait_for(lambda: fake.threads if len(fake.threads) == 2 else None)
    for thread in threads:
        await final_reply(fake, thread.id)
    assert backend.peak == 2


async def test_a_second_regenerate_press_while_one_runs_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Two quick Regenerate presses run once: the second is told to wait, one reply is stored."""
    await chat(fake, "Say something.")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    backend.script = lambda prompt: " ".join(f"new{i}" for i in range(20))
    backend.delay = 0.05
    custom_id = f"airoboros:regenerate:{fake.alice.id}"
    first = await fake.click_button(reply["id"], custom_id, user=fake.alice)
    second = await fake.click_button(reply["id"], custom_id, user=fake.alice)
    await first.wait_callback()
    answer = await second.wait_callback()
    refusal = answer if answer["type"] == 4 else (await second.wait_followups())[0]
    assert "Wait for the current reply" in (refusal.get("data") or refusal)["content"]
    await fake.wait_for(lambda: fake.message(reply["id"])["content"].endswith("new19") or None, timeout=20)
    await final_reply(fake, thread.id)
    assert len(backend.prompts) == 2
    assert await stored(running.store, thread.id) == [
        (Role.USER, "Say something.", MessageStatus.OK),
        (Role.ASSISTANT, " ".join(f"new{i}" for i in range(20)), MessageStatus.OK),
    ]


async def test_a_double_continue_stores_the_continuation_once(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Continue pressed twice quickly adds the continuation once."""
    await chat(fake, "Start a story.")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    backend.script = lambda prompt: " and then more."
    backend.delay = 0.05
    custom_id = f"airoboros:continue:{fake.alice.id}"
    await fake.click_button(reply["id"], custom_id, user=fake.alice)
    await fake.click_button(reply["id"], custom_id, user=fake.alice)
    await final_reply(fake, thread.id, count=2)
    await settled(fake, running.bot)
    assert len(bot_messages(fake, thread.id)) == 2
    history = await stored(running.store, thread.id)
    assert history[-1] == (Role.ASSISTANT, "Hello there, friend. and then more.", MessageStatus.OK)


async def test_stop_works_on_the_second_message_of_a_long_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A reply that spilled into a second message stops from the button there, at once."""
    backend.script = lambda prompt: " ".join(f"word{i:04d}" for i in range(2000))
    backend.delay = 0.005  # about 1800 characters a second: the second message shows after some 1.2 s

    def second_with_stop() -> dict[str, Any] | None:
        messages = bot_messages(fake, thread.id)
        return messages[1] if len(messages) == 2 and buttons(messages[1]).get("Stop") else None

    await chat(fake, "Talk a lot.")
    thread = await first_thread(fake)
    second = await fake.wait_for(second_with_stop, timeout=30)
    handle = await fake.click_button(second["id"], f"airoboros:stop:{fake.alice.id}", user=fake.alice)
    assert (await handle.wait_callback())["type"] == 6
    messages = await final_reply(fake, thread.id, count=2)
    assert messages[-1]["content"].endswith("*(stopped)*")
    (_, reply) = await stored(running.store, thread.id)
    assert reply[2] == MessageStatus.PARTIAL
    assert not reply[1].endswith("word1999")


async def test_older_replies_lose_their_buttons_and_are_refused_after_a_restart(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Only the latest reply has buttons; an old reply that kept them is refused after a restart, unchanged."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db) as running:
        await chat(fake, "one")
        thread = await first_thread(fake)
        (first,) = await final_reply(fake, thread.id)
        await fake.send_message(thread.id, fake.alice, "two")
        await final_reply(fake, thread.id, count=2)
        assert buttons(fake.message(first["id"])) == {}
        # A third reply whose retiring edit of the second reply fails: the second keeps its buttons.
        second = bot_messages(fake, thread.id)[-1]
        fake.fail_next("PATCH", rf"/channels/{thread.id}/messages/{second['id']}", status=403, code=50001)
        await fake.send_message(thread.id, fake.alice, "three")
        await final_reply(fake, thread.id, count=3)
        before = await stored(running.store, thread.id)
    async with run_bot(fake, engine, db) as running:
        handle = await fake.click_button(second["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
        (refusal,) = await handle.wait_followups()
        assert "Only the latest reply" in refusal["content"]
        assert fake.message(second["id"])["content"] == second["content"]
        assert await stored(running.store, thread.id) == before


async def test_regenerate_after_continue_and_a_restart_replaces_every_part(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A continued reply is one reply: regenerated after a restart, all its messages are rewritten."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        await chat(fake, "Tell me more.")
        thread = await first_thread(fake)
        (first,) = await final_reply(fake, thread.id)
        backend.script = lambda prompt: " And more."
        await fake.click_button(first["id"], f"airoboros:continue:{fake.alice.id}", user=fake.alice)
        first_part, second_part = await final_reply(fake, thread.id, count=2)
        assert buttons(fake.message(first_part["id"])) == {}
    async with run_bot(fake, engine, db) as running:
        backend.script = lambda prompt: "A fresh answer."
        await fake.click_button(second_part["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
        await fake.wait_for(lambda: fake.message(first_part["id"])["content"] == "A fresh answer." or None)
        await fake.wait_for(lambda: len(bot_messages(fake, thread.id)) == 1 or None)
        (reply,) = await final_reply(fake, thread.id)
        assert buttons(reply)["Regenerate"]
        assert await stored(running.store, thread.id) == [
            (Role.USER, "Tell me more.", MessageStatus.OK),
            (Role.ASSISTANT, "A fresh answer.", MessageStatus.OK),
        ]
        assert backend.prompts[-1].text == backend.prompts[0].text


async def test_shutdown_stores_and_shows_the_reply_in_flight(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """On shutdown the streaming reply is stopped, stored as partial and shown as such; the thread goes on after."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        thread, placeholder = await long_reply_streaming(fake, backend)
    shown = fake.message(placeholder["id"])
    assert shown["content"].endswith(RESTART_MARK)
    assert buttons(shown) == {"Stop": False, "Regenerate": True, "Continue": True}
    async with run_bot(fake, engine, db) as running:
        history = await stored(running.store, thread.id)
        assert history[-1][0::2] == (Role.ASSISTANT, MessageStatus.PARTIAL)
        assert shown["content"].startswith(history[-1][1])
        backend.script = lambda prompt: "Back again."
        backend.delay = 0.0
        await fake.send_message(thread.id, fake.alice, "Are you back?")
        messages = await final_reply(fake, thread.id, count=2)
        assert messages[-1]["content"] == "Back again."
        assert history[-1][1] in backend.prompts[-1].text


async def test_an_edited_message_changes_the_history(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Editing a message in a conversation changes what the model sees next."""
    await chat(fake, "start")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    message = await fake.send_message(thread.id, fake.alice, "My favourite colour is red.")
    await final_reply(fake, thread.id, count=2)
    await fake.edit_message_as(message["id"], "My favourite colour is blue.")
    await fake.send_message(thread.id, fake.alice, "What is my favourite colour?")
    await final_reply(fake, thread.id, count=3)
    assert "blue" in backend.prompts[-1].text and "red" not in backend.prompts[-1].text


async def test_a_deleted_message_leaves_the_history(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A message deleted in Discord is not in the next prompt."""
    await chat(fake, "start")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    message = await fake.send_message(thread.id, fake.alice, "The secret word is pineapple.")
    await final_reply(fake, thread.id, count=2)
    await fake.delete_message_as(message["id"])
    await fake.send_message(thread.id, fake.alice, "What is the secret word?")
    await final_reply(fake, thread.id, count=2)
    await fake.wait_for(lambda: len(backend.prompts) == 3 or None)
    assert "pineapple" not in backend.prompts[-1].text


async def test_deleting_a_streaming_reply_stops_the_model_at_once(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A reply deleted while it streams cancels its generation and leaves the history."""
    thread, placeholder = await long_reply_streaming(fake, backend)
    await fake.delete_message_as(placeholder["id"])
    await eventually(lambda: backend.active == 0, timeout=1)
    await settled(fake, running.bot)
    assert await stored(running.store, thread.id) == [(Role.USER, "Talk for a long time.", MessageStatus.OK)]
    assert bot_messages(fake, thread.id) == []


async def test_deleting_the_thread_stops_the_reply_and_forgets_the_conversation(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A conversation thread deleted mid-reply cancels the generation and its history goes."""
    thread, _ = await long_reply_streaming(fake, backend)
    await fake.delete_thread(thread.id)
    await eventually(lambda: backend.active == 0, timeout=1)
    await settled(fake, running.bot)
    assert await running.store.get_conversation(f"thread:{thread.id}") is None


async def test_queue_positions_are_edited_only_when_they_change_and_not_too_often(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Waiting placeholders are edited at most once per period, with positions that only go down."""
    period = 0.5  # well above a reply's own edit pace, and twice the time a reply takes
    running.bot.replies.throttles.queue_period = period
    running.chat.engine.variant().scheduler.max_running = 1
    backend.script = lambda prompt: " ".join(f"w{i}" for i in range(8))
    backend.delay = 0.03  # each reply takes ~0.25 s: the queue moves four times a second
    users = [fake.add_member(fake.guild, f"user{i}") for i in range(5)]
    for user in users:
        await chat(fake, f"hello from {user.username}", user=user)
    threads = await fake.wait_for(lambda: fake.threads if len(fake.threads) == 5 else None)
    for thread in threads:
        await final_reply(fake, thread.id)
    assert fake.global_limit_hits == 0
    for thread in threads:
        (reply,) = bot_messages(fake, thread.id)
        queued = [e for e in reply["edits"] if e["content"].startswith("⏳")]
        positions = [int(e["content"].split("#")[1]) for e in queued]
        assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)
        times = [e["at"] for e in queued]
        assert all(later - earlier >= 0.9 * period for earlier, later in itertools.pairwise(times))
