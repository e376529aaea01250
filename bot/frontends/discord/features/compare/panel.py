"""A comparison on screen: every variant's answer streams into one message (an embed each), edited at most 1/s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord
from asyncio_throttle import Throttler

from bot.core.chat import Reply
from bot.errors import BotError, GenerationError
from bot.frontends.discord.features.compare.votes import shown_title, vote_view
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
)
from bot.frontends.discord.ui.rendering import STOPPED_MARK, queued_text
from bot.store import Comparison

_log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 4096
"""Discord's limit on one embed's description."""
EMBEDS_LIMIT = 6000
"""Discord's limit on all the text of a message's embeds together."""
RESERVED_PER_EMBED = 200
"""Characters kept for each embed's title and footer when sharing :data:`EMBEDS_LIMIT` among descriptions."""
WRITING = "writing…"
"""The end of the footer of an answer still being written."""
_COLOURS = (discord.Colour.blurple(), discord.Colour.green(), discord.Colour.orange(), discord.Colour.purple())


def cut(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` within ``limit`` characters: cut at the end with "…" when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def description_limit(count: int) -> int:
    """How long each of ``count`` embeds' descriptions may be so that the message stays within Discord's limits."""
    return min(DESCRIPTION_LIMIT, (EMBEDS_LIMIT - count * RESERVED_PER_EMBED) // count)


def footer_text(tokens: int, elapsed: float, first_token: float | None) -> str:
    """``42 tokens · 12.3 tokens/s · first token 0.41 s``: what one answer cost."""
    parts = [f"{tokens} token{'' if tokens == 1 else 's'}"]
    if tokens and elapsed > 0:
        parts.append(f"{tokens / elapsed:.1f} tokens/s")
    parts.append("first token …" if first_token is None else f"first token {first_token:.2f} s")
    return " · ".join(parts)


@dataclass(slots=True)
class Panel:
    """One variant's answer as it streams."""

    reply: Reply
    started: float = 0.0
    first_at: float | None = None
    ended_at: float | None = None
    error: BotError | None = None

    def footer(self) -> str:
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        first = None if self.first_at is None else self.first_at - self.started
        return footer_text(self.reply.completion_tokens, end - self.started if self.started else 0.0, first)


class ComparisonRun:
    """One comparison on screen: its answers stream concurrently into one message, edited at most once a second."""

    def __init__(
        self, comparison: Comparison, replies: Sequence[Reply], message_throttle: Throttler, channel_throttle: Throttler
    ) -> None:
        self.comparison = comparison
        self.panels = [Panel(reply) for reply in replies]
        self.message: discord.Message | None = None
        self.stopped: str | None = None
        self.gone = False
        self._message_throttle = message_throttle
        self._channel_throttle = channel_throttle
        self._dirty = asyncio.Event()
        self._consumers: list[asyncio.Task[None]] = []
        self._closing = False
        self._shown: list[Any] | None = None

    def embeds(self, *, streaming: bool) -> list[discord.Embed]:
        limit = description_limit(len(self.panels))
        embeds = []
        for position, panel in enumerate(self.panels):
            embed = discord.Embed(
                title=shown_title(self.comparison, position, revealed=False),
                description=cut(self._description(panel, streaming=streaming), limit),
                colour=_COLOURS[position % len(_COLOURS)],
            )
            footer = panel.footer()
            embed.set_footer(text=f"{footer} · {WRITING}" if streaming and panel.ended_at is None else footer)
            embeds.append(embed)
        return embeds

    def _description(self, panel: Panel, *, streaming: bool) -> str:
        text = panel.reply.text.strip()
        if streaming:
            return text or queued_text(panel.reply.position)
        if panel.error is not None:
            return f"{text}\n\n⚠️ {panel.error}" if text else f"⚠️ {panel.error}"
        if self.stopped is not None and panel.reply.finish_reason is None:
            return f"{text} {self.stopped}" if text else self.stopped
        return text or "*(no answer)*"

    @property
    def votable(self) -> bool:
        """Votes are offered on two answers that both ended on their own."""
        return len(self.panels) == 2 and self.stopped is None and all(p.error is None for p in self.panels)

    def stop(self, mark: str = STOPPED_MARK) -> None:
        """Stop every answer; the text so far stays, marked."""
        self.stopped = mark
        for consumer in self._consumers:
            consumer.cancel()

    async def stream(self, message: discord.Message) -> None:
        """Stream every answer into ``message`` until all have ended (or :meth:`stop`), then the final edit."""
        self.message = message
        self._consumers = [asyncio.create_task(self._consume(panel)) for panel in self.panels]
        pump = asyncio.create_task(self._pump())
        try:
            await asyncio.gather(*self._consumers, return_exceptions=True)
        finally:
            for consumer in self._consumers:
                consumer.cancel()
            self._closing = True
            self._dirty.set()
            await pump
        if self.gone:
            return
        view = vote_view(self.comparison) if self.votable else None
        try:
            await self._edit(self.embeds(streaming=False), view=view, force=True)
        except discord.HTTPException:
            _log.warning("Could not show the end of a comparison", exc_info=True)

    async def _consume(self, panel: Panel) -> None:
        panel.started = time.monotonic()
        try:
            async for _ in panel.reply.deltas():
                if panel.first_at is None:
                    panel.first_at = time.monotonic()
                self._dirty.set()
        except GenerationError as error:
            panel.error = error
        except Exception:
            _log.exception("An answer of a comparison failed")
            panel.error = GenerationError("Something went wrong on my side with this answer.")
        finally:
            panel.ended_at = time.monotonic()
            self._dirty.set()

    async def _pump(self) -> None:
        """Edit the message whenever an answer moved, within the throttles."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing or all(panel.ended_at is not None for panel in self.panels):
                return  # the final edit follows: no footer without "writing…" before it
            try:
                await self._edit(self.embeds(streaming=True))
            except discord.NotFound:
                _log.info("A comparison's message is gone; stopping it")
                self.gone = True
                self.stop()
                return
            except discord.HTTPException:
                _log.warning("An edit of a comparison failed; the next one will carry the text", exc_info=True)

    async def _edit(
        self, embeds: list[discord.Embed], *, view: discord.ui.View | None = None, force: bool = False
    ) -> None:
        shown: list[Any] = [embed.to_dict() for embed in embeds]
        if shown == self._shown and not force:
            return
        assert self.message is not None
        async with self._message_throttle, self._channel_throttle:
            await self.message.edit(embeds=embeds, view=view, allowed_mentions=NO_MENTIONS)
        self._shown = shown
