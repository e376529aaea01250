"""Characters speaking in a thread through the channel's webhook: each line under the character's name and avatar.

Use it like this (one :class:`CharacterVoice` for the whole bot, or one per cog: it caches webhooks)::

    voice = CharacterVoice(bot.replies.throttles)
    line = await voice.start(thread, Speaker("Yoda", "https://example.org/yoda.png"))
    async for text in ...:              # the whole text so far, each time
        line.update(text)               # throttled edits, never blocks
    await line.finish(final_text)       # the last edit; raises a BotError if the line could not be shown
    store(line.message_ids)             # to delete them later (Regenerate): ``await line.delete()``

How a line is posted
--------------------
One webhook per parent channel, named :data:`WEBHOOK_NAME`, owned by the bot: found with
``channel.webhooks()`` the first time it is needed (so a restart reuses it), created only when
there is none, and cached in memory. Every character speaks through it: each message carries the
character's name and avatar as ``username``/``avatar_url`` overrides, and lands in the thread
through ``thread=``. Discord allows 15 webhooks per channel, so the bot never makes more than one
per channel, however many characters a scene has.

Avatars: why per-message ``avatar_url`` rather than one webhook per character
    A webhook per character (``create_webhook(avatar=bytes)``) would spend up to 15 webhooks per
    channel, shared with every other bot and integration of the server, and would fail for the
    16th character. So avatars are per-message URLs (https only; anything else falls back to the
    webhook's default avatar). For a character whose image was uploaded, the caller gives the
    URL of that image as an attachment of a message the bot controls (for example the character's
    card). Attachment URLs are signed and expire (``ex=`` in the query, about a day): the caller
    must hand over a fresh one when it posts a line (re-fetching the message gives freshly signed
    URLs); Discord only needs the URL to be valid when the line is posted.

Failures
    A webhook deleted by a moderator (404 Unknown Webhook on a post or an edit) is looked up or
    created again once and the post retried; an edit of a message of the deleted webhook becomes
    a new post (the old message can no longer be edited). A second failure raises
    :class:`VoiceError`. Without **Manage Webhooks** on the parent channel (or when Discord answers
    403, or the channel already has 15 webhooks), lines are posted by the bot itself as
    ``**Name:** text``, still streamed and editable; the first such line in a channel carries a
    :attr:`SpokenLine.notice` saying why, which is also posted in the thread once unless
    ``announce=False``.

Streaming: :meth:`SpokenLine.update` edits at most once per ``edit_period`` per message and within
the channel's shared edit budget (:class:`~bot.frontends.discord.ui.rendering.ChannelThrottles`); past
2000 characters the line continues in new messages, split without breaking code fences. Nothing a
character says can mention anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import discord

from bot.frontends.discord.ui.feedback import DiscordRefusal, refusal
from bot.frontends.discord.ui.rendering import ChannelThrottles
from bot.frontends.discord.ui.spoken import Speaker, SpokenLine, speaker_avatar, speaker_name

_log = logging.getLogger(__name__)

WEBHOOK_NAME = "Airoboros Scenes"
"""The name of the one webhook the bot keeps in each channel where characters speak."""
NO_MENTIONS = discord.AllowedMentions.none()
UNKNOWN_WEBHOOK = 10015
UNKNOWN_MESSAGE = 10008
MAX_WEBHOOKS = 30007
"""Discord's error code for a channel that already has its 15 webhooks."""

NO_WEBHOOK_PERMISSION = (
    "I can't give the characters their own names and avatars here: I'm missing the **Manage Webhooks** "
    "permission in this channel. I'll post their lines myself, with their names in bold."
)
TOO_MANY_WEBHOOKS = (
    "I can't give the characters their own names and avatars here: this channel already has Discord's "
    "maximum of 15 webhooks. I'll post their lines myself, with their names in bold."
)


class VoiceError(DiscordRefusal):
    """A character's line could not be posted or edited (the webhook is gone for good, Discord refused)."""


class _NoWebhook(Exception):
    """The bot cannot use a webhook in this channel; ``notice`` says why."""

    def __init__(self, notice: str) -> None:
        super().__init__(notice)
        self.notice = notice


