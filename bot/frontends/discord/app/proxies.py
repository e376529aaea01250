"""PluralKit and Tupperbox: a person's message deleted and reposted by a proxy bot's webhook is still that person's.

Proxy bots let a person speak as one of their characters or system members: the person posts ``k: Hello``,
the proxy bot deletes that message within a second or two and posts ``Hello`` through a webhook under the
member's name (``Kira``). For the bot the person's message already counted (it is stored and may be being
answered), so :class:`Proxies` keeps the recent person messages and:

- when one is deleted within :data:`WINDOW` seconds of being sent, :meth:`Proxies.wait_for_repost` holds the
  deletion for up to :data:`GRACE` seconds: the history keeps it if a repost comes, loses it if none does;
- a webhook message whose text is the recent message's text with the proxy tags taken off (contained in it), in
  the same channel, is that person's (:meth:`Proxies.reposted`): the caller links the stored message to the new
  Discord message, under the proxy's name, and nothing is answered twice.

A proxy bot posts in whichever order it likes (delete, then repost, or the other way round); both are handled.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

WINDOW = 10.0
"""Seconds after a person's message in which its deletion may be a proxy bot taking it over."""
GRACE = 3.0
"""Seconds a deletion of a recent message waits for the proxy bot's repost before the message leaves the history."""
KEPT = 256
"""Recent person messages remembered (across every channel)."""


@dataclass
class Sent:
    """A person's message the bot took, as a repost is matched against it."""

    message_id: int
    channel_id: int
    author_id: int
    content: str
    at: float
    adopted: asyncio.Event = field(default_factory=asyncio.Event)
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the caller once the message is in the history (a repost may arrive before that)."""
    repost_id: int | None = None


class Proxies:
    """The recent person messages a proxy bot may take over; one for the whole bot (see the module docstring)."""

    def __init__(
        self, *, window: float | None = None, grace: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = WINDOW if window is None else window
        self.grace = GRACE if grace is None else grace
        self.clock = clock
        self._recent: deque[Sent] = deque(maxlen=KEPT)

    def sent(self, message: discord.Message) -> Sent:
        """A person's message the bot takes (to store, maybe to answer); set its ``stored`` once it is stored."""
        sent = Sent(message.id, message.channel.id, message.author.id, message.content.strip(), self.clock())
        self._recent.append(sent)
        return sent

    def _find(self, message_id: int) -> Sent | None:
        now = self.clock()
        return next((s for s in self._recent if s.message_id == message_id and now - s.at <= self.window), None)

    def holds(self, message_id: int) -> bool:
        """Whether a deletion of this message may be a proxy bot's: recent, from a person the bot answered."""
        return self._find(message_id) is not None

    async def wait_for_repost(self, message_id: int) -> bool:
        """After the message's deletion: True once a proxy's repost took it over (at most :attr:`grace` seconds)."""
        sent = self._find(message_id)
        if sent is None:
            return False
        try:
            await asyncio.wait_for(sent.adopted.wait(), self.grace)
        except TimeoutError:
            return False
        return True

    def reposted(self, message: discord.Message) -> Sent | None:
        """The person's message that ``message`` (another bot's webhook post) reposts, or None; marks it taken over.

        A repost is in the same channel, within :attr:`window` seconds, and its text is the person's with the
        proxy tags off (``k: Hello`` -> ``Hello``, ``[Hello]`` -> ``Hello``); the latest such message wins.
        """
        text = message.content.strip()
        if message.webhook_id is None or not text:
            return None
        now = self.clock()
        for sent in reversed(self._recent):
            fresh = now - sent.at <= self.window and not sent.adopted.is_set()
            if fresh and sent.channel_id == message.channel.id and text in sent.content:
                sent.repost_id = message.id
                sent.adopted.set()
                return sent
        return None
