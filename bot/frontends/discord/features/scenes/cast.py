"""A scene's cast as Discord shows it: names people and characters go by, and the avatars characters speak with."""

from __future__ import annotations

import io
import logging
import re
import time

import discord

from bot.core.card_prompt import scene_character as card_character
from bot.core.scenes import MAX_NAME_LENGTH, SceneCharacter
from bot.errors import BotError
from bot.frontends.discord.ui.spoken import Speaker
from bot.store import SceneMember, StoredCharacter

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
