"""Replies on screen: each reply streamed into Discord, its buttons, and the replies in flight.

:class:`Replies` turns a :class:`~bot.core.chat.Reply` into Discord messages (through
:class:`~bot.frontends.discord.ui.rendering.ReplyRenderer`), makes the final edit only once
the chat service stored the reply, records which messages show it (so its buttons work
after a restart), takes the buttons off the reply before it, and answers button presses.
It knows the reply in flight of each conversation: Stop, a deleted message, a deleted
thread and a shutdown reach it through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import discord

from bot.core.chat import Author, ChatService, Reply
from bot.errors import BotError, BusyError, DeliveryError, GenerationError, PromptError, StoreError
from bot.frontends.discord.app.access import RateLimited
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
    TO_ANSWER_IN_A_THREAD,
    DiscordRefusal,
    refusal,
    report,
    require,
    require_open_thread,
)
from bot.frontends.discord.ui.rendering import ChannelThrottles, ReplyRenderer
from bot.frontends.discord.ui.views import Action, reply_view

_log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0
"""Seconds a shutdown waits for the replies in flight to be stored and shown."""
HANDLED_MEMORY = 4096
"""Message ids remembered as handled: enough for any redelivery (minutes apart at most), bounded in memory."""
REDO_REFUSED = "Only the person who asked, or a moderator, can regenerate or continue this reply."


@dataclass(slots=True)
class _Shown:
    """A reply on screen, until its final edit."""

    reply: Reply
    renderer: ReplyRenderer
    key: str
    earlier: list[int]
    finished: bool = False


class Replies:
    """The replies the bot shows, and the one in flight in each conversation."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self.throttles = ChannelThrottles()
        self.in_flight: dict[str, ReplyRenderer] = {}
        """The reply in flight of each conversation (one at most: the chat service serializes them)."""
        self.asked_by: dict[str, int] = {}
        """Who asked for the reply in flight of each conversation (``/forget-me`` stops theirs)."""
        self._pressed: set[str] = set()
        """Conversations with a Regenerate or Continue press being handled."""
        self._self_deleted: set[int] = set()
        """Messages the bot deleted itself (a regenerated reply that got shorter): not a person's deletion."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.claimed: set[int] = set()
        """Threads another feature answers in (scenes): the conversations cog leaves their messages alone."""
        self._handled: dict[int, None] = {}
        """The people's messages taken recently, oldest first (a dict keeps insertion order): see :meth:`first_time`."""

    async def stop_all(self, mark: str) -> None:
        """Stop every reply in flight (shutdown): each is stored and shown with ``mark``, then the rest ends."""
        for renderer in list(self.in_flight.values()):
            renderer.stop(mark)
        if self._tasks:
            _, waiting = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
            for task in waiting:  # still waiting for their turn: nothing was shown for them yet
                task.cancel()
            if waiting:
                await asyncio.wait(waiting, timeout=SHUTDOWN_GRACE)

    def first_time(self, message_id: int) -> bool:
        """Whether a person's message is seen for the first time; False for a second delivery of it.

        Discord may deliver a MESSAGE_CREATE twice (after a resume); the store refuses a message it already holds
        too (:meth:`ChatService.respond`), but this check costs no await, so the order of messages is kept.
        """
        if message_id in self._handled:
            _log.info("Message %d was delivered again; it is answered once", message_id)
            return False
        self._handled[message_id] = None
        if len(self._handled) > HANDLED_MEMORY:
            del self._handled[next(iter(self._handled))]
        return True

    def deleting(self, message_id: int) -> None:
        """The bot itself is deleting ``message_id`` (a regenerated scene turn's line): not a person's deletion."""
        self._self_deleted.add(message_id)

    def deleted(self, message_id: int) -> bool:
        """A message was deleted: stops the reply it showed, if one was streaming; True if the bot knew it."""
        if message_id in self._self_deleted:
            self._self_deleted.discard(message_id)
            return True
        streaming = next((r for r in self.in_flight.values() if message_id in r.message_ids), None)
        if streaming is not None:
            streaming.abandon()
        return streaming is not None

    def abandon(self, key: str) -> None:
        """The conversation's place is gone (a deleted thread): its reply stops at once."""
        renderer = self.in_flight.get(key)
        if renderer is not None:
            renderer.abandon()

    def stop_asked_by(self, user_id: int) -> int:
        """Stop every reply in flight that ``user_id`` asked for (they are deleting their data); returns how many."""
        keys = [key for key, asker in self.asked_by.items() if asker == user_id and key in self.in_flight]
        for key in keys:
            self.in_flight[key].stop()
        return len(keys)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, kept until done, failures logged."""

        async def run() -> None:
            try:
                await work
            except Exception:
                _log.exception("A background task failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(
        self,
        channel: Callable[[], discord.abc.Messageable],
        author: Author,
        content: str,
        key: str | Callable[[], Awaitable[str]],
        source: discord.Interaction[Any] | discord.Message,
        *,
        external_id: int | None = None,
    ) -> bool:
        """Store ``content`` and answer it; every failure ends as a short message, never a crash.

        Returns False if the message was refused before it was stored.
        """
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        guild_id = source.guild_id if isinstance(source, discord.Interaction) else getattr(source.guild, "id", None)
        interaction = source if isinstance(source, discord.Interaction) else None
        shown: list[_Shown] = []
        stored = True
        channel_id = source.channel_id if isinstance(source, discord.Interaction) else source.channel.id
        try:
            # The chat service reads the settings of the place asked in (for a new thread: the channel it opens
            # from) once the message has its place in the conversation's order.
            async with self.chat.respond(
                key, author, content, external_id=external_id, guild_id=guild_id, channel_id=channel_id
            ) as reply:
                if interaction is not None:
                    await _dismiss(interaction)
                if reply is not None:
                    target = channel()
                    conversation = key if isinstance(key, str) else f"thread:{getattr(target, 'id', 0)}"
                    await _delivered(self._show(reply, target, conversation, author.id, shown))
        except (BusyError, PromptError, DiscordRefusal) as error:
            stored = isinstance(error, BusyError) and isinstance(key, str)
            if not (isinstance(error, RateLimited) and error.repeated and interaction is None):
                # A message past the rate limit is told once per wait, as at the gate (Access.admit).
                await report(source, error, returned=None if stored or interaction is None else content)
        except GenerationError:
            _log.info("A reply failed in the model; the user sees why")
        except DeliveryError as error:
            _log.error("A reply in %s could not be shown and is stored as failed: %s", channel_id, error)
            await report(source, error)  # Discord may take this one: its failures often come and go
        except BotError as error:
            if not shown:  # else the reply could not be stored (a full disk): its own final edit said so
                # A new conversation that could not be stored (a busy database): the caller removes what it opened,
                # so a slash command's prompt comes back as a file.
                stored = isinstance(key, str)
                await report(source, error, returned=None if stored or interaction is None else content)
        finally:
            for item in shown:
                await self._finish(item)  # already done in the conversation's turn, unless that never came
            self._tasks.discard(task)
        return stored

    async def show_once(
        self,
        interaction: discord.Interaction[Any],
        reply: Reply,
        *,
        transform: Callable[[str, bool], str] | None = None,
        view: Callable[[bool], discord.ui.View | None] | None = None,
    ) -> ReplyRenderer:
        """Stream a reply that belongs to no conversation (a joke, an answer from sources) into the
        interaction's deferred public response; long replies continue in the channel.

        ``transform(text, finished)`` shapes what is shown; ``view(streaming)`` gives the buttons
        (default: none). Returns the renderer once the final edit is made; a model failure is shown
        in the reply and raised (one with no text shown yet is told to the asker alone, and the public answer
        goes). A final edit Discord refuses is logged as an error, the renderer is marked
        :attr:`~ReplyRenderer.cut`, and the asker is told privately (nothing is stored for a one-off reply).
        """
        original = await interaction.original_response()
        channel = interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        renderer = ReplyRenderer(
            channel,
            self.throttles(getattr(channel, "id", 0)),
            view or (lambda streaming: None),
            reuse=[original],
            on_delete=self._self_deleted.add,
            transform=transform,
        )
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await renderer.start(reply)
            await renderer.stream(reply)
        except GenerationError as error:
            if not reply.text.strip():
                # Nothing of the answer was shown: the failure is the asker's to read, not the channel's. report()
                # deletes the public answer, so the renderer has nothing left to show.
                renderer.gone = True
                await report(interaction, error)
            raise
        finally:
            try:
                await renderer.finish()
            except discord.HTTPException as error:
                # discord.py already retried what is worth retrying: the answer on screen stops short of its end.
                _log.error(
                    "The end of a one-off reply in %s could not be shown: %s", getattr(channel, "id", "?"), error
                )
                renderer.cut = True
                await _say_cut(interaction, error)
            if task is not None:
                self._tasks.discard(task)
        return renderer

    async def _show(
        self, reply: Reply, channel: discord.abc.Messageable, key: str, owner: int, shown: list[_Shown]
    ) -> None:
        """Stream ``reply`` into ``channel``; :meth:`_finish` makes its final edit once the reply is stored.

        A new reply posts new messages and retires the previous reply's buttons; Regenerate
        rewrites the messages of the reply it replaces; Continue adds messages after them.
        """
        continuing = bool(reply.prefix)
        earlier = list(reply.shown_in) if continuing else []
        reuse = [] if continuing else [p for p in (_partial(channel, i) for i in reply.shown_in) if p is not None]
        renderer = ReplyRenderer(
            channel,
            self.throttles(getattr(channel, "id", 0)),
            lambda streaming: reply_view(owner, streaming=streaming),
            reuse=reuse,
            skip=len(reply.prefix),
            on_delete=self._self_deleted.add,
        )
        self.in_flight[key] = renderer
        self.asked_by[key] = owner
        item = _Shown(reply, renderer, key, earlier)
        shown.append(item)
        # The last edit is made in the conversation's turn, so the next reply never appears before this one's end.
        reply.when_stored(lambda error: self._finish(item, error))
        if continuing:
            await self._retire_buttons(channel, earlier)
        elif not reuse:
            await self._retire_buttons(channel, await self.chat.earlier_reply(reply))
        await renderer.start(reply)
        reply.shown_in = earlier + renderer.message_ids
        try:
            await renderer.stream(reply)
        finally:
            reply.shown_in = earlier + renderer.message_ids

    async def _finish(self, shown: _Shown, error: BaseException | None = None) -> None:
        """Once the reply is stored: its final edit, then where it is shown now (or its removal if deleted).

        ``error`` ended the reply's use; one from the store (the reply could not be stored) is shown on the reply.
        """
        if shown.finished:
            return
        shown.finished = True
        reply, renderer = shown.reply, shown.renderer
        if isinstance(error, StoreError) and renderer.error is None:  # stored nothing (a full disk): it says so
            renderer.error = error
        shown_whole = True
        try:
            await renderer.finish()
        except discord.HTTPException as refused:
            # discord.py already retried what is worth retrying (429s, 500/502/504): Discord shows an older edit.
            _log.error("The end of a reply in %s could not be shown; it is stored as partial: %s", shown.key, refused)
            shown_whole = False
        finally:
            if self.in_flight.get(shown.key) is renderer:
                del self.in_flight[shown.key]
                self.asked_by.pop(shown.key, None)
        try:
            if renderer.gone:
                await self.chat.discard(reply)
            else:
                if not shown_whole:
                    await self.chat.shown_in_part(reply)
                await self.chat.show_in(reply, shown.earlier + renderer.message_ids)
        except BotError:
            _log.warning("Could not record where a reply is shown", exc_info=True)

    async def _retire_buttons(self, channel: discord.abc.Messageable, message_ids: list[int]) -> None:
        """Take the buttons off an earlier reply: only the latest reply can be regenerated or continued."""
        if not message_ids or not isinstance(channel, discord.abc.Messageable):
            return
        partial = _partial(channel, message_ids[-1])
        if partial is None:
            return
        async with self.throttles(getattr(channel, "id", 0)):
            with contextlib.suppress(discord.HTTPException):
                await partial.edit(view=None)

    async def press(self, interaction: discord.Interaction[Any], key: str | None, action: Action, owner: int) -> None:
        """Stop, Regenerate or Continue the reply whose button was pressed in conversation ``key``."""
        message = interaction.message
        assert message is not None
        if action == "stop":
            await self._stop(interaction, message, key, owner)
            return
        if not _may_redo(interaction, owner):
            await report(interaction, DiscordRefusal(REDO_REFUSED))
            return
        if key is None:
            await report(interaction, DiscordRefusal("This conversation is no longer available."))
            return
        if key in self._pressed or self.chat.replying(key):
            await report(interaction, DiscordRefusal("Wait for the current reply to finish (or press Stop)."))
            return
        self._pressed.add(key)
        try:
            if not interaction.response.is_done():
                await interaction.response.defer()
            await self._redo(interaction, message, key, action, owner)
        finally:
            self._pressed.discard(key)

    async def _stop(
        self, interaction: discord.Interaction[Any], message: discord.Message, key: str | None, owner: int
    ) -> None:
        renderer = self.in_flight.get(key) if key is not None else None
        if renderer is None or message.id not in renderer.message_ids:
            await report(interaction, DiscordRefusal("That reply has already finished."))
            return
        if interaction.user.id != owner and not interaction.permissions.manage_messages:
            await report(interaction, DiscordRefusal("Only the person who asked, or a moderator, can stop this reply."))
            return
        await interaction.response.defer()
        renderer.stop()

    async def _redo(
        self, interaction: discord.Interaction[Any], message: discord.Message, key: str, action: Action, owner: int
    ) -> None:
        channel = message.channel
        author = Author(interaction.user.id, interaction.user.display_name)
        try:
            if isinstance(channel, discord.Thread):
                require(interaction.app_permissions, TO_ANSWER_IN_A_THREAD)
                require_open_thread(channel, interaction.app_permissions)
                if channel.archived:
                    await channel.edit(archived=False)  # a message in an archived thread cannot be edited
            target = await self.chat.find(message.id)
            if target is None:
                raise DiscordRefusal("This reply is no longer part of the conversation.")
            mode: Literal["regenerate", "continue"] = "regenerate" if action == "regenerate" else "continue"
            shown: list[_Shown] = []
            try:
                options = await self.chat.options_for(interaction.guild_id, channel.id)
                async with self.chat.redo(key, author, target, mode, options) as reply:
                    reply.shown_in = reply.shown_in or [message.id]  # a reply stored before message links existed
                    await _delivered(self._show(reply, channel, key, owner, shown))
            finally:
                for item in shown:
                    await self._finish(item)
        except discord.HTTPException as error:
            await report(interaction, refusal(error, "write in this thread"))
        except GenerationError:
            _log.info("A reply failed in the model; the user sees why")
        except DeliveryError as error:
            _log.error("A reply in %s could not be shown and is stored as failed: %s", channel.id, error)
            await report(interaction, error)
        except BotError as error:
            await report(interaction, error)


async def _delivered(showing: Awaitable[None]) -> None:
    """Await ``showing`` (a reply being shown); Discord refusing to show it at all becomes a :class:`DeliveryError`.

    The chat service then stores the reply as failed, so it never enters the history the model sees.
    """
    try:
        await showing
    except discord.HTTPException as error:
        raise DeliveryError(f"{refusal(error, 'show my reply')} Please send your message again.") from error


async def _say_cut(interaction: discord.Interaction[Any], error: discord.HTTPException) -> None:
    """Tell the asker privately that the answer on screen is cut short, if Discord takes any message now.

    A followup, not :func:`report`: the interaction's original response is the answer itself, not a "thinking…".
    """
    cut = DeliveryError(f"{refusal(error, 'show the end of my answer')} What you see is cut short; please ask again.")
    try:
        await interaction.followup.send(f"⚠️ {cut}", ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        _log.warning("Could not tell the user that a reply was cut short", exc_info=True)


def _may_redo(interaction: discord.Interaction[Any], owner: int) -> bool:
    """Regenerate and Continue: the person who asked, anyone in a DM (nobody else is there), or Manage Messages."""
    return interaction.user.id == owner or interaction.guild_id is None or interaction.permissions.manage_messages


def _partial(channel: object, message_id: int) -> discord.PartialMessage | None:
    getter = getattr(channel, "get_partial_message", None)
    return getter(message_id) if getter is not None else None


async def _dismiss(interaction: discord.Interaction[Any]) -> None:
    """Remove the ephemeral "thinking…" answer of an accepted command: the echo and the reply say it all."""
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
