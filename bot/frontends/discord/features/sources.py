"""Grounded answers in Discord: ``/source add|list|remove``, ``/ask``, and the "Ask about this message" menu.

Sources belong to a channel or thread (a thread also sees its parent channel's sources) and live in the store;
``/ask`` answers from them with the model card's context-obedient blocks (:mod:`bot.core.sources`) and ends
with a "Sources:" footer. "Ask about this message" opens a modal for the question and answers from the message
and its text attachments, which are not stored: they exist only for that answer.

Every command is acknowledged before anything slow; a modal is itself the menu's answer, and its submission is
deferred before any work. Refusals take the one error path (:func:`~bot.frontends.discord.ui.feedback.report`).
``/source add`` counts against the person's ``[access] requests_per_minute`` like a model request (it stores and
indexes up to ``source_max_bytes`` of text), and ``[sources]`` caps what a channel and a person keep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author
from bot.core.sources import (
    NO_SOURCES,
    Answer,
    SourceError,
    SourceService,
    SourceText,
    check_file_type,
    check_size,
    decode_text_file,
    is_text_file,
    metadata_for,
    size_text,
)
from bot.errors import GenerationError
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import DiscordRefusal, report

_log = logging.getLogger(__name__)

LIST_LIMIT = 1900
"""Characters of ``/source list`` shown; Discord's limit is 2000."""
QUESTION_SHOWN = 300


def scope_of(interaction: discord.Interaction[Any]) -> list[int]:
    """The channels whose sources apply here: the channel, or a thread and its parent."""
    channel = interaction.channel
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return [channel.id, channel.parent_id]
    return [interaction.channel_id] if interaction.channel_id is not None else []


def answer_text(question: str, text: str, used: Sequence[SourceText] | None) -> str:
    """What an answer shows: the question quoted, the model's text, and once it ended the sources it was given."""
    asked = " ".join(question.split())
    if len(asked) > QUESTION_SHOWN:
        asked = asked[: QUESTION_SHOWN - 1] + "…"
    shown = f"> {discord.utils.escape_markdown(asked)}\n{text}"
    if used:
        lines = [
            f"{number}. {discord.utils.escape_markdown(source.title)}" + (f" — <{source.url}>" if source.url else "")
            for number, source in enumerate(used, start=1)
        ]
        shown += "\n\n**Sources:**\n" + "\n".join(lines)
    return shown


class AskModal(discord.ui.Modal, title="Ask about this message"):
    """The question about a message; its submission answers from the message and its text files."""

    question: discord.ui.TextInput[AskModal] = discord.ui.TextInput(
        label="Your question", style=discord.TextStyle.paragraph, max_length=1000, custom_id="question"
    )

    def __init__(self, cog: Sources, message: discord.Message) -> None:
        super().__init__(timeout=600)
        self.cog = cog
        self.message = message

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Acknowledge, then answer; refusals reach :meth:`on_error`."""
        await interaction.response.defer(thinking=True)
        await self.cog.answer_about(interaction, self.message, self.question.value)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        """A submission's refusal (or failure) takes the one error path."""
        await report(interaction, error)


