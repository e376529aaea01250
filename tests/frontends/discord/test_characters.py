"""The bot against the fake Discord: /character create|edit|list|show|delete|import|export."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import aiohttp
import pytest

from bot.core.cards import CardData, card_json, card_png, parse_card, placeholder_png
from bot.frontends.discord.features.characters.cog import Characters
from bot.store import StoredCharacter
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)

EPHEMERAL = 64
MANAGE_GUILD = 1 << 5
AVATAR = placeholder_png(8, (200, 10, 10))
ARIA = {"name": "Aria", "description": "A ship's navigator.", "personality": "calm", "speaking_style": "Terse."}


DEEP = b'{"name": "Deep", "character_book": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
"""A card nested 100,001 levels deep: Python's JSON decoder would raise RecursionError on it."""
BIG = json.dumps({"name": "Big", "creator_notes": "n" * 1024 * 1024}).encode()
"""Over 1 MB of JSON, which base64 fits in a PNG under the 2 MB image limit."""


def png_with_chara(raw: bytes) -> bytes:
    """AVATAR with ``raw`` as its base64 ``chara`` text chunk, just before the image's end chunk."""
    text = b"chara\x00" + base64.b64encode(raw)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text))
    return AVATAR[:-12] + chunk + AVATAR[-12:]


async def answered(handle: Any, timeout: float = 20) -> dict[str, Any]:  # noqa: ASYNC109
    """The interaction's response once it has content, an embed or files (not the "thinking" placeholder)."""
    return await handle.wait_original(
        lambda m: bool(m["content"] or m.get("embeds") or m.get("attachments")), timeout=timeout
    )


async def create(fake: FakeDiscord, values: dict[str, str] = ARIA, **options: Any) -> dict[str, Any]:
    """Run /character create, fill its form with ``values`` and return the submission's answer."""
    user = options.pop("user", fake.alice)
    opened = await fake.invoke_slash("character create", options, user=user)
    await opened.wait_callback(timeout=10)
    submitted = await fake.submit_modal(opened, values)
    return await answered(submitted)


async def character(running: Running, fake: FakeDiscord, name: str) -> StoredCharacter | None:
    return await running.store.characters.get(fake.guild.id, name)


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.read()


async def test_create_opens_a_form_and_stores_the_character_with_its_avatar(
    fake: FakeDiscord, running: Running
) -> None:
    """The form is the answer; the submission stores the fields and the downloaded avatar bytes."""
    original = await create(fake, avatar=("aria.png", AVATAR))
    assert original["flags"] & EPHEMERAL and "Created **Aria**" in original["content"]
    stored = await character(running, fake, "aria")
    assert stored is not None
    assert (stored.description, stored.personality, stored.speaking_style) == (
        "A ship's navigator.",
        "calm",
        "Terse.",
    )
    assert (stored.avatar, stored.avatar_type, stored.creator_id) == (AVATAR, "image/png", fake.alice.id)


async def test_create_keeps_an_https_avatar_link_and_refuses_others(fake: FakeDiscord, running: Running) -> None:
    """An https link is stored as given; an http link is refused before the form opens."""
    await create(fake, avatar_url="https://img.example/aria.png")
    stored = await character(running, fake, "Aria")
    assert stored is not None and stored.avatar_url == "https://img.example/aria.png" and not stored.has_avatar
    refused = await fake.invoke_slash("character create", {"avatar_url": "http://img.example/a.png"})
    assert "https://" in (await answered(refused))["content"]
    assert refused.modal is None


@pytest.mark.parametrize(
    ("values", "options", "message"),
    [
        (ARIA | {"name": "Discord Helper"}, {}, "“discord”"),
        (ARIA, {"avatar": ("notes.png", b"just text")}, "not a PNG, JPEG, GIF or WebP"),
    ],
)
async def test_a_refused_form_gives_back_what_was_typed(
    fake: FakeDiscord, running: Running, values: dict[str, str], options: dict[str, Any], message: str
) -> None:
    """A bad name or a non-image avatar is refused clearly, and the typed text comes back as a file."""
    original = await create(fake, values, **options)
    assert message in original["content"]
    assert [a["filename"] for a in original["attachments"]] == ["your-message.txt"]
    assert "A ship's navigator." in (await download(original["attachments"][0]["url"])).decode()
    assert await running.store.characters.list(fake.guild.id) == []


