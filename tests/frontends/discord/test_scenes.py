"""Roleplay scenes in Discord (/scene ...): characters speak through one webhook, people join by speaking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ModelConfig
from bot.frontends.discord.features.scenes.turn import HEADER
from bot.frontends.discord.ui.rendering import STOPPED_MARK
from bot.frontends.discord.ui.voices import NO_WEBHOOK_PERMISSION
from bot.inference.types import Prompt
from bot.store import MessageStatus, Role, StoredCharacter
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, first_thread
from tests.frontends.discord.conftest import Running, run_bot

YODA_URL = "https://img.example/yoda.png"
HOMER_URL = "https://img.example/homer.png"
OPENING = 'Yoda: "Mmm, grapes."\nHomer: "Woo-hoo!"'
SETTING = "Conversation will revolve around the grapes, in a local cafe."
AIROBOROS = Config(models=[ModelConfig(name="smollm2", prompt_format="airoboros")])


@pytest.fixture
async def running(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> AsyncIterator[Running]:
    """The bot on the scripted model in the card's airoboros prompt format, with Yoda and Homer in the server."""
    async with run_bot(fake, scripted_engine(AIROBOROS, backend), tmp_path / "bot.sqlite3") as running:
        await cast(running)
        yield running


@pytest.fixture
async def thread(fake: FakeDiscord, running: Running, backend: ScriptedBackend) -> Any:
    """The thread of Alice's Yoda and Homer scene, once its opening is shown and stored."""
    return await start(fake, backend)


async def character(running: Running, name: str, description: str, url: str | None = None) -> StoredCharacter:
    return await running.store.characters.create(
        guild_id=running_guild(running),
        name=name,
        description=description,
        personality="",
        speaking_style="",
        creator_id=1,
        avatar_url=url,
    )


def running_guild(running: Running) -> int:
    return running.bot.guilds[0].id


async def cast(running: Running) -> None:
    await character(running, "Yoda", "the ever clever jedi master.", YODA_URL)
    await character(running, "Homer", "you know, the goofy yellow guy.", HOMER_URL)


def lines_in(fake: FakeDiscord, thread_id: int) -> list[dict[str, Any]]:
    """The characters' messages in the thread (posted through a webhook)."""
    app = str(fake.application_id)  # interaction answers are webhook messages of the application
    return [m for m in fake.messages_in(thread_id) if m.get("webhook_id") not in (None, app)]


async def lines_reading(fake: FakeDiscord, thread_id: int, texts: list[str]) -> list[dict[str, Any]]:
    """Wait until the thread's character messages read ``texts`` (each finished), and return them."""

    def done() -> list[dict[str, Any]] | None:
        lines = lines_in(fake, thread_id)
        return lines if [m["content"] for m in lines] == texts else None

    try:
        return await fake.wait_for(done, timeout=20)
    except TimeoutError:
        raise AssertionError([m["content"] for m in fake.messages_in(thread_id)]) from None


async def start(fake: FakeDiscord, backend: ScriptedBackend, **options: str) -> Any:
    """Alice starts a Yoda and Homer scene; returns its thread once the opening is shown."""
    backend.script = lambda prompt: OPENING
    await fake.invoke_slash("scene start", {"characters": "Yoda, homer", "setting": SETTING, **options})
    thread = await first_thread(fake)
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"'])
    await stored(fake, thread.id)
    return thread


async def stored(fake: FakeDiscord, thread_id: int) -> dict[str, Any]:
    """Wait until the latest turn is stored: its header offers Regenerate; returns the header."""
    await fake.wait_for(lambda: headers(fake, thread_id) or None, timeout=20)
    return await offering(fake, headers(fake, thread_id)[-1]["id"], f"airoboros:scene:regenerate:{thread_id}")


def custom_ids(message: dict[str, Any]) -> list[str]:
    """The custom ids of a message's buttons."""
    return [c["custom_id"] for row in message.get("components") or [] for c in row.get("components", [])]


def headers(fake: FakeDiscord, thread_id: int) -> list[dict[str, Any]]:
    """The bot's 🎭 messages heading the turns."""
    return [m for m in fake.messages_in(thread_id) if m["content"] in (HEADER, f"{HEADER} {STOPPED_MARK}")]


