"""Conversations in Discord: ``/chat``, ``/reset``, messages in conversation threads, mentions, DMs, reply buttons.

Every Discord thread the bot created, every thread it was mentioned in, and every DM
channel is one conversation whose history lives in the store under ``thread:<id>`` or
``dm:<id>``. This cog turns Discord events into :class:`ChatService` calls and renders
the replies; it never touches SQL or the model. The chat service serializes the work on
each conversation, so what is stored follows the order Discord shows.

Every interaction is acknowledged before anything slow (a database read, tokenizing,
the model); permissions are checked before acting, and every refusal goes through
:func:`~bot.frontends.discord.ui.feedback.report`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author
from bot.core.sanitize import is_blank
from bot.frontends.discord.app.catchup import missed_messages
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
    TO_ANSWER_IN_A_CHANNEL,
    TO_ANSWER_IN_A_THREAD,
    TO_OPEN_A_THREAD,
    DiscordRefusal,
    refusal,
    report,
    require,
    require_open_thread,
)
from bot.frontends.discord.ui.rendering import RESTART_MARK, thread_name
from bot.frontends.discord.ui.views import Action, ReplyButton

_log = logging.getLogger(__name__)

ECHO_LIMIT = 2000
RESET_REFUSED = (
    "Others wrote in this conversation too: only the person who started it, or someone with Manage Threads, "
    "can reset it."
)


def echo_text(author: Author, prompt: str) -> str:
    """A slash command's prompt as the channel sees it."""
    echo = f"**{author.name}:** {prompt}"
    return echo if len(echo) <= ECHO_LIMIT else echo[: ECHO_LIMIT - 1] + "…"


