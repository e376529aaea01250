"""Showing one streamed reply in Discord.

A placeholder appears at once with the queue position, then is edited as text arrives.
Edits are throttled with asyncio-throttle: at most one per second per reply and at most
five per five seconds per channel (Discord's edit budget). The last edit always carries
the whole text. The placeholder and the last edit are what a person waits for: under the
bot's global pace they go ahead of streaming edits (:func:`urgent_requests`). Past 2000
characters the reply continues in new messages, split without breaking code fences; the
buttons sit on the last message. Nothing the model writes can mention anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import discord
from asyncio_throttle import Throttler

from bot.core.chat import Reply
from bot.core.sanitize import is_blank
from bot.errors import BotError
from bot.frontends.discord.app.ratelimit import urgent_requests
from bot.frontends.discord.ui.splitting import split_message

_log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
THINKING = "*thinking…*"
STOPPED_MARK = "*(stopped)*"
RESTART_MARK = "*(stopped: the bot restarted)*"
QUEUE_EDIT_PERIOD = 3.0
"""Seconds between two edits of one placeholder's queue position: a queue that moves fast is shown coarsely."""


THREAD_NAME_LIMIT = 100
"""Discord's longest thread name."""


def thread_name(prompt: str) -> str:
    """A thread name from the prompt's first line: 1 to 100 characters, "Conversation" if it shows nothing."""
    lines = (" ".join(line.split()) for line in prompt.splitlines())
    first = next((line for line in lines if not is_blank(line)), "")
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first or "Conversation"


def queued_text(position: int) -> str:
    """The placeholder while a request waits for the model."""
    return f"⏳ queued #{position}" if position > 0 else THINKING


class ChannelThrottles:
    """One edit budget per channel, shared by every reply streaming in it, and the pace of edits on one message.

    ``rate`` edits per ``period`` seconds in a channel (Discord's budget); one edit per ``message_period`` on a
    message; a queue position shown at most once per ``queue_period``. The bot is given one (tests give shorter
    periods, so that pacing costs them little time).
    """

    def __init__(
        self,
        rate: int = 5,
        period: float = 5.0,
        *,
        message_period: float = 1.0,
        queue_period: float = QUEUE_EDIT_PERIOD,
    ) -> None:
        self.rate = rate
        self.period = period
        self.message_period = message_period
        self.queue_period = queue_period
        self._throttlers: dict[int, Throttler] = {}

    def __call__(self, channel_id: int) -> Throttler:
        if channel_id not in self._throttlers:
            self._throttlers[channel_id] = Throttler(rate_limit=self.rate, period=self.period)
        return self._throttlers[channel_id]


ViewFactory = Callable[[bool], discord.ui.View | None]
"""Builds the buttons for a reply: ``True`` while it streams, ``False`` once it ended (``None``: no buttons)."""


