"""Telling people why nothing happened: the one error path, and the checks that come before acting.

Every refusal, from a slash command's error handler or from the conversation code, ends in
:func:`report`: ephemeral for interactions, a reply for messages. Discord's own refusals
that people can act on (a missing permission, too many active threads, a locked thread) are
turned into :class:`DiscordRefusal` errors that name what is wrong.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands

from bot.errors import BotError

_log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()

TO_ANSWER_IN_A_THREAD = ("view_channel", "read_message_history", "send_messages_in_threads")
"""What the bot needs in a thread to answer there."""
TO_OPEN_A_THREAD = (
    "view_channel",
    "read_message_history",
    "send_messages",
    "create_public_threads",
    "send_messages_in_threads",
)
"""What the bot needs in a text channel to open a conversation thread and answer in it."""
TO_POST_IN_A_FORUM = ("view_channel", "send_messages", "send_messages_in_threads", "read_message_history")
"""A forum post is a thread opened with a message: Send Messages in the forum creates it."""
TO_ANSWER_IN_A_CHANNEL = ("view_channel", "read_message_history", "send_messages")
TO_POST_EMBEDS_AND_FILES = ("embed_links", "attach_files")
"""/compare posts its answers as embeds; /code sends a long answer as a file; scenes post the characters' avatars."""
TO_STAGE_SCENES = ("manage_webhooks",)
"""Roleplay: characters speak through a channel webhook under their own names and avatars."""

MAX_ACTIVE_THREADS = 160006
"""Discord's error code for a guild that has reached its active-thread limit."""
THREAD_ARCHIVED = 50083
MISSING_PERMISSIONS = 50013
MISSING_ACCESS = 50001


class DiscordRefusal(BotError):
    """Discord (or the bot's permissions in a channel) will not let the bot do what was asked."""


def permission_name(flag: str) -> str:
    """``"send_messages_in_threads"`` -> ``"Send Messages in Threads"``, as Discord's settings spell it."""
    words = flag.replace("view_channel", "view_channels").split("_")
    return " ".join(word if word in ("in", "of") else word.capitalize() for word in words)


def require(permissions: discord.Permissions, needed: Iterable[str]) -> None:
    """Raise :class:`DiscordRefusal` naming every permission in ``needed`` that ``permissions`` lacks."""
    missing = [permission_name(flag) for flag in needed if not getattr(permissions, flag)]
    if missing:
        names = ", ".join(f"**{name}**" for name in missing)
        plural = "permissions" if len(missing) > 1 else "permission"
        raise DiscordRefusal(f"I can't answer here: I'm missing the {names} {plural} in this channel.")


def require_open_thread(channel: object, permissions: discord.Permissions) -> None:
    """A thread the bot is to write in must not be locked (unless it may manage threads)."""
    if isinstance(channel, discord.Thread) and channel.locked and not permissions.manage_threads:
        raise DiscordRefusal("This thread is locked, so I can't answer in it. Start a new conversation with /chat.")


def refusal(error: discord.HTTPException, action: str) -> DiscordRefusal:
    """Discord's answer to a failed ``action`` ("open a thread", ...) as a message a person can act on."""
    if error.code == MAX_ACTIVE_THREADS:
        return DiscordRefusal(
            "This server has reached Discord's limit of active threads; archive some threads and try again."
        )
    if error.code in (MISSING_PERMISSIONS, MISSING_ACCESS) or error.status == 403:
        return DiscordRefusal(f"Discord did not let me {action} here: a permission is missing ({error.text}).")
    if error.code == THREAD_ARCHIVED:
        return DiscordRefusal("This thread is archived and locked, so I can't write in it.")
    return DiscordRefusal(f"Discord did not let me {action} ({error.status}: {error.text}).")


def error_text(error: BaseException, where: str = "") -> str:
    """The short text a person sees for ``error``; unexpected errors are logged here, once."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, BotError):
        return f"⚠️ {error}"
    if isinstance(error, app_commands.BotMissingPermissions):
        names = ", ".join(f"**{permission_name(p)}**" for p in error.missing_permissions)
        return f"⚠️ I'm missing the {names} permission here."
    if isinstance(error, app_commands.MissingPermissions):
        names = ", ".join(f"**{permission_name(p)}**" for p in error.missing_permissions)
        return f"⚠️ You need the {names} permission to do that."
    if isinstance(error, app_commands.CheckFailure):
        return "⚠️ You can't use this command here."
    _log.error("Unexpected error in %s", where or "a handler", exc_info=error)
    return "⚠️ Something went wrong on my side; please try again."


async def report(
    where: discord.Interaction[Any] | discord.Message | discord.abc.Messageable,
    error: BaseException,
    *,
    returned: str | None = None,
) -> None:
    """Tell the person behind ``where`` why nothing happened.

    Interactions get an ephemeral answer (in place of an ephemeral deferred "thinking…" answer; a public one is
    deleted and the answer sent as an ephemeral followup); messages get a reply. ``returned`` is text that exists
    nowhere else (a refused slash command's prompt): it comes back as a file so nothing is lost.
    """
    context = ""
    if isinstance(where, discord.Interaction):
        context = f"/{where.command.name}" if where.command else "a button"
    text = error_text(error, context)
    try:
        if isinstance(where, discord.Interaction):
            await _answer_interaction(where, text, returned)
        elif isinstance(where, discord.Message):
            await where.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
        else:
            await where.send(text, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException:
        _log.warning("Could not tell the user about an error", exc_info=True)


async def _answer_interaction(interaction: discord.Interaction[Any], text: str, returned: str | None) -> None:
    def files() -> list[discord.File]:
        return [discord.File(io.BytesIO(returned.encode()), "your-message.txt")] if returned else []

    response = interaction.response
    if not response.is_done():
        await response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, files=files())
    elif response.type is discord.InteractionResponseType.deferred_channel_message and not await _public(interaction):
        # An ephemeral "thinking…" answer: the error takes its place.
        await interaction.edit_original_response(content=text, attachments=files(), allowed_mentions=NO_MENTIONS)
    else:
        if response.type is discord.InteractionResponseType.deferred_channel_message:
            # A public "thinking…" answer (/ask, /code, /joke ...) must not become an error the whole channel
            # reads: it goes, and the error reaches the asker alone. Deleted first, since Discord turns the first
            # followup after a deferral into the deferred answer itself, public like it.
            try:
                await interaction.delete_original_response()
            except discord.HTTPException:
                _log.info("Could not delete a public answer before reporting an error", exc_info=True)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, files=files())


async def _public(interaction: discord.Interaction[Any]) -> bool:
    """Whether the interaction's deferred answer shows in the channel (discord.py does not remember the flag)."""
    try:
        original = await interaction.original_response()  # cached once a command has read it
    except discord.HTTPException:
        return False  # cannot tell: editing it, as for an ephemeral answer, is the safe default
    return not original.flags.ephemeral
