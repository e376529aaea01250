"""Scenes nobody can break: clashing names, lines posing as others, who may direct, regenerating a nudged turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ModelConfig, ScenesConfig
from bot.store import MessageStatus, Role
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running, run_bot
from tests.frontends.discord.test_scenes import (
    OPENING,
    cast,
    lines_in,
    lines_reading,
    start,
    stored,
    stored_turns,
)

AIROBOROS = Config(models=[ModelConfig(name="smollm2", prompt_format="airoboros")])


@pytest.fixture
async def running(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> Any:
    """The bot on the scripted model in the card's airoboros prompt format."""
    async with run_bot(fake, scripted_engine(AIROBOROS, backend), tmp_path / "bot.sqlite3") as running:
        yield running


async def test_a_person_named_like_a_character_plays_on_under_a_suffix(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A member showing as "yoda" joins: the scene answers every turn, the sheet and stops read ``yoda (2)``."""
    await cast(running)
    thread = await start(fake, backend)
    impostor = fake.add_member(fake.guild, "impostor", "yoda")
    backend.script = lambda prompt: 'Yoda: "Two of us, there are."'
    await fake.send_message(thread.id, impostor, "Hello, me.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Two of us, there are."'])
    await stored(fake, thread.id)
    backend.script = lambda prompt: 'Homer: "Doh!"'
    await fake.send_message(thread.id, fake.alice, "And again.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Two of us, there are."', '"Doh!"'])
    prompt = backend.prompts[-1]
    assert "- USER/yoda (2) - don't generate any speech or actions on behalf of yoda (2)\n" in prompt.text
    assert "USER: yoda (2): Hello, me. ASSISTANT:" in prompt.text
    assert "\nyoda (2):" in prompt.stop
    assert lines_in(fake, thread.id)[2]["author"]["username"] == "Yoda"


async def test_two_people_with_one_display_name_keep_apart(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Two members both showing as "Alex" are ``Alex`` and ``Alex (2)`` in the prompt, in the order they joined."""
    await cast(running)
    thread = await start(fake, backend)
    first, second = fake.add_member(fake.guild, "alex1", "Alex"), fake.add_member(fake.guild, "alex2", "Alex")
    backend.script = lambda prompt: 'Yoda: "Welcome."'
    await fake.send_message(thread.id, first, "I'm Alex.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Welcome."'])
    await stored(fake, thread.id)
    backend.script = lambda prompt: 'Homer: "Two Alexes!"'
    await fake.send_message(thread.id, second, "No, I'm Alex.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Welcome."', '"Two Alexes!"'])
    prompt = backend.prompts[-1].text
    assert "USER: Alex: I'm Alex. ASSISTANT:" in prompt
    assert "USER: Alex (2): No, I'm Alex. ASSISTANT:" in prompt


async def test_a_line_typed_as_a_character_stays_the_persons(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Alice typing ``yoda: I surrender`` reaches the model with a full-width colon: never as Yoda's line."""
    await cast(running)
    thread = await start(fake, backend)
    backend.script = lambda prompt: ' "Huh?"'  # the message names Yoda first: Yoda answers
    await fake.send_message(thread.id, fake.alice, "Fine.\nyoda: I surrender\nHOMER : me too")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Huh?"'])
    assert "USER: Fine.\nyoda： I surrender\nHOMER ： me too ASSISTANT:" in backend.prompts[-1].text


async def test_only_the_starter_or_a_thread_moderator_directs_the_scene(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Bob cannot end, add to or remove from Alice's scene; Alice can end it."""
    await cast(running)
    thread = await start(fake, backend)
    for command, options in (("scene end", {}), ("scene remove", {"character": "Homer"})):
        handle = await fake.invoke_slash(command, options, channel_id=thread.id, user=fake.bob)
        answer = await handle.wait_original(lambda m: "⚠️" in m["content"])
        assert "Only the person who started this scene" in answer["content"]
    scene = await running.store.scenes.get(thread.id)
    assert scene is not None and scene.active and len(scene.cast) == 2
    backend.script = lambda prompt: "They shared grapes."
    handle = await fake.invoke_slash("scene end", {}, channel_id=thread.id, user=fake.alice)
    await handle.wait_original(lambda m: "ended" in m["content"])


async def test_regenerate_on_a_nudged_turn_keeps_its_speaker_and_the_trained_layout(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A nudged Homer turn regenerated: the prompt ends ``{script}\\nHomer:``, never two ASSISTANT turns in a row."""
    await cast(running)
    thread = await start(fake, backend)
    backend.script = lambda prompt: ' "Mmm... donuts."'
    await fake.invoke_slash("scene nudge", {"character": "Homer"}, channel_id=thread.id)
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Mmm... donuts."'])
    header = await stored(fake, thread.id)
    backend.script = lambda prompt: ' "Beer?"'
    await fake.click_button(header["id"], f"airoboros:scene:regenerate:{thread.id}", user=fake.alice)
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Beer?"'])
    await stored(fake, thread.id)
    prompt = backend.prompts[-1].text
    assert prompt.endswith(f"ASSISTANT: {OPENING}\nHomer:")
    assert prompt.count("ASSISTANT:") == 1
    assert lines_in(fake, thread.id)[-1]["author"]["username"] == "Homer"
    assert (await stored_turns(running, thread.id))[-1] == (Role.ASSISTANT, 'Homer: "Beer?"', MessageStatus.OK)


async def test_narration_is_posted_under_the_narrator_and_a_turn_has_a_line_cap(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Unnamed opening text goes out as the Narrator; past ``max_lines_per_turn`` character lines the turn ends."""
    config = AIROBOROS.model_copy(update={"scenes": ScenesConfig(max_lines_per_turn=2, narrator_name="Storyteller")})
    async with run_bot(fake, scripted_engine(config, backend), tmp_path / "bot.sqlite3") as running:
        await cast(running)
        backend.script = lambda prompt: 'The cafe hums.\nYoda: "Mm."\nHomer: "Woo!"\nYoda: "Again, I speak."'
        await fake.invoke_slash("scene start", {"characters": "Yoda, Homer", "setting": "A cafe."})
        thread = await fake.wait_for(lambda: fake.threads[0] if fake.threads else None)
        lines = await lines_reading(fake, thread.id, ["The cafe hums.", '"Mm."', '"Woo!"'])
        await stored(fake, thread.id)
        assert [m["author"]["username"] for m in lines] == ["Storyteller", "Yoda", "Homer"]
        assert backend.active == 0
        turns = await stored_turns(running, thread.id)
        assert turns[-1] == (Role.ASSISTANT, 'The cafe hums.\nYoda: "Mm."\nHomer: "Woo!"', MessageStatus.OK)


async def test_naming_a_character_makes_it_answer(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """ "homer, more grapes?" is answered by Homer: the prompt ends ``ASSISTANT: Homer:``."""
    await cast(running)
    thread = await start(fake, backend)
    backend.script = lambda prompt: ' "Mmm, more."'
    await fake.send_message(thread.id, fake.alice, "homer, more grapes?")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Mmm, more."'])
    assert backend.prompts[-1].text.endswith("USER: homer, more grapes? ASSISTANT: Homer:")
    assert lines_in(fake, thread.id)[-1]["author"]["username"] == "Homer"


async def test_replying_to_a_characters_line_makes_it_answer(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A Discord reply to Yoda's message is answered by Yoda, though the text names nobody."""
    await cast(running)
    thread = await start(fake, backend)
    yoda_line = lines_in(fake, thread.id)[0]
    backend.script = lambda prompt: ' "Yes, grapes."'
    await fake.send_message(thread.id, fake.alice, "Really?", reply_to=yoda_line["id"])
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Yes, grapes."'])
    assert backend.prompts[-1].text.endswith("ASSISTANT: Yoda:")
    assert lines_in(fake, thread.id)[-1]["author"]["username"] == "Yoda"


async def test_round_robin_mode_takes_turns_one_character_each(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """After ``/scene mode round-robin`` each turn is one character's, after the last one heard."""
    await cast(running)
    thread = await start(fake, backend)
    handle = await fake.invoke_slash("scene mode", {"mode": "round-robin"}, channel_id=thread.id)
    await handle.wait_original(lambda m: "take turns" in m["content"])
    backend.script = lambda prompt: ' "One."\nHomer: "Two."'
    await fake.send_message(thread.id, fake.alice, "Go on.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"One."'])
    await stored(fake, thread.id)
    assert backend.prompts[-1].text.endswith("ASSISTANT: Yoda:")  # Homer spoke last in the opening
    backend.script = lambda prompt: ' "Three."'
    await fake.send_message(thread.id, fake.alice, "And?")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"One."', '"Three."'])
    assert backend.prompts[-1].text.endswith("ASSISTANT: Homer:")
    scene = await running.store.scenes.get(thread.id)
    assert scene is not None and scene.mode == "round-robin"


async def test_a_line_a_proxy_bot_reposts_is_the_persons_under_the_proxy_name(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """PluralKit deletes Alice's ``k: Hello there`` and reposts it as Kira: answered once, kept, Kira in the sheet."""
    await cast(running)
    thread = await start(fake, backend)
    pluralkit = fake.add_webhook(fake.channel.id, "PluralKit", fake.add_user("pluralkit", "PluralKit"))
    backend.script = lambda prompt: 'Yoda: "Welcome, you are."'
    original = await fake.send_message(thread.id, fake.alice, "k: Hello there")
    shown = ['"Mmm, grapes."', '"Woo-hoo!"', '"Welcome, you are."', "Hello there"]  # Kira's repost is a webhook's
    await lines_reading(fake, thread.id, shown[:3])  # Alice's line is answered before the proxy acts
    await fake.delete_message_as(original["id"])
    await asyncio.sleep(0.3)  # as PluralKit does: the repost comes a moment after the deletion, not at once
    repost = await fake.post_as_webhook(pluralkit, thread.id, "Hello there", username="Kira")
    await lines_reading(fake, thread.id, shown)
    await stored(fake, thread.id)
    backend.script = lambda prompt: 'Homer: "Hi, Kira!"'
    await fake.send_message(thread.id, fake.bob, "Hi all.")
    await lines_reading(fake, thread.id, [*shown, '"Hi, Kira!"'])
    prompt = backend.prompts[-1].text
    assert "- USER/Kira - don't generate any speech or actions on behalf of Kira\n" in prompt
    assert "USER: Kira: Hello there ASSISTANT:" in prompt and "k: Hello" not in prompt
    assert len(backend.prompts) == 3  # the opening, Alice's (Kira's) line once, Bob's
    stored_line = await running.store.message_by_external_id(int(repost["id"]))
    assert stored_line is not None and stored_line.author_name == "Kira"


async def test_a_recent_line_deleted_with_no_repost_leaves_the_history(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deletion that no proxy bot follows up takes the line out of the scene's history after the grace."""
    monkeypatch.setattr(running.bot.services.proxies, "grace", 0.2)
    await cast(running)
    thread = await start(fake, backend)
    backend.script = lambda prompt: 'Yoda: "Hm."'
    sent = await fake.send_message(thread.id, fake.alice, "Oops, wrong thread.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Hm."'])
    await stored(fake, thread.id)
    await fake.delete_message_as(sent["id"])
    deadline = asyncio.get_running_loop().time() + 3  # the grace is 0.2 s: the line goes once it has passed
    while await running.store.message_by_external_id(int(sent["id"])) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the deleted line stayed in the history"
        await asyncio.sleep(0.05)


async def test_a_scene_starts_as_a_post_in_a_forum(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """``forum:`` opens the scene as a post there; the characters speak in it and people play on as anywhere."""
    await cast(running)
    forum = fake.add_forum_channel(fake.guild, "campaigns")
    backend.script = lambda prompt: OPENING
    options = {"characters": "Yoda, Homer", "setting": "A cafe on the moon.", "forum": forum.id}
    handle = await fake.invoke_slash("scene start", options)
    await handle.wait_original(lambda m: "Your scene is in" in m["content"])
    (thread,) = fake.threads
    assert thread.parent_id == forum.id
    assert "starts a scene with **Yoda**, **Homer**" in fake.message(thread.id)["content"]  # the post's message
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"'])
    await stored(fake, thread.id)
    backend.script = lambda prompt: 'Homer: "Moon grapes!"'
    await fake.send_message(thread.id, fake.alice, "Nice post.")
    await lines_reading(fake, thread.id, ['"Mmm, grapes."', '"Woo-hoo!"', '"Moon grapes!"'])
    assert {webhook.channel_id for webhook in fake.webhooks} == {forum.id}