class Conversations(commands.Cog):
    """Chat with the model in threads and DMs."""

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.replies = services.replies
        self.access = services.access
        self.proxies = services.proxies
        self.adopted: set[int] = set()
        """Threads the bot did not create but was mentioned in: conversations too."""
        self.closing = False

    async def cog_unload(self) -> None:
        """On shutdown (before Discord closes): stop each reply in flight; each is stored (partial) and shown."""
        self.closing = True
        await self.replies.stop_all(RESTART_MARK)

    @property
    def _me(self) -> int:
        assert self.bot.user is not None
        return self.bot.user.id

    def conversation_key(self, channel: object) -> str | None:
        """The store key of a channel that is a conversation: a thread the bot made or adopted, or a DM."""
        if isinstance(channel, discord.Thread) and channel.id in self.replies.claimed:
            return None  # a scene thread: the scenes cog answers there
        if isinstance(channel, discord.Thread) and (channel.owner_id == self._me or channel.id in self.adopted):
            return f"thread:{channel.id}"
        if isinstance(channel, discord.DMChannel):
            return f"dm:{channel.id}"
        return None

    async def _find_conversation(self, channel: object) -> str | None:
        """:meth:`conversation_key`, also for a thread adopted before a restart (asks the store)."""
        key = self.conversation_key(channel)
        if isinstance(channel, discord.Thread) and channel.id in self.replies.claimed:
            return None
        if key is None and isinstance(channel, discord.Thread) and await self.chat.exists(f"thread:{channel.id}"):
            self.adopted.add(channel.id)
            key = f"thread:{channel.id}"
        return key

    def _bot_permissions(self, channel: object) -> discord.Permissions:
        if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
            return channel.permissions_for(channel.guild.me)
        return discord.Permissions.all()  # a DM: no permissions apply

    # -- slash commands --------------------------------------------------------------------------

    @app_commands.command(name="chat")
    @app_commands.describe(prompt="What you want to say to the model")
    async def chat_command(
        self, interaction: discord.Interaction[Any], prompt: app_commands.Range[str, 1, 4000]
    ) -> None:
        """Talk to the model: opens a thread for the conversation (or continues this one)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        author = Author(interaction.user.id, interaction.user.display_name)
        channel = interaction.channel
        permissions = interaction.app_permissions if interaction.guild_id else discord.Permissions.all()
        key = await self._find_conversation(channel)
        if key is not None:
            assert isinstance(channel, discord.Thread | discord.DMChannel)
            if isinstance(channel, discord.Thread):
                require(permissions, TO_ANSWER_IN_A_THREAD)
                require_open_thread(channel, permissions)
            echo = await channel.send(echo_text(author, prompt), allowed_mentions=NO_MENTIONS)
            if (
                await self.replies.answer(lambda: channel, author, prompt, key, interaction, external_id=echo.id)
                is False
            ):
                with contextlib.suppress(discord.HTTPException):
                    await echo.delete()
            return
        if not isinstance(channel, discord.TextChannel):
            raise DiscordRefusal("Use /chat in a text channel, in one of my threads, or in a DM.")
        require(permissions, TO_OPEN_A_THREAD)
        opened = _Opened()

        async def open_thread() -> str:
            echo = await channel.send(echo_text(author, prompt), allowed_mentions=NO_MENTIONS)
            return await opened.thread_from(echo, prompt, delete_starter=True)

        if not await self.replies.answer(opened.channel, author, prompt, open_thread, interaction):
            await opened.discard()  # the prompt came back as a file: no empty thread, no echo is left behind

    @app_commands.command(name="reset")
    async def reset_command(self, interaction: discord.Interaction[Any]) -> None:
        """Forget this conversation's history; the next message starts fresh."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel = interaction.channel
        key = await self._find_conversation(channel)
        if key is None:
            raise DiscordRefusal("Use /reset inside one of my threads or in a DM.")
        user = interaction.user.id
        # A DM, Manage Threads, or the thread's owner (a person's own thread the bot was mentioned in) may reset it all;
        # anyone else only a conversation they started or that no one else wrote in (the chat service checks).
        resets_all = (
            interaction.guild_id is None
            or interaction.permissions.manage_threads
            or getattr(channel, "owner_id", None) == user
        )
        forgotten = await self.chat.reset(key, by=None if resets_all else user)
        if forgotten is None:
            raise DiscordRefusal(RESET_REFUSED)
        await interaction.edit_original_response(
            content=f"Forgot {forgotten} message{'s' if forgotten != 1 else ''}; the conversation starts fresh."
        )

    # -- messages --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer messages in conversations, and mentions elsewhere (in a new thread, or in the thread itself)."""
        if self.closing or message.author.bot:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        if not self.access.serves(message):
            return  # [access] refuses this person or place: silence, so a channel is never spammed
        channel = message.channel
        if channel.id in self.replies.claimed:
            return  # a scene thread: the scenes cog answers there
        # No await before the chat service takes the message: messages keep the order they arrived in.
        key = self.conversation_key(channel)
        mentioned = self.bot.user in message.mentions
        if key is None and isinstance(channel, discord.Thread):
            key = await self._find_conversation(channel)
            if key is None and mentioned:
                self.adopted.add(channel.id)  # a mention in someone else's thread (or a forum post) adopts it
                key = f"thread:{channel.id}"
        content = re.sub(rf"<@!?{self._me}>", "", message.content).strip()
        author = Author(message.author.id, message.author.display_name)
        if key is not None:
            if is_blank(content):
                return  # an attachment or sticker alone, only spaces, or no Message Content intent: nothing to answer
            if not self.replies.first_time(message.id) or not self._can_answer(channel, message):
                return
            if not self.access.admit(message, self.replies.spawn):
                return
            await self.replies.answer(lambda: channel, author, content, key, message, external_id=message.id)
            return
        if not mentioned or not isinstance(channel, discord.TextChannel) or not self.replies.first_time(message.id):
            return
        if not self._can_answer(channel, message, opening=True):
            return
        if is_blank(content):
            await message.reply("Mention me with a message and I'll answer in a thread.", allowed_mentions=NO_MENTIONS)
            return
        if not self.access.admit(message, self.replies.spawn):
            return
        opened = _Opened()
        if not await self.replies.answer(
            opened.channel,
            author,
            content,
            lambda: opened.thread_from(message, content),
            message,
            external_id=message.id,
        ):
            await opened.discard()  # the person's own message stays, with the error's reply

    def _can_answer(self, channel: object, message: discord.Message, *, opening: bool = False) -> bool:
        """Whether the bot may answer in ``channel``; says what is missing when it can still speak there."""
        permissions = self._bot_permissions(channel)
        needed = TO_OPEN_A_THREAD if opening else TO_ANSWER_IN_A_THREAD
        if not isinstance(channel, discord.Thread) and not opening:
            needed = TO_ANSWER_IN_A_CHANNEL
        try:
            require(permissions, needed)
            require_open_thread(channel, permissions)
        except DiscordRefusal as error:
            can_speak = (
                permissions.send_messages_in_threads
                if isinstance(channel, discord.Thread)
                else (permissions.send_messages)
            )
            _log.info("Not answering in %s: %s", getattr(channel, "id", "?"), error)
            if can_speak and permissions.view_channel and not getattr(channel, "locked", False):
                self.replies.spawn(report(message, error))
            return False
        return True

    @commands.Cog.listener()
    async def on_shard_ready(self, shard_id: int) -> None:
        """A new gateway session (a session Discord ended, or a start): answer what was written while away."""
        self.replies.spawn(self._catch_up(shard_id))

    async def _catch_up(self, shard_id: int) -> None:
        """Pass each missed message through :meth:`on_message` (through every cog's, in order: see catchup.py)."""
        for channel, messages in await missed_messages(self.bot, self.chat.store, shard_id):
            if isinstance(channel, discord.Thread):
                # The store knows it as a conversation: no message then waits for a lookup, so they keep their order.
                self.adopted.add(channel.id)
            for message in messages:
                if not self.closing:
                    self.bot.dispatch("message", message)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """A person edited a message of a conversation: the stored history changes with it (an edit into blank or
        invisible text is not taken)."""
        if "content" not in payload.data or payload.message.author.bot or not self.access.serves(payload.message):
            return  # [access] refuses this person or place now: their stored words stay as they were
        content = re.sub(rf"<@!?{self._me}>", "", payload.data["content"]).strip()
        if await self.chat.edit(payload.message_id, content):
            _log.info("Message %d was edited; its conversation's history follows", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message leaves its conversation; a reply deleted while it streams stops at once."""
        await self._deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._deleted(sorted(payload.message_ids))

    async def _deleted(self, message_ids: list[int]) -> None:
        for message_id in message_ids:
            if self.replies.deleted(message_id):
                continue  # the bot's own deletion
            if self.proxies.holds(message_id):  # maybe a proxy bot (PluralKit) taking the message over
                self.replies.spawn(self._forget_unless_reposted(message_id))
            elif await self.chat.forget(message_id):
                _log.info("Message %d was deleted; it left its conversation's history", message_id)

    async def _forget_unless_reposted(self, message_id: int) -> None:
        if not await self.proxies.wait_for_repost(message_id) and await self.chat.forget(message_id):
            _log.info("Message %d was deleted; it left its conversation's history", message_id)

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A deleted conversation thread stops its reply at once and is forgotten."""
        key = f"thread:{payload.thread_id}"
        self.replies.abandon(key)
        self.adopted.discard(payload.thread_id)
        if await self.chat.drop_conversation(key):
            _log.info("Thread %d was deleted; its conversation is forgotten", payload.thread_id)

    # -- buttons ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_reply_button(self, interaction: discord.Interaction[Any], action: Action, owner: int) -> None:
        """Stop, Regenerate or Continue the reply whose button was pressed (sent by the buttons as an event)."""
        key = self.conversation_key(interaction.channel)
        if key is None and action != "stop" and isinstance(interaction.channel, discord.Thread):
            await interaction.response.defer()  # a thread adopted before a restart: the store knows it
            key = await self._find_conversation(interaction.channel)
        await self.replies.press(interaction, key, action, owner)


class _Opened:
    """The thread a new conversation opens, once the chat service admitted it."""

    def __init__(self) -> None:
        self.thread: discord.Thread | None = None
        self._echo: discord.Message | None = None
        """The bot's own starter message (a /chat echo), which goes with the thread."""

    def channel(self) -> discord.abc.Messageable:
        assert self.thread is not None
        return self.thread

    async def thread_from(self, starter: discord.Message, prompt: str, *, delete_starter: bool = False) -> str:
        """Open a public thread from ``starter``; on refusal, the starter goes too if it was ours."""
        try:
            self.thread = await starter.create_thread(name=thread_name(prompt))
        except discord.HTTPException as error:
            if delete_starter:
                with contextlib.suppress(discord.HTTPException):
                    await starter.delete()
            raise refusal(error, "open a thread") from error
        self._echo = starter if delete_starter else None
        return f"thread:{self.thread.id}"

    async def discard(self) -> None:
        """Remove the thread (and the bot's echo) of a conversation whose first message could not be stored.

        Deleting a thread needs Manage Threads; without it the thread stays (empty but for its name) and the echo
        still goes, so the prompt is shown nowhere but in the file the person got back.
        """
        if self.thread is not None:
            try:
                await self.thread.delete()
            except discord.HTTPException as error:
                _log.warning("Could not delete the thread %d of a conversation not stored: %s", self.thread.id, error)
        if self._echo is not None:
            with contextlib.suppress(discord.HTTPException):
                await self._echo.delete()


async def setup(bot: DiscordBot, services: Services) -> None:
    """Conversations and the buttons on every reply (Stop, Regenerate, Continue)."""
    bot.add_dynamic_items(ReplyButton)
    await bot.add_cog(Conversations(bot, services))