async def offering(fake: FakeDiscord, message_id: int, custom_id: str) -> dict[str, Any]:
    """Wait until the message offers exactly the button ``custom_id``."""

    def done() -> dict[str, Any] | None:
        message = fake.message(message_id)
        return message if custom_ids(message) == [custom_id] else None

    return await fake.wait_for(done, timeout=20)


async def stored_turns(running: Running, thread_id: int) -> list[tuple[Role, str, MessageStatus]]:
    conversation = await running.store.get_conversation(f"thread:{thread_id}")
    assert conversation is not None
    return [(m.role, m.content, m.status) for m in await running.store.history(conversation.id, limit=50)]


async def test_start_opens_a_thread_where_each_character_speaks_under_its_name_and_avatar(
    fake: FakeDiscord, backend: ScriptedBackend, thread: Any
) -> None:
    """The opening comes at once: one message per character, through one webhook, with names and avatars."""
    lines = lines_in(fake, thread.id)
    assert [(m["author"]["username"], m["avatar_url"]) for m in lines] == [("Yoda", YODA_URL), ("Homer", HOMER_URL)]
    assert len(fake.webhooks) == 1 and {m["webhook_id"] for m in lines} == {str(fake.webhooks[0].id)}
    prompt = backend.prompts[0].text
    assert (
        "USER: Characters:\n- Yoda, the ever clever jedi master.\n- Homer, you know, the goofy yellow guy.\n" in prompt
    )
    assert "- USER/Alice - don't generate any speech or actions on behalf of Alice\nRules:\n" in prompt
    assert prompt.endswith(
        "Generate a single interaction between Yoda and Homer to start, with one sentence each. ASSISTANT:"
    )


async def test_unknown_characters_are_named_with_the_servers_characters(fake: FakeDiscord, running: Running) -> None:
    """An unknown name is refused before anything is posted, with the list of the server's characters."""
    handle = await fake.invoke_slash("scene start", {"characters": "Yoda, Vader", "setting": SETTING})
    answer = await handle.wait_original(lambda m: "⚠️" in m["content"])
    assert "“Vader”" in answer["content"] and "Homer, Yoda" in answer["content"]
    assert fake.threads == [] and bot_messages(fake, fake.channel.id) == []


