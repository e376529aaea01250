"""What a feature is given: the bot's shared services, and the shape of a feature's ``setup``.

A feature (``features/``) never imports the bot class: its ``setup(bot, services)`` adds its cog, given
discord.py's bot (:data:`DiscordBot`) for Discord's API and :class:`Services` for the project's own pieces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from discord.ext import commands

from bot.config import DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.app.access import Access
from bot.frontends.discord.app.proxies import Proxies
from bot.frontends.discord.ui.replying import Replies


@dataclass(frozen=True, slots=True)
class Services:
    """The project's pieces a cog may use; built once by the client and passed to every feature."""

    chat: ChatService
    """Conversations, generation and the store (``chat.store``), ``chat.engine`` for the model side."""
    replies: Replies
    """Every reply the bot shows (a shutdown stops them all), and the channels' shared edit budget."""
    access: Access
    """The one access gate ([access]): commands, buttons and messages all pass it."""
    settings: DiscordConfig
    """The ``[discord]`` section of the config."""
    proxies: Proxies
    """Recent person messages a proxy bot (PluralKit, Tupperbox) may delete and repost under another name."""


DiscordBot = commands.Bot | commands.AutoShardedBot
"""Discord's side of the bot, as a feature sees it (the client is sharded automatically)."""

Feature = Callable[[DiscordBot, Services], Awaitable[None]]
"""A feature's ``setup``: adds its cog (and its persistent buttons) to the bot."""
