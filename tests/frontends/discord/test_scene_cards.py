"""Scenes with community cards: a cast too big for the window refused before any thread, greetings, lorebooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.cards import CardData, parse_card
from bot.store import MessageStatus, Role
from tests.core._cards import card_file
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, first_thread
from tests.frontends.discord.conftest import Running, run_bot
from tests.frontends.discord.test_scenes import AIROBOROS, SETTING, lines_reading, running_guild, stored, stored_turns

pytestmark = pytest.mark.timeout(60)

LONG = "A very long community card description, paragraph after paragraph. " * 58
"""About 4,000 characters: under the form's limit, some 800 tokens."""


@pytest.fixture
async def running(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> AsyncIterator[Running]:
    """The bot on the scripted model in the card's airoboros prompt format."""
    async with run_bot(fake, scripted_engine(AIROBOROS, backend), tmp_path / "bot.sqlite3") as running:
        yield running


async def cast(running: Running, *cards: CardData) -> None:
    """Store each card's character, as /character import would."""
    for card in cards:
        fields = {"description": card.description, "personality": card.personality, "extra": card.extra}
        await running.store.characters.create(
            guild_id=running_guild(running), name=card.name, speaking_style="", creator_id=1, **fields
        )


def mira() -> CardData:
    """Mira, from her V2 card (lorebook, examples, greetings)."""
    return parse_card(card_file("mira_v2.json"), "mira.json")


ANN, BO = CardData("Ann", LONG), CardData("Bo", LONG)


async def test_a_cast_too_big_for_the_window_is_refused_before_any_thread_opens(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Two 4,000-character cards: refused at /scene start, each card's size and the budget named, nothing posted."""
    await cast(running, ANN, BO)
    handle = await fake.invoke_slash("scene start", {"characters": "Ann, Bo", "setting": SETTING})
    answer = await handle.wait_original(lambda m: "⚠️" in m["content"])
    assert "This cast does not fit the model's window" in answer["content"]
    assert "(the cards: Ann " in answer["content"] and ", Bo " in answer["content"]
    assert "a prompt has 1,536 tokens (a 2,048-token window less 512 for the reply)" in answer["content"]
    assert fake.threads == [] and bot_messages(fake, fake.channel.id) == [] and backend.prompts == []


async def test_a_character_too_big_to_join_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/scene add measures the cast with the newcomer and refuses it, naming the sizes; the cast stays."""
    await cast(running, ANN, BO)
    backend.script = lambda prompt: 'Ann: "Hello."'
    await fake.invoke_slash("scene start", {"characters": "Ann", "setting": SETTING})
    thread = await first_thread(fake)
    await stored(fake, thread.id)
    add = await fake.invoke_slash("scene add", {"character": "Bo"}, channel_id=thread.id)
    answer = await add.wait_original(lambda m: "⚠️" in m["content"])
    assert "This cast does not fit" in answer["content"] and "Bo " in answer["content"]
    scene = await running.store.scenes.get(thread.id)
    assert scene is not None and len(scene.cast) == 1


async def test_greetings_open_the_scene_in_the_characters_voices(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Every card has a first_mes: they are the opening (macros filled for Alice), stored, and no model runs."""
    await cast(running, mira(), CardData("Bo", "a smuggler.", extra={"first_mes": "*{{char}} nods at {{user}}.*"}))
    await fake.invoke_slash("scene start", {"characters": "Mira, Bo", "setting": SETTING})
    thread = await first_thread(fake)
    greeting = (
        '*Mira looks up from the bar as the door bangs open.* "Shut that, Alice, before the marsh comes in with you."'
    )
    await lines_reading(fake, thread.id, [greeting, "*Bo nods at Alice.*"])
    await stored(fake, thread.id)
    assert backend.prompts == []
    assert await stored_turns(running, thread.id) == [
        (Role.ASSISTANT, f"Mira: {greeting}\nBo: *Bo nods at Alice.*", MessageStatus.OK)
    ]


async def test_a_lorebook_entry_reaches_the_prompt_when_its_key_is_said(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Mira's marsh-lights entry is in the prompt only once someone mentions the lights; her examples are too."""
    await cast(running, mira())
    await fake.invoke_slash("scene start", {"characters": "Mira", "setting": SETTING})
    thread = await first_thread(fake)
    await stored(fake, thread.id)
    backend.script = lambda prompt: 'Mira: "Hm."'
    await fake.send_message(thread.id, fake.alice, "Evening.")
    await fake.wait_for(lambda: len(backend.prompts) == 1 or None, timeout=20)
    await fake.send_message(thread.id, fake.alice, "What are those lights out there?")
    await fake.wait_for(lambda: len(backend.prompts) == 2 or None, timeout=20)
    entry = "The marsh lights are drowned souls; whoever follows them is never found."
    assert entry not in backend.prompts[0].text
    assert "never anyone else\nExample dialogue with Mira:\nAlice: Is there a room free?\n" in backend.prompts[1].text
    assert f"It always rains in the Saltmarsh.\n{entry}\nAlice arrives at the Lantern Inn" in backend.prompts[1].text