async def test_two_people_join_and_the_sheet_names_both(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """Bob speaking adds him to the scene: the next sheet has both USER/ lines and prefixes each line."""
    backend.script = lambda prompt: 'Yoda: "Welcome, Bob."'
    await fake.send_message(thread.id, fake.bob, "*sits down*")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Welcome, Bob."'])
    prompt = backend.prompts[-1].text
    assert "- USER/Alice - don't generate any speech or actions on behalf of Alice\n" in prompt
    assert "- USER/Bob - don't generate any speech or actions on behalf of Bob\n" in prompt
    assert prompt.endswith(f"ASSISTANT: {OPENING}</s>USER: Bob: *sits down* ASSISTANT:")
    assert backend.prompts[-1].stop == ("USER:", "\nAlice:", "\nBob:")
    scene = await running.store.scenes.get(thread.id)
    assert scene is not None and [h.name for h in scene.humans] == ["Alice", "Bob"]
    # Only the scene answers in its thread: no plain conversation reply (its buttons) from the conversations cog.
    ids = [i for m in fake.messages_in(thread.id) for i in custom_ids(m)]
    assert ids and all(i.startswith("airoboros:scene:") for i in ids)


async def test_a_line_for_a_person_is_never_posted_and_ends_the_turn(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """When the model writes Alice's line, nothing more is shown and the turn keeps only what was shown."""
    backend.script = lambda prompt: 'Yoda: "Hm, late you are."\nAlice: "I say..."\nHomer: "Doh!"'
    await fake.send_message(thread.id, fake.alice, "Sorry I'm late!")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Hm, late you are."'])
    turns = await stored_turns(running, thread.id)
    assert turns[-1] == (Role.ASSISTANT, 'Yoda: "Hm, late you are."', MessageStatus.OK)
    assert backend.active == 0
    assert not any("I say" in m["content"] or "Doh" in m["content"] for m in fake.messages_in(thread.id))


async def test_nudge_makes_the_character_speak_next(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """The prompt ends with the open line "Homer:" after the last script; the answer is Homer's line."""
    backend.script = lambda prompt: ' "Mmm... donuts."'
    await fake.invoke_slash("scene nudge", {"character": "Homer"}, channel_id=thread.id)
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Mmm... donuts."'])
    await stored(fake, thread.id)
    assert backend.prompts[-1].text.endswith(f"ASSISTANT: {OPENING}\nHomer:")
    assert lines_in(fake, thread.id)[-1]["author"]["username"] == "Homer"
    turns = await stored_turns(running, thread.id)
    assert turns[-1] == (Role.ASSISTANT, 'Homer: "Mmm... donuts."', MessageStatus.OK)


async def test_add_and_remove_change_the_next_sheet(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """Leia joins and Homer leaves: the next prompt's Characters list and rules follow."""
    await character(running, "Leia", "a princess.")
    add = await fake.invoke_slash("scene add", {"character": "leia"}, channel_id=thread.id)
    await add.wait_original(lambda m: "joined" in m["content"])
    remove = await fake.invoke_slash("scene remove", {"character": "Homer"}, channel_id=thread.id)
    await remove.wait_original(lambda m: "left" in m["content"])
    backend.script = lambda prompt: 'Leia: "Hello."'
    await fake.send_message(thread.id, fake.alice, "Hi!")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Hello."'])
    prompt = backend.prompts[-1].text
    assert "Characters:\n- Yoda, the ever clever jedi master.\n- Leia, a princess.\n- USER/Alice" in prompt
    assert "on behalf of Yoda or Leia, and never anyone else" in prompt
    assert lines_in(fake, thread.id)[-1]["author"]["username"] == "Leia"


async def test_end_posts_a_summary_and_archives_the_thread(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """The model sums the scene up, the bot posts it, the scene is over and the thread archived."""
    backend.script = lambda prompt: "Yoda and Homer shared grapes."
    handle = await fake.invoke_slash("scene end", {}, channel_id=thread.id)
    await handle.wait_original(lambda m: "ended" in m["content"])
    last = fake.messages_in(thread.id)[-1]
    assert last["content"] == "🎭 **The scene ends.**\nYoda and Homer shared grapes."
    assert "Summarize the scene above" in backend.prompts[-1].text and OPENING in backend.prompts[-1].text
    assert fake.get_channel(thread.id).archived
    scene = await running.store.scenes.get(thread.id)
    assert scene is not None and not scene.active


async def test_a_scene_goes_on_after_a_restart(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """The bot restarts mid-scene: the next message continues the scene, with its sheet and history."""
    engine = scripted_engine(AIROBOROS, backend)
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        await cast(running)
        thread = await start(fake, backend)
    backend.script = lambda prompt: 'Homer: "Back again!"'
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        await fake.send_message(thread.id, fake.alice, "Hello again.")
        lines = await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Back again!"'])
    assert lines[-1]["author"]["username"] == "Homer" and lines[-1]["avatar_url"] == HOMER_URL
    prompt: Prompt = backend.prompts[-1]
    assert prompt.text.endswith(f"ASSISTANT: {OPENING}</s>USER: Hello again. ASSISTANT:")
    assert "USER: Characters:\n- Yoda" in prompt.text
    assert len(fake.webhooks) == 1


async def test_without_manage_webhooks_lines_come_with_bold_names(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """No Manage Webhooks: the bot posts each line as **Name:** text and says why once."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.MANAGE_WEBHOOKS)
    backend.script = lambda prompt: OPENING
    await fake.invoke_slash("scene start", {"characters": "Yoda, Homer", "setting": SETTING})
    thread = await first_thread(fake)
    expected = [HEADER, NO_WEBHOOK_PERMISSION, '**Yoda:** "Mmm, grapes."', '**Homer:** "Woo-hoo!"']

    def done() -> list[str] | None:
        texts = [m["content"] for m in fake.messages_in(thread.id)]
        return texts if texts == expected else None

    await fake.wait_for(done, timeout=20)
    assert fake.webhooks == []


async def test_stop_keeps_the_lines_shown_and_stops_the_model(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """Stop on a long turn's header (only by whoever started it): the lines shown stay and are stored as partial."""
    backend.script = lambda prompt: 'Yoda: "' + " ".join(f"w{i}" for i in range(300)) + '"'
    backend.delay = 0.05
    await fake.send_message(thread.id, fake.alice, "Tell me everything.")
    stop = f"airoboros:scene:stop:{thread.id}"
    await fake.wait_for(lambda: len(headers(fake, thread.id)) == 2 or None, timeout=20)
    header = await offering(fake, headers(fake, thread.id)[-1]["id"], stop)
    await fake.wait_for(
        lambda: (len(lines_in(fake, thread.id)) == 3 and "w3" in lines_in(fake, thread.id)[-1]["content"]) or None,
        timeout=20,
    )
    carol = fake.add_member(fake.guild, "carol")
    refused = await fake.click_button(header["id"], stop, user=carol)
    assert (await refused.wait_callback())["data"]["flags"] & 64
    await (await fake.click_button(header["id"], stop, user=fake.alice)).wait_callback()
    await offering(fake, header["id"], f"airoboros:scene:regenerate:{thread.id}")
    assert fake.message(header["id"])["content"] == f"{HEADER} {STOPPED_MARK}"
    assert backend.active == 0
    role, content, status = (await stored_turns(running, thread.id))[-1]
    shown = lines_in(fake, thread.id)[-1]["content"]
    assert (role, status) == (Role.ASSISTANT, MessageStatus.PARTIAL)
    assert content == f"Yoda: {shown}" and "w3" in content and "w299" not in content


async def test_regenerate_replaces_all_the_turns_lines(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """Regenerate deletes the turn's character messages, posts new ones under the same header, stores one turn."""
    old = {m["id"] for m in lines_in(fake, thread.id)}
    (header,) = headers(fake, thread.id)
    regenerate = f"airoboros:scene:regenerate:{thread.id}"
    backend.script = lambda prompt: ' "Hmm."\nHomer: "Doh!"'
    await fake.click_button(header["id"], regenerate, user=fake.bob)
    new = await lines_reading(fake, thread.id, ['"Hmm."', '"Doh!"'])
    await offering(fake, header["id"], regenerate)
    assert not old & {m["id"] for m in new} and len(headers(fake, thread.id)) == 1
    # The scene's prompt again, opened by the turn's first speaker: the same character opens the new version.
    assert backend.prompts[-1].text == backend.prompts[0].text + " Yoda:"
    assert await stored_turns(running, thread.id) == [(Role.ASSISTANT, 'Yoda: "Hmm."\nHomer: "Doh!"', MessageStatus.OK)]
    turn = await running.store.message_by_external_id(int(header["id"]))
    assert turn is not None
    assert await running.store.external_ids(turn.id) == [int(header["id"])] + [int(m["id"]) for m in new]


async def test_regenerate_on_an_older_turn_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, thread: Any
) -> None:
    """An older turn's Regenerate (its buttons not taken off) is refused from the store; nothing changes."""
    (first,) = headers(fake, thread.id)
    regenerate = f"airoboros:scene:regenerate:{thread.id}"
    await offering(fake, first["id"], regenerate)
    fake.fail_next("PATCH", rf"/channels/{thread.id}/messages/{first['id']}", 403, code=50013, message="Missing")
    backend.script = lambda prompt: 'Yoda: "Late, you are."'
    await fake.send_message(thread.id, fake.alice, "Sorry I'm late!")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Late, you are."'])
    await offering(fake, headers(fake, thread.id)[-1]["id"], regenerate)
    prompts = len(backend.prompts)
    handle = await fake.click_button(first["id"], regenerate, user=fake.alice)
    (answer,) = await handle.wait_followups(timeout=10)
    assert "latest" in answer["content"] and answer["flags"] & 64
    assert [m["content"] for m in lines_in(fake, thread.id)] == ['"Mmm, grapes."', '"Woo-hoo!"', '"Late, you are."']
    assert len(backend.prompts) == prompts and len(await stored_turns(running, thread.id)) == 3


async def test_a_second_regenerate_press_is_refused(fake: FakeDiscord, backend: ScriptedBackend, thread: Any) -> None:
    """Two Regenerate presses at once: one plays the turn again, the other is told to wait."""
    (header,) = headers(fake, thread.id)
    regenerate = f"airoboros:scene:regenerate:{thread.id}"
    backend.script = lambda prompt: ' "Again, we play."'
    presses = await asyncio.gather(
        *(fake.click_button(header["id"], regenerate, user=u) for u in (fake.alice, fake.bob))
    )
    callbacks = [await press.wait_callback() for press in presses]
    refusals = [c for c in callbacks if c["type"] == 4]
    assert len(refusals) == 1 and refusals[0]["data"]["flags"] & 64 and "Wait" in refusals[0]["data"]["content"]
    await lines_reading(fake, thread.id, ['"Again, we play."'])
    await offering(fake, header["id"], regenerate)
    assert len(backend.prompts) == 2
