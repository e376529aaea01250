"""Acknowledge first; missing permissions and Discord's limits get a clear answer and leave nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.core.chat import ChatService
from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)


def slow_store(chat_service: ChatService, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every database call of the chat service takes ``seconds`` first (a busy disk, a long transaction)."""
    store = chat_service.store
    for name in ("get_conversation", "get_or_create_conversation", "add_message", "message_by_external_id"):
        original = getattr(store, name)

        async def slow(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            await asyncio.sleep(seconds)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(store, name, slow)


async def test_commands_and_buttons_are_acknowledged_before_the_database_is_read(
    fake: FakeDiscord, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a store slower than Discord's deadline, /chat in a thread and Regenerate are still acknowledged in time."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    fake.interaction_deadline = 0.5
    slow_store(running.chat, monkeypatch, 0.8)
    handle = await chat(fake, "and again", channel_id=thread.id)
    await handle.wait_callback()
    assert handle.ack_latency is not None and handle.ack_latency < 0.5
    await final_reply(fake, thread.id, count=2, timeout=30)
    press = await fake.click_button(
        bot_messages(fake, thread.id)[-1]["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice
    )
    await press.wait_callback()
    assert press.ack_latency is not None and press.ack_latency < 0.5
    assert reply["id"]


async def test_chat_without_create_public_threads_names_it_and_posts_nothing(
    fake: FakeDiscord, running: Running
) -> None:
    """/chat where the bot cannot open threads says which permission is missing; no echo, no thread."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.CREATE_PUBLIC_THREADS)
    handle = await chat(fake, "hello")
    original = await handle.wait_original(lambda o: "Create Public Threads" in o["content"])
    assert original["flags"] & 64
    assert bot_messages(fake, fake.channel.id) == []
    assert fake.threads == []


async def test_a_mention_without_send_messages_in_threads_is_answered_with_the_missing_permission(
    fake: FakeDiscord, running: Running
) -> None:
    """A mention in a channel where the bot could not answer in a thread gets a reply naming the permission."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.SEND_MESSAGES_IN_THREADS)
    await fake.send_message(fake.channel.id, fake.alice, "hello", mentions_bot=True)
    (answer,) = await fake.wait_for(lambda: bot_messages(fake, fake.channel.id) or None)
    assert "Send Messages in Threads" in answer["content"]
    assert fake.threads == []


async def test_the_active_thread_limit_is_explained_and_the_echo_removed(fake: FakeDiscord, running: Running) -> None:
    """When the server has too many active threads, /chat says so and leaves no orphan echo."""
    fake.max_active_threads = 0
    handle = await chat(fake, "hello")
    await handle.wait_original(lambda o: "limit of active threads" in o["content"])
    await fake.wait_for(lambda: bot_messages(fake, fake.channel.id) == [] or None)
    assert fake.threads == []


async def test_chat_in_a_locked_thread_is_refused_clearly(fake: FakeDiscord, running: Running) -> None:
    """A locked conversation thread gets an ephemeral explanation instead of a failure."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.MANAGE_THREADS)  # moderators may still write
    await fake.update_thread(thread.id, locked=True)
    handle = await chat(fake, "more", channel_id=thread.id)
    original = await handle.wait_original(lambda o: "locked" in o["content"])
    assert original["flags"] & 64
    assert len(bot_messages(fake, thread.id)) == 1


async def test_regenerate_in_an_archived_thread_unarchives_it(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A button pressed in an archived thread works: the bot un-archives the thread to edit its reply."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    (reply,) = await final_reply(fake, thread.id)
    await fake.update_thread(thread.id, archived=True)
    backend.script = lambda prompt: "Fresh words."
    await fake.click_button(reply["id"], f"airoboros:regenerate:{fake.alice.id}", user=fake.alice)
    await fake.wait_for(lambda: fake.message(reply["id"])["content"] == "Fresh words." or None)
    assert not fake.get_channel(thread.id).archived


async def test_a_mention_in_someone_elses_thread_makes_it_a_conversation(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Mentioned in a thread it did not create, the bot answers there; later messages continue the conversation."""
    thread = await fake.start_thread_as(fake.alice, fake.channel.id, "Alice's thread")
    await fake.send_message(thread.id, fake.alice, "what do you think?", mentions_bot=True)
    await final_reply(fake, thread.id)
    await fake.send_message(thread.id, fake.bob, "and without a mention?")
    await final_reply(fake, thread.id, count=2)
    assert "what do you think?" in backend.prompts[-1].text
    assert len(fake.threads) == 1