class ReplyRenderer:
    """Streams one :class:`Reply` into a channel (or into messages it is given to reuse)."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        channel_throttle: Throttler,
        views: ViewFactory,
        *,
        reuse: Sequence[discord.Message | discord.PartialMessage] | None = None,
        skip: int = 0,
        edit_period: float = 1.0,
        queue_period: float | None = None,
        on_delete: Callable[[int], None] | None = None,
        transform: Callable[[str, bool], str] | None = None,
    ) -> None:
        self.channel = channel
        self.messages: list[discord.Message | discord.PartialMessage] = list(reuse or [])
        self._shown: list[str | None] = [None] * len(self.messages)
        self._channel_throttle = channel_throttle
        self._reply_throttle = Throttler(rate_limit=1, period=edit_period)
        self._views = views
        self._skip = skip  # characters of reply.text that belong to an earlier message (Continue)
        self._dirty = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._queue_period = QUEUE_EDIT_PERIOD if queue_period is None else queue_period
        self._queue_shown_at = 0.0
        self._on_delete = on_delete
        self._transform = transform
        """Turns the reply's text into what is shown (a code block, a spoiler); gets ``True`` once it ended."""
        self.stopped: str | None = None
        """The mark shown after the text when the reply was stopped (Stop button, shutdown), else None."""
        self.gone = False
        """The reply's message was deleted (or its channel): nothing is shown any more."""
        self.error: BotError | None = None
        self.cut = False
        """Discord refused the last edit: what it shows stops short of the reply's end."""
        self._streaming = True
        self._closing = False
        self._reply: Reply | None = None

    @property
    def message_ids(self) -> list[int]:
        """The ids of the messages that show the reply, in order."""
        return [message.id for message in self.messages]

    async def start(self, reply: Reply) -> None:
        """Post (or reuse) the placeholder showing the queue position."""
        with urgent_requests():
            await self._sync(queued_text(reply.position), force=True)
        self._queue_shown_at = time.monotonic()

    def stop(self, mark: str = STOPPED_MARK) -> None:
        """Stop the generation; the text so far stays and is marked with ``mark``."""
        self.stopped = mark
        if self._consumer is not None:
            self._consumer.cancel()

    def abandon(self) -> None:
        """The reply's message or channel was deleted: stop generating at once and show nothing more."""
        self.gone = True
        self.stop()

    async def stream(self, reply: Reply) -> None:
        """Follow the queue and stream the text until the reply ends (or :meth:`stop`).

        The last edit is :meth:`finish`'s, called once the reply is stored, so the buttons
        for a finished reply never show before it can be regenerated. A model failure is
        raised here, as the reply's :class:`~bot.errors.GenerationError`.
        """
        self._reply = reply
        self._consumer = asyncio.create_task(self._consume(reply))
        watcher = asyncio.create_task(self._watch_queue(reply))
        pump = asyncio.create_task(self._pump(reply))
        try:
            await self._consumer
        except asyncio.CancelledError:
            if self.stopped is None:
                raise
        except BotError as error:
            self.error = error
            raise
        finally:
            watcher.cancel()
            self._closing = True
            self._dirty.set()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await pump

    async def finish(self) -> None:
        """The last edit: the whole text (marked if stopped or failed) and the buttons of a finished reply."""
        self._streaming = False
        if self._reply is not None and not self.gone:
            with urgent_requests():
                await self._sync(self._display(self._reply), force=True)

    async def _consume(self, reply: Reply) -> None:
        async for _ in reply.deltas():
            self._dirty.set()

    async def _watch_queue(self, reply: Reply) -> None:
        """Show queue moves, at most one edit per ``queue_period``; the start of generation at once."""
        while not reply.ticket.started:
            await reply.ticket.wait_changed()
            deadline = self._queue_shown_at + self._queue_period
            while not reply.ticket.started and (remaining := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reply.ticket.wait_changed(), remaining)
            if not reply.ticket.started:
                self._queue_shown_at = time.monotonic()
            self._dirty.set()

    def _display(self, reply: Reply) -> str:
        text = reply.text[self._skip :].strip()
        if self._transform is not None and text:
            text = self._transform(text, not self._streaming)
        if self._streaming:
            return text or queued_text(reply.position)
        if self.error is not None:
            return f"{text}\n\n⚠️ {self.error}" if text else f"⚠️ {self.error}"
        if self.stopped is not None:
            return f"{text} {self.stopped}" if text else self.stopped
        return text or "*(no answer)*"

    async def _pump(self, reply: Reply) -> None:
        """Edit the messages whenever new text came, within the throttles, until streaming ends."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing:
                return
            try:
                await self._sync(self._display(reply))
            except discord.NotFound:
                _log.info("A streaming reply's message is gone; stopping it")
                self.abandon()
                return
            except discord.HTTPException:
                _log.warning("An edit of a streaming reply failed; the next one will carry the text", exc_info=True)

    async def _sync(self, text: str, *, force: bool = False) -> None:
        """Make the messages show ``text``: edit what changed, send what is new."""
        if self.gone:
            return
        # Discord refuses a message that is empty once trimmed: a run of blank lines shows as a zero-width space.
        pieces = [piece if piece.strip() else "\u200b" for piece in split_message(text)]
        streaming = self._streaming
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if index < len(self.messages):
                key = f"{piece}\0{streaming if last else 'plain'}"
                if self._shown[index] == key:
                    continue
                async with self._reply_throttle, self._channel_throttle:
                    view = self._views(streaming) if last else None
                    await self.messages[index].edit(content=piece, view=view, allowed_mentions=NO_MENTIONS)
                self._shown[index] = key
            else:
                if self.messages and self._shown[-1] is not None and not self._shown[-1].endswith("plain"):
                    previous = pieces[len(self.messages) - 1]
                    async with self._reply_throttle, self._channel_throttle:
                        await self.messages[-1].edit(content=previous, view=None, allowed_mentions=NO_MENTIONS)
                    self._shown[-1] = f"{previous}\0plain"
                view = self._views(streaming) if last else None
                async with self._channel_throttle:
                    if view is not None:
                        message = await self.channel.send(piece, allowed_mentions=NO_MENTIONS, view=view)
                    else:
                        message = await self.channel.send(piece, allowed_mentions=NO_MENTIONS)
                self.messages.append(message)
                self._shown.append(f"{piece}\0{streaming if last else 'plain'}")
        if force and len(self.messages) > len(pieces):  # a regenerated reply that got shorter
            for extra in self.messages[len(pieces) :]:
                if self._on_delete is not None:
                    self._on_delete(extra.id)
                with contextlib.suppress(discord.HTTPException):
                    await extra.delete()
            del self.messages[len(pieces) :]
            del self._shown[len(pieces) :]