class Sources(commands.Cog):
    """Sources per channel and answers grounded in them."""

    source = app_commands.Group(name="source", description="Texts that /ask answers from, in this channel")

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.replies = services.replies
        self.access = services.access
        self.settings = self.chat.engine.config.skills
        self.service = SourceService(self.chat, self.settings, self.chat.engine.config.sources)
        self.ask_menu = app_commands.ContextMenu(name="Ask about this message", callback=self.ask_about_message)

    async def cog_load(self) -> None:
        """Context menus cannot live in a cog's class body: the menu is added to the tree here."""
        self.bot.tree.add_command(self.ask_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.ask_menu.name, type=self.ask_menu.type)

    # -- /source ---------------------------------------------------------------------------------

    @source.command(name="add")
    @app_commands.describe(
        text="The source's text",
        file="A text file (.txt, .md, .csv, .json, .py, ...) instead of typed text",
        title="A title (default: the file's name or the text's first line)",
        url="Where the text comes from (cited in answers)",
    )
    async def add_command(
        self,
        interaction: discord.Interaction[Any],
        text: app_commands.Range[str, 1, 6000] | None = None,
        file: discord.Attachment | None = None,
        title: app_commands.Range[str, 1, 100] | None = None,
        url: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        """Add a source to this channel (typed text or a text file) for /ask to answer from."""
        limited = self.access.rate(interaction.user.id)  # not a model command, so the gate did not count it
        if limited is not None:
            raise limited
        await interaction.response.defer(ephemeral=True, thinking=True)
        if (text is None) == (file is None):
            raise SourceError("Give the source's text or attach a text file (one of the two).")
        filename = None
        if file is not None:
            filename = file.filename
            content = decode_text_file(
                file.filename, await self._download(file), max_bytes=self.settings.source_max_bytes
            )
        else:
            assert text is not None
            content = text
        added = await self.service.add(
            scope_id=interaction.channel_id or 0,
            guild_id=interaction.guild_id,
            author=Author(interaction.user.id, interaction.user.display_name),
            text=content,
            title=title,
            filename=filename,
            url=url,
        )
        await interaction.edit_original_response(
            content=f"Added source **#{added.id}** “{discord.utils.escape_markdown(added.title)}” "
            f"({size_text(added.size)}). Ask about this channel's sources with `/ask`."
        )

    async def _download(self, file: discord.Attachment) -> bytes:
        """The attachment's bytes, once its name and size say it can be a source."""
        check_file_type(file.filename)
        check_size(file.size, self.settings.source_max_bytes, f"`{file.filename}`")
        try:
            return await file.read()
        except discord.HTTPException as error:
            raise DiscordRefusal(f"I could not download `{file.filename}` ({error.status}); try again.") from error

    @source.command(name="list")
    async def list_command(self, interaction: discord.Interaction[Any]) -> None:
        """List the sources /ask answers from here (only you see the list)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        sources = await self.service.listing(scope_of(interaction))
        if not sources:
            await interaction.edit_original_response(content=NO_SOURCES)
            return
        lines: list[str] = []
        for shown, source in enumerate(sources):
            date = datetime.fromtimestamp(source.created_at, UTC).strftime("%Y-%m-%d")
            where = " (from the parent channel)" if source.scope_id != interaction.channel_id else ""
            line = (
                f"**#{source.id}** {discord.utils.escape_markdown(source.title)} — {size_text(source.size)}, "
                f"by {discord.utils.escape_markdown(source.author_name)}, {date}{where}"
            )
            if sum(len(x) + 1 for x in lines) + len(line) > LIST_LIMIT:
                lines.append(f"… and {len(sources) - shown} more.")
                break
            lines.append(line)
        header = f"**{len(sources)} source{'s' if len(sources) != 1 else ''} here:**"
        await interaction.edit_original_response(content="\n".join([header, *lines]))

    @source.command(name="remove")
    @app_commands.describe(id="The source's number, from /source list")
    async def remove_command(self, interaction: discord.Interaction[Any], id: app_commands.Range[int, 1]) -> None:
        """Remove a source you added (or, with Manage Messages, anyone's)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        moderator = interaction.guild_id is not None and interaction.permissions.manage_messages
        removed = await self.service.remove(id, scope_of(interaction), interaction.user.id, moderator=moderator)
        await interaction.edit_original_response(
            content=f"Removed source **#{removed.id}** “{discord.utils.escape_markdown(removed.title)}”."
        )

    # -- /ask and the message menu ---------------------------------------------------------------

    @app_commands.command(name="ask")
    @app_commands.describe(question="What you want to know from this channel's sources")
    async def ask_command(
        self, interaction: discord.Interaction[Any], question: app_commands.Range[str, 1, 1000]
    ) -> None:
        """Ask a question answered only from this channel's sources, with the sources cited."""
        await interaction.response.defer(thinking=True)
        author = Author(interaction.user.id, interaction.user.display_name)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        await self._answer(interaction, question, self.service.ask(author, scope_of(interaction), question, options))

    async def ask_about_message(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        """The message menu: the modal asking for the question is the answer (no deferral before it)."""
        await interaction.response.send_modal(AskModal(self, message))

    async def answer_about(
        self, interaction: discord.Interaction[Any], message: discord.Message, question: str
    ) -> None:
        """Answer ``question`` from ``message`` and its text attachments (deferred already)."""
        sources = await self.message_sources(message)
        author = Author(interaction.user.id, interaction.user.display_name)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        await self._answer(interaction, question, self.service.ask_about(author, sources, question, options))

    async def message_sources(self, message: discord.Message) -> list[SourceText]:
        """The message's text and its text files as sources (files of other types are left out)."""
        author = message.author.display_name
        created = message.created_at.timestamp()
        sources: list[SourceText] = []
        if message.content.strip():
            metadata = metadata_for(f"message by {author}", message.jump_url, author, created)
            sources.append(SourceText(metadata, message.content))
        for attachment in message.attachments:
            if not is_text_file(attachment.filename):
                continue
            text = decode_text_file(
                attachment.filename, await self._download(attachment), max_bytes=self.settings.source_max_bytes
            )
            sources.append(SourceText(metadata_for(attachment.filename, message.jump_url, author, created), text))
        if not sources:
            raise SourceError("That message has no text to ask about (text files attached to it count too).")
        return sources

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        question: str,
        answering: AbstractAsyncContextManager[Answer],
    ) -> None:
        """Stream the answer into the interaction's response, the sources it was given listed at its end."""
        try:
            async with answering as answer:
                used = answer.used

                def shown(text: str, finished: bool) -> str:
                    return answer_text(question, text, used if finished else None)

                await self.replies.show_once(interaction, answer.reply, transform=shown)
        except GenerationError:
            _log.info("An answer failed in the model; the user sees why")


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/source``, ``/ask`` and the "Ask about this message" menu."""
    await bot.add_cog(Sources(bot, services))
