"""The bot against the fake Discord: /forget-me with its buttons, /history export, retention at start."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Config, StorageConfig
from bot.frontends.discord.features import privacy
from bot.store import Role, Store, UserData
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

EPHEMERAL = 64
REPLY = "Hello there, friend."
"""What the scripted model answers."""


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """The message's buttons, label -> custom_id."""
    return {c["label"]: c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])}


async def ask_to_forget(fake: FakeDiscord, **options: Any) -> dict[str, Any]:
    """Run /forget-me and return its answer once it has text."""
    handle = await fake.invoke_slash("forget-me", **options)
    return await handle.wait_original(lambda m: bool(m["content"]), timeout=20)


async def press(fake: FakeDiscord, message: dict[str, Any], label: str, user: Any = None) -> Any:
    return await fake.click_button(message["id"], buttons(message)[label], user=user or fake.alice)


async def deleted(fake: FakeDiscord, answer: dict[str, Any]) -> dict[str, Any]:
    """The /forget-me answer once it says the data is deleted."""

    def done() -> dict[str, Any] | None:
        message = fake.message(answer["id"])
        return message if message["content"].startswith("Done") else None

    return await fake.wait_for(done, timeout=20)


async def alice_talks_in_a_thread(fake: FakeDiscord) -> Any:
    """Alice opens a conversation thread and gets a finished reply; returns the thread."""
    await chat(fake, "My secret is pineapples.")
    thread = await first_thread(fake)
    await final_reply(fake, thread.id)
    return thread


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


async def test_forget_me_lists_what_will_go_with_confirm_and_cancel(fake: FakeDiscord, running: Running) -> None:
    """The private answer counts the messages and names the characters, says Discord's copies stay, offers buttons."""
    await alice_talks_in_a_thread(fake)
    await running.store.characters.create(
        guild_id=fake.guild.id,
        name="Aria",
        description="d",
        personality="p",
        speaking_style="s",
        creator_id=fake.alice.id,
    )
    answer = await ask_to_forget(fake)
    assert answer["flags"] & EPHEMERAL
    assert "**2** messages" in answer["content"] and "**1** conversation " in answer["content"]
    assert "(Aria)" in answer["content"] and "deleted for everyone" in answer["content"]
    assert "can't delete Discord's copy" in answer["content"]
    assert set(buttons(answer)) == {"Delete my data", "Cancel"}
    assert await running.store.get_conversation(f"thread:{fake.threads[0].id}") is not None  # nothing went yet


async def test_confirm_deletes_and_answers_with_what_went(fake: FakeDiscord, running: Running) -> None:
    """Confirming deletes the user's data and replaces the buttons with the counts of what was deleted."""
    thread = await alice_talks_in_a_thread(fake)
    answer = await ask_to_forget(fake)
    await press(fake, answer, "Delete my data")
    done = await deleted(fake, answer)
    assert "**2** messages" in done["content"] and "can't delete Discord's copy" in done["content"]
    assert buttons(done) == {}
    assert await running.store.get_conversation(f"thread:{thread.id}") is None
    assert fake.message(thread.id)["content"]  # Discord's copy of the echo stays


async def test_cancel_deletes_nothing(fake: FakeDiscord, running: Running) -> None:
    """Cancel says nothing was deleted and keeps the data."""
    thread = await alice_talks_in_a_thread(fake)
    answer = await ask_to_forget(fake)
    await press(fake, answer, "Cancel")
    await fake.wait_for(lambda: "nothing was deleted" in fake.message(answer["id"])["content"] or None)
    assert await running.store.get_conversation(f"thread:{thread.id}") is not None


async def test_only_the_asker_can_confirm(fake: FakeDiscord, running: Running) -> None:
    """Someone else pressing the button gets a private refusal and nothing is deleted."""
    thread = await alice_talks_in_a_thread(fake)
    answer = await ask_to_forget(fake)
    pressed = await press(fake, answer, "Delete my data", user=fake.bob)
    refusal = await pressed.wait_original(lambda m: bool(m["content"]))
    assert refusal["flags"] & EPHEMERAL and "Only the person who ran /forget-me" in refusal["content"]
    assert await running.store.get_conversation(f"thread:{thread.id}") is not None
    assert set(buttons(fake.message(answer["id"]))) == {"Delete my data", "Cancel"}


