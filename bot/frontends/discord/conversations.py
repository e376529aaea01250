"""Conversations in Discord: ``/chat``, ``/reset``, messages in bot threads, mentions, DMs, reply buttons.

Every Discord thread the bot created, and every DM channel, is one conversation whose
history lives in the store under ``thread:<id>`` or ``dm:<id>``. This cog turns Discord
events into :meth:`ChatService.respond` calls and renders the replies; it never touches
SQL or the model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author, ChatService, KeyFactory, Mode
from bot.errors import BotError, BusyError, GenerationError, PromptError
from bot.frontends.discord.rendering import NO_MENTIONS, ChannelThrottles, ReplyRenderer
from bot.frontends.discord.views import Action, reply_view

if TYPE_CHECKING:
    from bot.frontends.discord.client import AiroborosBot

_log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100
ECHO_LIMIT = 2000


def thread_name(prompt: str) -> str:
    """A thread name from the prompt's first line: 1 to 100 characters."""
    first = " ".join(prompt.strip().split("\n", 1)[0].split())
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first or "Conversation"


def conversation_key(channel: object, bot_user_id: int) -> str | None:
    """The store key of a channel that is a conversation: a thread the bot made, or a DM."""
    if isinstance(channel, discord.Thread) and channel.owner_id == bot_user_id:
        return f"thread:{channel.id}"
    if isinstance(channel, discord.DMChannel):
        return f"dm:{channel.id}"
    return None


