"""A scene's cast as Discord shows it: finding the scene and its characters, names people go by, avatars."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import discord

from bot.core.card_prompt import scene_character as card_character
from bot.core.scenes import MAX_NAME_LENGTH, SceneCharacter
from bot.errors import BotError
from bot.frontends.discord.ui.spoken import Speaker
from bot.store import SceneMember, Store, StoredCharacter, StoredScene

_log = logging.getLogger(__name__)

AVATAR_URL_TTL = 6 * 3600.0
"""Seconds an avatar attachment's URL is reused before the message is read again (Discord's URLs expire)."""
MESSAGE_LIMIT = 2000
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
_UNSAFE_IN_NAME = re.compile(r"[:\r\n]+")


class SceneError(BotError):
    """A scene command cannot do what was asked; the text says why."""


def scene_character(character: StoredCharacter) -> SceneCharacter:
    """The sheet's character for a stored one, with its card's fields (:func:`bot.core.card_prompt.scene_character`)."""
    return card_character(character)


def human_name(display_name: str) -> str:
    """A person's display name as the scene knows it: no colon or line break (the script reads ``Name:``)."""
    cleaned = " ".join(_UNSAFE_IN_NAME.sub(" ", display_name).split())[:MAX_NAME_LENGTH].strip()
    return cleaned or "Guest"


def split_names(text: str) -> list[str]:
    """``"Yoda, Homer ,yoda"`` -> ``["Yoda", "Homer"]`` (once each, whatever the case)."""
    names: dict[str, str] = {}
    for name in (part.strip() for part in text.split(",")):
        if name:
            names.setdefault(name.casefold(), name)
    return list(names.values())


def split_rules(text: str | None) -> tuple[str, ...] | None:
    """Rules typed as ``rule one; rule two`` (None: the card's rules)."""
    if text is None:
        return None
    return tuple(rule.strip() for rule in text.split(";") if rule.strip())


def avatar_filename(character: StoredCharacter) -> str:
    """The name an uploaded avatar is attached under, so its URL can be found again."""
    return f"avatar-{character.id}.{_EXTENSIONS.get(character.avatar_type or '', 'png')}"


def avatar_file(character: StoredCharacter) -> discord.File | None:
    if character.avatar_url or character.avatar is None:
        return None
    return discord.File(io.BytesIO(character.avatar), avatar_filename(character))


def short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Avatars:
    """Where each character's avatar is: its https link, or the URL of its uploaded avatar's attachment (cached)."""

    def __init__(self) -> None:
        self._attachments: dict[int, tuple[float, dict[str, str]]] = {}

    async def speaker(self, thread: discord.Thread, character: StoredCharacter, member: SceneMember) -> Speaker:
        """How ``character`` posts: its name, and its avatar link or the URL of its uploaded avatar."""
        if character.avatar_url:
            return Speaker(character.name, character.avatar_url)
        if not character.has_avatar or member.avatar_message_id is None:
            return Speaker(character.name)
        urls = await self._attachment_urls(thread, member.avatar_message_id)
        return Speaker(character.name, urls.get(avatar_filename(character)))

    async def _attachment_urls(self, thread: discord.Thread, message_id: int) -> dict[str, str]:
        cached = self._attachments.get(message_id)
        if cached is not None and time.monotonic() - cached[0] < AVATAR_URL_TTL:
            return cached[1]
        # The thread's starter message (its id is the thread's) lives in the parent channel.
        parent = thread.parent
        where = parent if message_id == thread.id and isinstance(parent, discord.TextChannel) else thread
        try:
            message = await where.fetch_message(message_id)
        except discord.HTTPException:
            _log.info("The avatar message %d of a scene is gone; characters speak with the default avatar", message_id)
            return {}
        urls = {attachment.filename: attachment.url for attachment in message.attachments}
        self._attachments[message_id] = (time.monotonic(), urls)
        return urls


async def scene_here(
    store: Store, interaction: discord.Interaction[Any], *, directing: bool = False
) -> tuple[discord.Thread, StoredScene]:
    """The going scene of the thread the command was used in.

    ``directing`` (``/scene add|remove|end``): only the scene's starter, the thread's owner or someone with
    Manage Threads may change the cast or end it; anyone in the thread may play and nudge.
    """
    channel = interaction.channel
    scene = await store.scenes.get(channel.id) if isinstance(channel, discord.Thread) else None
    if scene is None or not isinstance(channel, discord.Thread):
        raise SceneError("Use this command inside a scene's thread (start one with /scene start).")
    if not scene.active:
        raise SceneError("This scene has ended; start a new one with /scene start.")
    stewards = (scene.creator_id, channel.owner_id)
    if directing and interaction.user.id not in stewards and not interaction.permissions.manage_threads:
        raise SceneError("Only the person who started this scene, or someone with Manage Threads, can do that.")
    return channel, scene


async def find_cast(store: Store, guild_id: int, names: Sequence[str]) -> list[StoredCharacter]:
    """The server's characters of these names; an unknown name gets the list of the server's characters."""
    if not names:
        raise SceneError("Name at least one character (see /character list).")
    found = {name: await store.characters.get(guild_id, name) for name in names}
    missing = [name for name, character in found.items() if character is None]
    if missing:
        known = [c.name for c in await store.characters.list(guild_id)]
        which = ", ".join(f"“{name[:80]}”" for name in missing)
        listing = (
            f"This server's characters: {', '.join(known)}."
            if known
            else "This server has no characters yet: create one with /character create."
        )
        raise SceneError(short(f"No character named {which} here. {listing}", 1900))
    return [character for character in found.values() if character is not None]


async def cast_member(store: Store, interaction: discord.Interaction[Any], name: str) -> StoredCharacter:
    """A character of this scene's cast, by name."""
    _, scene = await scene_here(store, interaction)
    found = (await find_cast(store, scene.guild_id, [name]))[0]
    if not any(member.character_id == found.id for member in scene.cast):
        raise SceneError(f"{found.name} is not in this scene; bring them in with /scene add.")
    return found