Place = discord.Thread | discord.TextChannel
"""Where a line is posted: a thread (the usual case) or a text channel."""


class CharacterVoice:
    """Posts characters' lines through one webhook per channel (see the module's docstring).

    ``throttles`` is the bot's shared edit budget (``bot.replies.throttles``); ``edit_period``
    is the shortest time between two edits of one message; ``announce`` posts the notice of a
    channel without webhooks in the thread the first time it happens.
    """

    def __init__(self, throttles: ChannelThrottles, *, edit_period: float = 1.0, announce: bool = True) -> None:
        self.throttles = throttles
        self.edit_period = edit_period
        self.announce = announce
        self._webhooks: dict[int, discord.Webhook] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._noticed: set[int] = set()
        """Channels whose missing webhooks were already told about."""

    def owns(self, webhook_id: int) -> bool:
        """Whether ``webhook_id`` is one of the webhooks characters speak through (not another bot's)."""
        return any(webhook.id == webhook_id for webhook in self._webhooks.values())

    async def start(self, place: Place, speaker: Speaker, text: str = "") -> SpokenLine:
        """Post the first text of ``speaker``'s line in ``place``; the line is then streamed with ``update``."""
        parent = await _parent(place)
        notice: str | None = None
        webhook: discord.Webhook | None = None
        try:
            webhook = await self._webhook(parent)
        except _NoWebhook as missing:
            if parent.id not in self._noticed:
                self._noticed.add(parent.id)
                notice = missing.notice
        except discord.HTTPException as error:
            raise refusal(error, "set up the webhook characters speak through") from error
        line = SpokenLine(self, place, parent, speaker, webhook=webhook, notice=notice)
        if notice is not None and self.announce:
            try:
                async with line.channel_throttle:
                    await place.send(notice, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as error:
                raise refusal(error, "write in this thread") from error
        try:
            await line.sync(text, force=True)
        except discord.HTTPException as error:
            raise refusal(error, "write in this thread") from error
        return line

    async def say(self, place: Place, speaker: Speaker, text: str) -> SpokenLine:
        """Post a whole line at once (no streaming)."""
        line = await self.start(place, speaker, text)
        await line.finish(text)
        return line

    async def remove(self, place: Place, message_ids: Sequence[int]) -> None:
        """Delete messages of lines posted before (a regenerated turn's); one already gone or refused is skipped."""
        parent = await _parent(place)
        webhook: discord.Webhook | None = None
        with contextlib.suppress(_NoWebhook, discord.HTTPException):
            webhook = await self._webhook(parent)
        line = SpokenLine(self, place, parent, Speaker(""), webhook=webhook, notice=None)
        for message_id in message_ids:
            with contextlib.suppress(discord.HTTPException):
                async with line.channel_throttle:
                    await self.delete(line, message_id)

    # -- the webhook of each channel ---------------------------------------------------------

    async def _webhook(self, parent: discord.abc.GuildChannel) -> discord.Webhook:
        """The channel's webhook: cached, else the bot's existing one, else a new one; :class:`_NoWebhook` if none."""
        me = parent.guild.me
        if me is not None and not parent.permissions_for(me).manage_webhooks:
            raise _NoWebhook(NO_WEBHOOK_PERMISSION)
        lock = self._locks.setdefault(parent.id, asyncio.Lock())
        async with lock:  # two lines starting together must not create two webhooks
            cached = self._webhooks.get(parent.id)
            if cached is not None:
                return cached
            assert isinstance(parent, discord.TextChannel | discord.ForumChannel)
            try:
                webhook = await self._find(parent) or await parent.create_webhook(
                    name=WEBHOOK_NAME, reason="Characters speak in scenes"
                )
            except discord.Forbidden as error:
                raise _NoWebhook(NO_WEBHOOK_PERMISSION) from error
            except discord.HTTPException as error:
                if error.code == MAX_WEBHOOKS:
                    raise _NoWebhook(TOO_MANY_WEBHOOKS) from error
                raise
            self._webhooks[parent.id] = webhook
            return webhook

    async def _find(self, parent: discord.TextChannel | discord.ForumChannel) -> discord.Webhook | None:
        """The bot's own webhook in the channel (made before a restart), preferring the one named for scenes."""
        me = parent.guild.me
        ours = [
            hook
            for hook in await parent.webhooks()
            if hook.token and hook.user is not None and me is not None and hook.user.id == me.id
        ]
        ours.sort(key=lambda hook: hook.name != WEBHOOK_NAME)
        return ours[0] if ours else None

    def _forget(self, parent_id: int, webhook: discord.Webhook) -> None:
        """Drop a webhook Discord no longer knows, so the next use finds or creates another."""
        if self._webhooks.get(parent_id) is webhook:
            del self._webhooks[parent_id]

    async def _retry_webhook(self, line: SpokenLine, failed: discord.Webhook, error: discord.HTTPException) -> None:
        """After a 404 Unknown Webhook: get a new webhook for the line, or raise :class:`VoiceError`."""
        _log.info("The scenes webhook of channel %d is gone (%s); making another", line.parent.id, error.text)
        self._forget(line.parent.id, failed)
        try:
            line.webhook = await self._webhook(line.parent)
        except (_NoWebhook, discord.HTTPException) as again:
            raise VoiceError(
                f"The webhook I use for characters in this channel was deleted and I could not make another ({again})."
            ) from again

    # -- posting, editing, deleting one message of a line ----------------------------------------

    async def post(self, line: SpokenLine, content: str) -> int:
        """Post one message of ``line``; returns its id."""
        if line.webhook is None:
            message = await line.place.send(content, allowed_mentions=NO_MENTIONS)
            return message.id
        for attempt in (1, 2):
            webhook = line.webhook
            try:
                sent = await webhook.send(
                    content,
                    username=speaker_name(line.speaker.name),
                    avatar_url=speaker_avatar(line.speaker.avatar_url),
                    thread=line.thread,
                    allowed_mentions=NO_MENTIONS,
                    wait=True,
                )
                return sent.id
            except discord.NotFound as error:
                if error.code != UNKNOWN_WEBHOOK:
                    raise
                if attempt == 2:
                    raise VoiceError("Discord keeps refusing the webhook I use for characters here.") from error
                await self._retry_webhook(line, webhook, error)
        raise AssertionError("unreachable")

    async def edit(self, line: SpokenLine, message_id: int, content: str) -> int:
        """Edit one message of ``line``; returns its id (a new one if it had to be posted again)."""
        if line.webhook is None:
            await line.place.get_partial_message(message_id).edit(content=content, allowed_mentions=NO_MENTIONS)
            return message_id
        webhook = line.webhook
        try:
            await webhook.edit_message(message_id, content=content, thread=line.thread, allowed_mentions=NO_MENTIONS)
            return message_id
        except discord.NotFound as error:
            if error.code != UNKNOWN_WEBHOOK:
                raise
            await self._retry_webhook(line, webhook, error)
        # The new webhook cannot edit the old one's message: post the text again and drop the stale copy.
        new_id = await self.post(line, content)
        with contextlib.suppress(discord.HTTPException):
            await line.place.get_partial_message(message_id).delete()
        return new_id

    async def delete(self, line: SpokenLine, message_id: int) -> None:
        """Delete one message of ``line`` (already gone is fine)."""
        with contextlib.suppress(discord.NotFound):
            if line.webhook is not None:
                try:
                    await line.webhook.delete_message(message_id, thread=line.thread)
                    return
                except discord.NotFound as error:
                    if error.code != UNKNOWN_WEBHOOK:
                        raise
            # The bot's own message, or one of a deleted webhook (needs Manage Messages).
            await line.place.get_partial_message(message_id).delete()


async def _parent(place: Place) -> discord.abc.GuildChannel:
    """The channel whose webhooks serve ``place``: a thread's parent, or the channel itself."""
    if not isinstance(place, discord.Thread):
        return place
    if place.parent is not None:
        return place.parent
    fetched = await place.guild.fetch_channel(place.parent_id)
    assert not isinstance(fetched, discord.Thread)
    return fetched
