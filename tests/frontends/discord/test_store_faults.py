"""The bot in Discord when its database is busy or full: a short error in the thread, nothing silently lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store import MessageStatus, Role
from bot.store import _database as database_module
from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running
from tests.store._raw import limit_pages, write_lock_held

pytestmark = pytest.mark.timeout(60)

BUSY = "⚠️ The database is busy, so it could not"


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy database fails after 0.1 s instead of 5 s (set before the bot opens its store)."""
    monkeypatch.setattr(database_module, "_BUSY_TIMEOUT_MS", 100)


async def stored(running: Running, thread_id: int) -> list[tuple[Role, str, MessageStatus]]:
    """Every stored message of the thread's conversation, whatever its status."""
    conversation = await running.store.get_conversation(f"thread:{thread_id}")
    assert conversation is not None
    found = []
    before = None
    while (message := await running.store.last_message(conversation.id, before=before)) is not None:
        found.append((message.role, message.content, message.status))
        before = message.id
    return found[::-1]


async def test_a_message_while_the_database_is_busy_gets_a_short_error_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A message that cannot be stored is answered in the thread with "the database is busy", and not stored."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    with write_lock_held(tmp_path / "bot.sqlite3"):
        sent = await fake.send_message(thread.id, fake.alice, "are you there?")
        error = await fake.wait_for(
            lambda: next((m for m in bot_messages(fake, thread.id) if m["content"].startswith(BUSY)), None), timeout=20
        )
    assert error["content"] == f"{BUSY} save the message; please try again in a moment."
    assert error["message_reference"]["message_id"] == sent["id"]
    assert len(backend.prompts) == 1
    assert [content for _, content, _ in await stored(running, thread.id)] == ["hello", "Hello there, friend."]


async def test_after_a_busy_database_the_thread_is_answered_again(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Once the lock is released, the next message in the thread gets its reply."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    with write_lock_held(tmp_path / "bot.sqlite3"):
        await fake.send_message(thread.id, fake.alice, "lost?")
        await fake.wait_for(lambda: any(m["content"].startswith(BUSY) for m in bot_messages(fake, thread.id)) or None)
    backend.script = lambda prompt: "Back again."
    await fake.send_message(thread.id, fake.alice, "and now?")
    messages = await final_reply(fake, thread.id, count=3)
    assert messages[-1]["content"] == "Back again."
    assert "lost?" not in backend.prompts[-1].text


async def test_chat_while_the_database_is_busy_answers_the_command_with_the_error(
    fake: FakeDiscord, running: Running, tmp_path: Path
) -> None:
    """/chat that cannot store the prompt replaces its "thinking…" answer with the busy error, privately."""
    with write_lock_held(tmp_path / "bot.sqlite3"):
        handle = await chat(fake, "hello")
        original = await handle.wait_original(lambda original: original["content"].startswith(BUSY), timeout=20)
    assert original["flags"] & 64


async def test_chat_while_the_database_is_busy_leaves_no_thread_and_returns_the_prompt(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """/chat whose prompt cannot be stored: its thread and echo are deleted, the prompt comes back as a file."""
    with write_lock_held(tmp_path / "bot.sqlite3"):
        handle = await chat(fake, "hello")
        original = await handle.wait_original(lambda original: original["content"].startswith(BUSY), timeout=20)
    assert [a["filename"] for a in original["attachments"]] == ["your-message.txt"]
    await fake.wait_for(lambda: (not fake.threads and not bot_messages(fake, fake.channel.id)) or None, timeout=10)
    assert backend.prompts == []


async def test_chat_while_busy_without_manage_threads_still_takes_its_echo_back(
    fake: FakeDiscord, running: Running, tmp_path: Path
) -> None:
    """Without Manage Threads the empty thread stays (Discord lets no one else delete it), but the echo goes."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.MANAGE_THREADS)
    with write_lock_held(tmp_path / "bot.sqlite3"):
        handle = await chat(fake, "hello")
        await handle.wait_original(lambda original: original["content"].startswith(BUSY), timeout=20)
    await fake.wait_for(lambda: not bot_messages(fake, fake.channel.id) or None, timeout=10)
    assert bot_messages(fake, (await first_thread(fake)).id) == []


async def test_a_full_disk_when_a_reply_is_stored_is_shown_on_it_and_not_marked_ok(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """The disk filling up mid-reply: the reply's end says so, its row is not ok, and once freed the bot answers."""
    await chat(fake, "hello")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    backend.script = lambda prompt: " ".join(f"{i:04}" + "x" * 60 for i in range(120))
    await fake.send_message(thread.id, fake.alice, "talk a lot")
    await fake.wait_for(lambda: len(backend.prompts) == 2 or None)
    await limit_pages(running.store, None)
    last = await fake.wait_for(
        lambda: next((m for m in bot_messages(fake, thread.id) if "disk is full" in m["content"]), None), timeout=20
    )
    assert last["content"].endswith(
        "⚠️ The database disk is full, so it could not update the message; the bot's operator has to free space."
    )
    assert last.get("message_reference") is None  # the reply's own last part, not a separate answer
    assert last["id"] == bot_messages(fake, thread.id)[-1]["id"]
    assert (await stored(running, thread.id))[2:] == [
        (Role.USER, "talk a lot", MessageStatus.OK),
        (Role.ASSISTANT, "", MessageStatus.CANCELLED),
    ]
    await limit_pages(running.store, 1_000_000)
    backend.script = lambda prompt: "Room again."
    await fake.send_message(thread.id, fake.alice, "and now?")
    await fake.wait_for(lambda: bot_messages(fake, thread.id)[-1]["content"] == "Room again." or None, timeout=20)