async def test_a_duplicate_name_is_refused_whatever_its_case(fake: FakeDiscord, running: Running) -> None:
    """A second "ARIA" in the server is refused and the first is unchanged."""
    await create(fake)
    original = await create(fake, ARIA | {"name": "ARIA", "description": "Other."})
    assert "already a character named “Aria”" in original["content"]
    stored = await character(running, fake, "aria")
    assert stored is not None and stored.description == "A ship's navigator."


async def test_oversized_avatar_is_refused_before_download(fake: FakeDiscord, running: Running) -> None:
    """An avatar over 2 MB is refused at once (no form, nothing downloaded)."""
    refused = await fake.invoke_slash("character create", {"avatar": ("big.png", AVATAR + b"\x00" * 2_100_000)})
    assert "at most 2.1 MB" in (await answered(refused))["content"]
    assert fake.attachment_downloads == []


async def test_list_shows_names_and_short_descriptions(fake: FakeDiscord, running: Running) -> None:
    """The list is private, sorted by name, one line per character."""
    empty = await answered(await fake.invoke_slash("character list"))
    assert "No characters here yet" in empty["content"]
    await create(fake, ARIA | {"name": "bo", "description": "x" * 300})
    await create(fake)
    listed = await answered(await fake.invoke_slash("character list"))
    assert listed["flags"] & EPHEMERAL
    lines = listed["content"].splitlines()
    assert lines[0] == "**2 characters:**"
    assert lines[1] == "**Aria** — A ship's navigator."
    assert lines[2].startswith("**bo** — xxx") and lines[2].endswith("…") and len(lines[2]) < 120


async def test_show_posts_an_embed_with_the_stored_avatar_attached(fake: FakeDiscord, running: Running) -> None:
    """The embed names the character; its thumbnail is the attached avatar file."""
    await create(fake, avatar=("aria.png", AVATAR))
    shown = await answered(await fake.invoke_slash("character show", {"name": "aria"}))
    assert not shown["flags"] & EPHEMERAL
    (embed,) = shown["embeds"]
    assert embed["title"] == "Aria" and embed["description"] == "A ship's navigator."
    assert embed["thumbnail"]["url"] == "attachment://avatar.png"
    assert [a["filename"] for a in shown["attachments"]] == ["avatar.png"]
    assert await download(shown["attachments"][0]["url"]) == AVATAR


async def test_show_of_an_unknown_name_says_so(fake: FakeDiscord, running: Running) -> None:
    """An unknown name gets a short private error pointing at /character list."""
    (shown,) = await (await fake.invoke_slash("character show", {"name": "Nobody"})).wait_followups(1, timeout=20)
    assert "no character named “Nobody”" in shown["content"] and shown["flags"] & EPHEMERAL


async def test_edit_offers_a_filled_form_and_saves_it(fake: FakeDiscord, running: Running) -> None:
    """/character edit answers with a button; its form holds the current values; the submission saves."""
    await create(fake)
    edit = await fake.invoke_slash("character edit", {"name": "Aria"})
    message = await answered(edit)
    assert message["flags"] & EPHEMERAL and "Editing **Aria**" in message["content"]
    button = message["components"][0]["components"][0]
    opened = await fake.click_button(message["id"], button["custom_id"])
    await opened.wait_callback(timeout=10)
    assert opened.modal is not None
    defaults = json.dumps(opened.modal["components"])
    assert "A ship's navigator." in defaults and "Terse." in defaults
    saved = await answered(await fake.submit_modal(opened, ARIA | {"name": "Aria Prime", "personality": "bold"}))
    assert "Saved **Aria Prime**" in saved["content"]
    stored = await character(running, fake, "aria prime")
    assert stored is not None and stored.personality == "bold"


async def test_only_the_creator_or_manage_server_may_edit_or_delete(fake: FakeDiscord, running: Running) -> None:
    """Another member (even with Manage Messages) is refused; someone with Manage Server may delete."""
    await create(fake)
    for command in ("character edit", "character delete"):
        refused = await answered(await fake.invoke_slash(command, {"name": "Aria"}, user=fake.bob))
        assert "Manage Server" in refused["content"]
    assert await character(running, fake, "Aria") is not None
    admin = fake.add_member(fake.guild, "dana", "Dana")
    role = fake.add_role(fake.guild, "Admin", MANAGE_GUILD)
    fake.guild.members[admin.id].role_ids.append(role.id)
    deleted = await answered(await fake.invoke_slash("character delete", {"name": "aria"}, user=admin))
    assert "Deleted **Aria**" in deleted["content"]
    assert await character(running, fake, "Aria") is None