class Conversations(commands.Cog):
    """Chat with the model in threads and DMs."""

    def __init__(self, bot: AiroborosBot, chat: ChatService) -> None:
        self.bot = bot
        self.chat = chat
        self.throttles = ChannelThrottles()
        self.streaming: dict[int, ReplyRenderer] = {}
        """Replies in flight, by the id of their first message (for the Stop button)."""
        self.latest: dict[str, list[discord.Message]] = {}
        """The messages of each conversation's latest reply (for Regenerate)."""
        self._answering: set[asyncio.Task[Any]] = set()

    async def cog_unload(self) -> None:
        """On shutdown, stop every reply in flight and let each store and show what it had."""
        for renderer in list(self.streaming.values()):
            renderer.stop()
        if self._answering:
            await asyncio.wait(self._answering, timeout=5)

    @property
    def _me(self) -> int:
        assert self.bot.user is not None
        return self.bot.user.id

    # -- slash commands --------------------------------------------------------------------------

    @app_commands.command(name="chat")
    @app_commands.describe(prompt="What you want to say to the model")
    async def chat_command(
        self, interaction: discord.Interaction[Any], prompt: app_commands.Range[str, 1, 4000]
    ) -> None:
        """Talk to the model: opens a thread for the conversation (or continues this one)."""
        author = Author(interaction.user.id, interaction.user.display_name)
        echo = f"**{author.name}:** {prompt}"
        echo = echo if len(echo) <= ECHO_LIMIT else echo[: ECHO_LIMIT - 1] + "…"
        channel = interaction.channel
        key = conversation_key(channel, self._me)
        if key is not None:

            async def announce() -> None:
                await interaction.response.send_message(echo, allowed_mentions=NO_MENTIONS)

            await self._answer(channel, author, prompt, key, interaction=interaction, announce=announce)
            return
        if not isinstance(channel, discord.TextChannel):
            await interaction.response.send_message(
                "Use /chat in a text channel, in one of my threads, or in a DM.", ephemeral=True
            )
            return
        opened: list[discord.Thread] = []

        async def open_thread() -> str:
            await interaction.response.send_message(echo, allowed_mentions=NO_MENTIONS)
            starter = await interaction.original_response()
            thread = await starter.create_thread(name=thread_name(prompt))
            opened.append(thread)
            return f"thread:{thread.id}"

        await self._answer(lambda: opened[0], author, prompt, open_thread, interaction=interaction)

    @app_commands.command(name="reset")
    async def reset_command(self, interaction: discord.Interaction[Any]) -> None:
        """Forget this conversation's history; the next message starts fresh."""
        key = conversation_key(interaction.channel, self._me)
        if key is None:
            await interaction.response.send_message("Use /reset inside one of my threads or in a DM.", ephemeral=True)
            return
        forgotten = await self.chat.reset(key)
        self.latest.pop(key, None)
        await interaction.response.send_message(
            f"Forgot {forgotten} message{'s' if forgotten != 1 else ''}; the conversation starts fresh.", ephemeral=True
        )

    # -- messages --------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer messages in bot threads and DMs, and mentions in channels (in a new thread)."""
        if message.author.bot or message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        content = re.sub(rf"<@!?{self._me}>", "", message.content).strip()
        author = Author(message.author.id, message.author.display_name)
        key = conversation_key(message.channel, self._me)
        if key is not None:
            if content:
                await self._answer(message.channel, author, content, key, reference=message)
            return
        if self.bot.user in message.mentions and isinstance(message.channel, discord.TextChannel):
            if not content:
                await message.reply(
                    "Mention me with a message and I'll answer in a thread.", allowed_mentions=NO_MENTIONS
                )
                return
            opened: list[discord.Thread] = []

            async def open_thread() -> str:
                thread = await message.create_thread(name=thread_name(content))
                opened.append(thread)
                return f"thread:{thread.id}"

            await self._answer(lambda: opened[0], author, content, open_thread, reference=message)

    # -- answering -------------------------------------------------------------------------------

    async def _answer(
        self,
        channel: discord.abc.Messageable | Any,
        author: Author,
        content: str,
        key: str | KeyFactory,
        *,
        mode: Mode = "new",
        interaction: discord.Interaction[Any] | None = None,
        reference: discord.Message | None = None,
        reuse: list[discord.Message] | None = None,
        announce: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run one reply end to end; every failure ends as a short message, never a crash.

        ``announce`` runs once the request is admitted, before the reply appears.
        """
        guild_id = (
            interaction.guild_id if interaction else (reference.guild.id if reference and reference.guild else None)
        )
        renderer: ReplyRenderer | None = None
        try:
            async with self.chat.respond(key, author, content, mode=mode, guild_id=guild_id) as reply:
                if announce is not None:
                    await announce()
                target = channel() if callable(channel) else channel
                renderer = ReplyRenderer(
                    target,
                    self.throttles(getattr(target, "id", 0)),
                    lambda streaming: reply_view(author.id, streaming=streaming),
                    reuse=reuse,
                    skip=len(reply.text) if mode == "continue" else 0,
                )
                first = await renderer.start(reply)
                conversation = key if isinstance(key, str) else conversation_key(target, self._me) or ""
                self.streaming[first.id] = renderer
                try:
                    await renderer.stream(reply)
                finally:
                    self.streaming.pop(first.id, None)
                    self.latest[conversation] = renderer.messages
        except (BusyError, PromptError) as error:
            await self._refuse(error, content, interaction=interaction, reference=reference, channel=channel)
        except GenerationError:
            _log.info("A reply failed in the model; the user sees why")
        except BotError as error:
            await self._refuse(error, content, interaction=interaction, reference=reference, channel=channel)
        finally:
            if renderer is not None:  # the reply is stored by now: show it whole, with its buttons
                try:
                    await renderer.finish()
                except discord.HTTPException:
                    _log.warning("Could not show the end of a reply", exc_info=True)

    @staticmethod
    async def _refuse(
        error: BotError,
        content: str,
        *,
        interaction: discord.Interaction[Any] | None,
        reference: discord.Message | None,
        channel: object,
    ) -> None:
        """Tell the user why nothing happened: ephemeral for interactions, a reply for messages.

        A slash command's text exists nowhere else, so it comes back as a file to send again.
        """
        text = f"⚠️ {error}"
        if interaction is not None:
            files = [discord.File(io.BytesIO(content.encode()), "your-message.txt")] if content else []
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, files=files)
            else:
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, files=files)
        elif reference is not None:
            await reference.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
        elif isinstance(channel, discord.abc.Messageable):
            await channel.send(text, allowed_mentions=NO_MENTIONS)

    # -- buttons ---------------------------------------------------------------------------------

    async def on_reply_button(self, interaction: discord.Interaction[Any], action: Action, owner: int) -> None:
        """Stop, Regenerate or Continue the reply whose button was pressed."""
        message = interaction.message
        assert message is not None
        if action == "stop":
            renderer = self.streaming.get(message.id)
            if renderer is None:
                await interaction.response.send_message("That reply has already finished.", ephemeral=True)
                return
            permissions = interaction.permissions
            if interaction.user.id != owner and not permissions.manage_messages:
                await interaction.response.send_message(
                    "Only the person who asked, or a moderator, can stop this reply.", ephemeral=True
                )
                return
            await interaction.response.defer()
            renderer.stop()
            return
        key = conversation_key(interaction.channel, self._me)
        if key is None:
            await interaction.response.send_message("This conversation is no longer available.", ephemeral=True)
            return
        if any(r.first_message and r.first_message.channel.id == message.channel.id for r in self.streaming.values()):
            await interaction.response.send_message("Wait for the current reply to finish.", ephemeral=True)
            return
        latest = self.latest.get(key)
        if latest is not None and message.id not in {m.id for m in latest}:
            verb = "regenerated" if action == "regenerate" else "continued"
            await interaction.response.send_message(f"Only the latest reply can be {verb}.", ephemeral=True)
            return
        await interaction.response.defer()
        author = Author(interaction.user.id, interaction.user.display_name)
        if action == "regenerate":
            await self._answer(
                message.channel, author, "", key, mode="regenerate", interaction=interaction, reuse=latest or [message]
            )
        else:
            await self._answer(message.channel, author, "", key, mode="continue", interaction=interaction)
