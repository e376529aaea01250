"""Who speaks a character's line (name and avatar as Discord accepts them), and the line streaming on screen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import discord
from asyncio_throttle import Throttler

from bot.errors import BotError
from bot.frontends.discord.ui.feedback import refusal
from bot.frontends.discord.ui.splitting import split_message

if TYPE_CHECKING:  # the voice makes lines: only the types come from there
    from bot.frontends.discord.ui.voices import CharacterVoice, Place

_log = logging.getLogger(__name__)

EMPTY_LINE = "…"
"""What a line shows before its first word: Discord refuses empty messages."""
NAME_LIMIT = 80
"""Discord's longest webhook username."""
FALLBACK_NAME = "Character"
"""The name shown for a character whose name is empty once cleaned."""


_FORBIDDEN = re.compile("discord|clyde", re.IGNORECASE)
"""Words Discord refuses in a webhook's name."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _defuse(match: re.Match[str]) -> str:
    """Keep a forbidden word readable: Discord -> D1scord, Clyde -> Cl yde (the case of the rest is kept)."""
    word = match.group()
    return word[0] + "1" + word[2:] if word.lower() == "discord" else word[:2] + " " + word[2:]


def speaker_name(name: str) -> str:
    """``name`` as Discord accepts it for a webhook post: one line, 1-80 characters, no "discord" or "clyde"."""
    cleaned = " ".join(_CONTROL.sub(" ", name).split())
    while _FORBIDDEN.search(cleaned):  # a fix can join letters into another occurrence ("discordiscord")
        cleaned = _FORBIDDEN.sub(_defuse, cleaned)
    # Cutting only removes letters, so it cannot make a forbidden word.
    return cleaned[:NAME_LIMIT].strip() or FALLBACK_NAME


def speaker_avatar(url: str | None) -> str | None:
    """``url`` if Discord can fetch it as an avatar (an absolute https URL), else None (the default avatar)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme == "https" and parts.netloc else None


@dataclass(frozen=True)
class Speaker:
    """Who says a line: the character's name (cleaned when posted) and an https avatar URL, if any."""

    name: str
    avatar_url: str | None = None


class SpokenLine:
    """One character's line on screen, in one or more messages; made by :meth:`CharacterVoice.start`.

    ``message_ids`` are the messages showing it, in order (store them to delete or regenerate the
    line); ``notice`` is the text saying why the line is posted by the bot itself, on the first such
    line of a channel (else None); ``webhook_used`` says whether it speaks through a webhook.
    """

    def __init__(
        self,
        voice: CharacterVoice,
        place: Place,
        parent: discord.abc.GuildChannel,
        speaker: Speaker,
        *,
        webhook: discord.Webhook | None,
        notice: str | None,
    ) -> None:
        self.voice = voice
        self.place = place
        self.parent = parent
        self.speaker = speaker
        self.webhook = webhook
        """The webhook the line speaks through (replaced if Discord deleted it), or None: the bot speaks."""
        self.notice = notice
        self.thread: discord.abc.Snowflake = (
            discord.Object(place.id) if isinstance(place, discord.Thread) else discord.utils.MISSING
        )
        self.channel_throttle: Throttler = voice.throttles(place.id)
        self._message_throttle = Throttler(rate_limit=1, period=voice.edit_period)
        self._ids: list[int] = []
        self._shown: list[str] = []
        self._text = ""
        self._dirty = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._finishing = False
        self.gone = False
        """A message of the line was deleted by someone: it is shown no more."""
        self.error: BotError | None = None

    @property
    def webhook_used(self) -> bool:
        """Whether the line is posted through the channel's webhook (else by the bot, name in bold)."""
        return self.webhook is not None

    @property
    def message_ids(self) -> list[int]:
        """The ids of the messages showing the line, in order."""
        return list(self._ids)

    @property
    def text(self) -> str:
        """The latest text given to the line."""
        return self._text

    def update(self, text: str) -> None:
        """Show ``text`` (the whole line so far) soon: edits are throttled and merged, and never block."""
        self._text = text
        if self._finishing or self.gone:
            return
        self._dirty.set()
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())

    async def finish(self, text: str | None = None) -> None:
        """The last edit: the whole text (``text``, or the last one given); raises the line's failure if any."""
        if text is not None:
            self._text = text
        self._finishing = True
        if self._pump_task is not None:
            self._dirty.set()
            await self._pump_task
        if self.error is not None:
            raise self.error
        if self.gone:
            return
        try:
            await self.sync(self._text, force=True)
        except discord.NotFound:
            self.gone = True
        except discord.HTTPException as error:
            raise refusal(error, "show this line") from error

    async def delete(self) -> None:
        """Delete every message of the line (for Regenerate); it shows nothing more."""
        self._finishing = True
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        for message_id in self._ids:
            with contextlib.suppress(discord.HTTPException):
                await self.voice.delete(self, message_id)
        self._ids.clear()
        self._shown.clear()
        self.gone = True

    def _display(self, text: str) -> str:
        text = text.strip()
        if self.webhook is not None:
            return text or EMPTY_LINE
        return f"**{discord.utils.escape_markdown(speaker_name(self.speaker.name))}:** {text or EMPTY_LINE}"

    async def _pump(self) -> None:
        """Edit whenever new text came, within the throttles, until the line finishes."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._finishing:
                return
            try:
                await self.sync(self._text)
            except discord.NotFound:
                _log.info("A character's line was deleted while it streamed; it stops showing")
                self.gone = True
                return
            except discord.HTTPException:
                _log.warning("An edit of a character's line failed; the next one will carry the text", exc_info=True)
            except BotError as error:
                self.error = error
                return

    async def sync(self, text: str, *, force: bool = False) -> None:
        """Make the messages show ``text``: edit what changed, post what is new, drop what is extra if ``force``."""
        if self.gone:
            return
        # Discord refuses a message that is empty once trimmed: a run of blank lines shows as a zero-width space.
        pieces = [piece if piece.strip() else "\u200b" for piece in split_message(self._display(text))]
        for index, piece in enumerate(pieces):
            if index < len(self._ids):
                if self._shown[index] == piece:
                    continue
                async with self._message_throttle, self.channel_throttle:
                    self._ids[index] = await self.voice.edit(self, self._ids[index], piece)
                self._shown[index] = piece
            else:
                async with self.channel_throttle:
                    self._ids.append(await self.voice.post(self, piece))
                self._shown.append(piece)
        if force and len(self._ids) > len(pieces):  # the line got shorter
            for extra in self._ids[len(pieces) :]:
                with contextlib.suppress(discord.HTTPException):
                    await self.voice.delete(self, extra)
            del self._ids[len(pieces) :]
            del self._shown[len(pieces) :]