async def test_the_creator_may_delete(fake: FakeDiscord, running: Running) -> None:
    """The person who created a character may delete it."""
    await create(fake)
    deleted = await answered(await fake.invoke_slash("character delete", {"name": "Aria"}))
    assert "Deleted" in deleted["content"]
    assert await running.store.characters.list(fake.guild.id) == []


async def test_import_reads_a_v2_json_card(fake: FakeDiscord, running: Running) -> None:
    """A V2 .json card becomes a character; the card's other fields are kept."""
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": "Vex", "description": "A thief.", "personality": "sly", "scenario": "A heist."},
    }
    imported = await answered(
        await fake.invoke_slash("character import", {"file": ("vex.json", json.dumps(card).encode())})
    )
    assert "Imported **Vex**" in imported["content"]
    stored = await character(running, fake, "vex")
    assert stored is not None and stored.personality == "sly" and stored.extra["scenario"] == "A heist."


async def test_import_reads_a_png_card_whose_image_becomes_the_avatar(fake: FakeDiscord, running: Running) -> None:
    """A PNG card's chara chunk is the character; the image is its avatar; `name` renames it."""
    image = card_png(AVATAR, CardData(name="Vex", description="A thief."))
    imported = await answered(
        await fake.invoke_slash("character import", {"file": ("vex.png", image), "name": "Vex Two"})
    )
    assert "Imported **Vex Two** with its avatar" in imported["content"]
    stored = await character(running, fake, "Vex Two")
    assert stored is not None and stored.avatar == AVATAR and stored.avatar_type == "image/png"


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("card.json", b"{oops", "not valid JSON"),
        ("card.json", json.dumps({"spec": "other"}).encode(), "Unsupported card spec"),
        ("card.json", json.dumps({"description": "?"}).encode(), "has no `name`"),
        ("card.png", AVATAR, "without a character card"),
        ("card.json", json.dumps({"name": "y" * 81}).encode(), "at most 80"),
        ("card.json", b" " * (1024 * 1024 + 1), "at most 1.0 MB"),
        ("deep.json", DEEP, "nested 100001 levels deep"),
        ("deep.png", png_with_chara(DEEP), "nested 100001 levels deep"),
        ("big.png", png_with_chara(BIG), "`big.png` is 1.0 MB of JSON; a card can be at most 1.0 MB"),
    ],
    ids=["broken", "spec", "nameless", "no-chara", "long-name", "big-json", "deep-json", "deep-png", "big-in-png"],
)
async def test_import_refuses_bad_files_clearly(
    fake: FakeDiscord, running: Running, filename: str, data: bytes, message: str
) -> None:
    """Each bad card gets a private error naming the problem; nothing is stored."""
    refused = await answered(await fake.invoke_slash("character import", {"file": (filename, data)}))
    assert refused["flags"] & EPHEMERAL and message in refused["content"]
    assert await running.store.characters.list(fake.guild.id) == []


async def test_import_of_a_taken_name_suggests_the_name_option(fake: FakeDiscord, running: Running) -> None:
    """Importing over an existing name is refused and points at `name`."""
    await create(fake)
    card = card_json(CardData(name="aria", description="Imposter."))
    refused = await answered(await fake.invoke_slash("character import", {"file": ("aria.json", card)}))
    assert "already a character named “Aria”" in refused["content"] and "`name`" in refused["content"]


async def test_export_gives_a_json_and_a_png_card(fake: FakeDiscord, running: Running) -> None:
    """Both files arrive; each reads back as the character; the PNG is the stored avatar with the card inside."""
    await create(fake, avatar=("aria.png", AVATAR))
    exported = await answered(await fake.invoke_slash("character export", {"name": "Aria"}))
    assert exported["flags"] & EPHEMERAL
    files = {a["filename"]: a["url"] for a in exported["attachments"]}
    assert set(files) == {"Aria.json", "Aria.png"}
    from_json = parse_card(await download(files["Aria.json"]), "Aria.json")
    from_png = parse_card(await download(files["Aria.png"]), "Aria.png")
    assert from_json.name == from_png.name == "Aria"
    assert from_json.speaking_style == from_png.speaking_style == "Terse."
    assert from_png.avatar == AVATAR


async def test_character_names_autocomplete(fake: FakeDiscord, running: Running) -> None:
    """The store's names that contain what was typed are offered."""
    await create(fake)
    await create(fake, ARIA | {"name": "Bo"})
    cog = next(c for c in running.bot.cogs.values() if isinstance(c, Characters))

    class Typing:
        guild_id = fake.guild.id

    choices = await cog._names(Typing(), "ar")  # type: ignore[arg-type]
    assert [c.name for c in choices] == ["Aria"]