async def test_a_double_press_is_refused(fake: FakeDiscord, running: Running) -> None:
    """Two presses of Confirm: one deletes, the other is told it was already confirmed."""
    await alice_talks_in_a_thread(fake)
    answer = await ask_to_forget(fake)
    first, second = await asyncio.gather(press(fake, answer, "Delete my data"), press(fake, answer, "Delete my data"))
    await deleted(fake, answer)
    refused = [h for h in (first, second) if h.callback_type == 4]
    assert len(refused) == 1 and "Already confirmed" in refused[0].original["content"]


async def test_an_expired_confirmation_is_refused(
    fake: FakeDiscord, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A press after the confirmation window gets "expired" and deletes nothing."""
    thread = await alice_talks_in_a_thread(fake)
    answer = await ask_to_forget(fake)
    monkeypatch.setattr(privacy, "CONFIRM_SECONDS", -1)
    pressed = await press(fake, answer, "Delete my data")
    assert "expired" in (await pressed.wait_original(lambda m: bool(m["content"])))["content"]
    assert await running.store.get_conversation(f"thread:{thread.id}") is not None


def test_the_summary_names_the_scenes_they_started() -> None:
    """The setting and rules of the scenes someone started are listed with what goes, the scenes said to stay."""
    assert privacy.describe(UserData(scenes_started=1)) == [
        "- the setting and rules of **1** scene you started (it stays for the others)"
    ]
    assert "**2** scenes you started (they stay" in privacy.describe(UserData(scenes_started=2))[0]


async def test_forget_me_with_nothing_stored_says_so(fake: FakeDiscord, running: Running) -> None:
    """A user the bot knows nothing about gets a plain answer and no buttons."""
    answer = await ask_to_forget(fake, user=fake.bob)
    assert "nothing stored about you" in answer["content"] and buttons(answer) == {}


async def test_forget_keeps_a_shared_thread_answering(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """After Bob forgets himself, Alice's thread keeps her turns and the next prompt has none of Bob's text."""
    thread = await alice_talks_in_a_thread(fake)
    await fake.send_message(thread.id, fake.bob, "Bob's private words")
    await final_reply(fake, thread.id, count=2)
    answer = await ask_to_forget(fake, user=fake.bob, channel_id=fake.channel.id)
    await press(fake, answer, "Delete my data", user=fake.bob)
    await deleted(fake, answer)
    await fake.send_message(thread.id, fake.alice, "And now?")
    await final_reply(fake, thread.id, count=3)
    prompt = backend.prompts[-1].text
    assert "pineapples" in prompt and "And now?" in prompt and "Bob's private words" not in prompt


async def test_a_restart_after_forget_me_brings_no_forgotten_message_back(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Bob forgets himself in Alice's thread, the bot restarts: its catch-up answers only what came after, once."""
    engine, db = scripted_engine(Config(), backend), tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        thread = await alice_talks_in_a_thread(fake)
        await fake.send_message(thread.id, fake.bob, "Bob's private words")
        await final_reply(fake, thread.id, count=2)
        answer = await ask_to_forget(fake, user=fake.bob)
        await press(fake, answer, "Delete my data", user=fake.bob)
        await deleted(fake, answer)
    prompts = len(backend.prompts)
    await fake.send_message(thread.id, fake.alice, "Sent while the bot was down.")
    async with run_bot(fake, engine, db) as running:
        await final_reply(fake, thread.id, count=3, timeout=30)
        stored = [m.content for m in await running.chat.history_of(f"thread:{thread.id}")]
    assert stored == ["My secret is pineapples.", REPLY, "Sent while the bot was down.", REPLY]
    assert len(backend.prompts) == prompts + 1 and "Bob" not in backend.prompts[-1].text
    assert len(bot_messages(fake, thread.id)) == 3


async def test_forget_stops_the_users_reply_in_flight_first(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A reply streaming for the user is stopped and waited for, then deleted with their data."""
    backend.script = lambda prompt: " ".join(f"w{i}" for i in range(2000))
    backend.delay = 0.05
    await chat(fake, "Talk for a long time.")
    thread = await first_thread(fake)
    await fake.wait_for(lambda: running.bot.replies.in_flight or None, timeout=20)
    answer = await ask_to_forget(fake)
    await press(fake, answer, "Delete my data")
    done = await deleted(fake, answer)
    assert "**2** messages" in done["content"]  # the prompt and the stopped reply
    assert running.bot.replies.in_flight == {}
    assert await running.store.get_conversation(f"thread:{thread.id}") is None


async def test_history_export_gives_json_with_every_field(fake: FakeDiscord, running: Running) -> None:
    """In a conversation thread, the export is a private JSON file with each message's fields."""
    thread = await alice_talks_in_a_thread(fake)
    handle = await fake.invoke_slash("history export", {"format": "json"}, channel_id=thread.id)
    answer = await handle.wait_original(lambda m: bool(m.get("attachments")), timeout=20)
    assert answer["flags"] & EPHEMERAL
    (attachment,) = answer["attachments"]
    assert attachment["filename"] == f"conversation-{thread.id}.json"
    exported = json.loads(await download(attachment["url"]))
    first, reply = exported["messages"]
    assert (first["role"], first["author_id"], first["author_name"], first["status"]) == (
        "user",
        fake.alice.id,
        fake.alice.display_name,
        "ok",
    )
    assert first["content"] == "My secret is pineapples." and first["time"].endswith("Z")
    assert (reply["role"], reply["content"]) == ("assistant", "Hello there, friend.")


async def test_history_export_as_markdown(fake: FakeDiscord, running: Running) -> None:
    """The Markdown file has a ``## author · time`` heading over each message."""
    thread = await alice_talks_in_a_thread(fake)
    handle = await fake.invoke_slash("history export", {"format": "markdown"}, channel_id=thread.id)
    answer = await handle.wait_original(lambda m: bool(m.get("attachments")), timeout=20)
    (attachment,) = answer["attachments"]
    assert attachment["filename"] == f"conversation-{thread.id}.md"
    text = (await download(attachment["url"])).decode()
    assert f"## {fake.alice.display_name} · " in text and "pineapples" in text and "## Assistant · " in text


async def test_history_export_outside_a_conversation_is_refused(fake: FakeDiscord, running: Running) -> None:
    """In a plain channel the answer is a private refusal, without a file."""
    handle = await fake.invoke_slash("history export")
    answer = await handle.wait_original(lambda m: bool(m["content"]), timeout=20)
    assert answer["flags"] & EPHEMERAL and "conversation threads or in a DM" in answer["content"]
    assert not answer.get("attachments")


async def test_history_export_too_large_is_refused(
    fake: FakeDiscord, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A history over Discord's upload limit gets a clear refusal naming the limit, and no file."""
    thread = await alice_talks_in_a_thread(fake)
    monkeypatch.setattr(privacy, "ATTACHMENT_LIMIT", 1024)
    conversation = await running.store.get_conversation(f"thread:{thread.id}")
    assert conversation is not None
    await running.store.add_message(conversation.id, role=Role.USER, content="x" * 2000, author_id=fake.alice.id)
    handle = await fake.invoke_slash("history export", channel_id=thread.id)
    answer = await handle.wait_original(lambda m: bool(m["content"]), timeout=20)
    assert "too large" in answer["content"] and not answer.get("attachments")


async def test_retention_purges_idle_conversations_at_start(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With retention_days set, a conversation idle for longer is gone once the bot is up, with one log line."""
    db = tmp_path / "bot.sqlite3"
    async with await Store.open(db) as store:
        old = await store.get_or_create_conversation("dm:1", owner_id=1)
        await store.add_message(old.id, role=Role.USER, content="old", author_id=1)
        fresh = await store.get_or_create_conversation("dm:2", owner_id=2)
        await store.add_message(fresh.id, role=Role.USER, content="fresh", author_id=2)
        await store._db.execute("UPDATE messages SET created_at = ? WHERE id = 1", (time.time() - 40 * 86_400,))
        await store._db.commit()
    config = Config(storage=StorageConfig(retention_days=30))
    caplog.set_level(logging.INFO, logger="bot.frontends.discord.features.privacy")
    async with run_bot(fake, scripted_engine(config, backend), db) as running:
        await fake.wait_for(lambda: any("Retention (30 days)" in r.message for r in caplog.records) or None)
        assert await running.store.get_conversation("dm:1") is None
        assert await running.store.get_conversation("dm:2") is not None
    (line,) = [r.getMessage() for r in caplog.records if "Retention" in r.getMessage()]
    assert line == "Retention (30 days): deleted 1 conversations, 1 messages, 0 scenes"


async def test_no_retention_by_default(fake: FakeDiscord, running: Running) -> None:
    """Without retention_days the purge loop never starts."""
    cog = next(c for c in running.bot.cogs.values() if isinstance(c, privacy.Privacy))
    assert not cog._retention.is_running()
