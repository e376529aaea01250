"""/character with community cards: sizes in tokens at import, create and show; V3 cards; long fields trimmed."""

from __future__ import annotations

import json

import pytest

from bot.core.card_prompt import card_fields, card_size, scene_character
from bot.inference.tokenizer import HFTokenizer
from bot.store import StoredCharacter
from tests.core._cards import card_file, card_object, long_card, png_card
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running
from tests.frontends.discord.test_characters import answered, character, create

pytestmark = pytest.mark.timeout(60)


def sizes(character: StoredCharacter, tokenizer: HFTokenizer) -> tuple[int, int, int]:
    """The card's sheet, examples and lorebook sizes with the embedded model's tokenizer (the bot's default)."""
    size = card_size(
        scene_character(character),
        card_fields(character.extra).lorebook,
        count=lambda text: len(tokenizer.encode_plain(text)),
        lore_budget=256,
    )
    return size.sheet, size.examples, size.lorebook


async def test_import_says_the_cards_size_in_tokens(
    fake: FakeDiscord, running: Running, embedded_tokenizer: tuple[HFTokenizer, int]
) -> None:
    """Mira's V2 card: its sheet, example and lorebook sizes against the window a prompt has."""
    imported = await answered(
        await fake.invoke_slash("character import", {"file": ("mira.json", card_file("mira_v2.json"))})
    )
    stored = await character(running, fake, "Mira")
    assert stored is not None
    sheet, examples, lorebook = sizes(stored, embedded_tokenizer[0])
    assert (
        f"Size: {sheet:,} tokens on a scene's sheet, of the 1,536 a prompt has (a 2,048-token window less 512 for the "
        f"reply); its example dialogue adds {examples:,} while there is room; its lorebook up to {lorebook:,} a turn."
    ) in imported["content"]
    assert stored.speaking_style == "" and stored.extra["character_book"]["token_budget"] == 120


async def test_create_says_the_new_characters_size(
    fake: FakeDiscord, running: Running, embedded_tokenizer: tuple[HFTokenizer, int]
) -> None:
    """A character made with the form is measured the same way (no examples, no lorebook)."""
    created = await create(fake)
    stored = await character(running, fake, "Aria")
    assert stored is not None
    sheet, _, _ = sizes(stored, embedded_tokenizer[0])
    assert f"Size: {sheet:,} tokens on a scene's sheet, of the 1,536 a prompt has" in created["content"]
    assert "example dialogue" not in created["content"] and "lorebook" not in created["content"]


async def test_an_over_long_description_is_imported_trimmed_and_says_how_much(
    fake: FakeDiscord, running: Running
) -> None:
    """A 6,000-character description no longer refuses the card: it is cut, and import and show say so."""
    data = json.dumps(long_card()).encode()
    imported = await answered(await fake.invoke_slash("character import", {"file": ("archivist.json", data)}))
    stored = await character(running, fake, "Archivist")
    assert stored is not None and len(stored.description) <= 4000
    assert (
        f"Trimmed at import: its description was 6,000 characters long; the first {len(stored.description):,} were "
        "kept (Discord's edit form holds 4,000)."
    ) in imported["content"]
    shown = await answered(await fake.invoke_slash("character show", {"name": "Archivist"}))
    assert "Trimmed at import" in [field["name"] for field in shown["embeds"][0]["fields"]]


async def test_a_v3_png_card_is_imported_from_its_ccv3_chunk(fake: FakeDiscord, running: Running) -> None:
    """A PNG with a V3 ``ccv3`` chunk (and a V2 backfill) imports the V3 card, keeping its own fields."""
    backfill = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Old Vex"}}
    image = png_card(chara=backfill, ccv3=card_object("vex_v3.json"))
    imported = await answered(await fake.invoke_slash("character import", {"file": ("vex.png", image)}))
    assert "Imported **Vex** with its avatar" in imported["content"]
    stored = await character(running, fake, "Vex")
    assert stored is not None and stored.extra["group_only_greetings"] and stored.extra["nickname"] == "V"


async def test_show_gives_the_creators_notes_and_the_size(fake: FakeDiscord, running: Running) -> None:
    """The embed has the card's creator's notes and its size."""
    await answered(await fake.invoke_slash("character import", {"file": ("mira.json", card_file("mira_v2.json"))}))
    shown = await answered(await fake.invoke_slash("character show", {"name": "Mira"}))
    fields = {field["name"]: field["value"] for field in shown["embeds"][0]["fields"]}
    assert fields["Creator's notes"] == card_object("mira_v2.json")["data"]["creator_notes"]
    assert fields["Size in the model's window"].startswith("Size: ")


async def test_show_fills_the_cards_macros_for_the_reader(fake: FakeDiscord, running: Running) -> None:
    """{{char}} and <USER> in the card read as Mira and the person who asked."""
    await answered(await fake.invoke_slash("character import", {"file": ("mira.json", card_file("mira_v2.json"))}))
    shown = await answered(await fake.invoke_slash("character show", {"name": "Mira"}, user=fake.bob))
    (embed,) = shown["embeds"]
    assert embed["description"].startswith("Mira is the keeper of the Lantern Inn")
    assert {field["name"]: field["value"] for field in embed["fields"]}["Personality"] == "warm, sly, protective of Bob"
