"""The Discord client: intents, the features registered from one list, command sync, one error path."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.app.access import Access, AccessChecked, AccessGuard, AccessTree
from bot.frontends.discord.app.proxies import Proxies
from bot.frontends.discord.app.ratelimit import GlobalRateLimit
from bot.frontends.discord.features import FEATURES, ROLEPLAY
from bot.frontends.discord.services import Services
from bot.frontends.discord.ui.feedback import report
from bot.frontends.discord.ui.replying import Replies

if TYPE_CHECKING:
    from bot.metrics import Metrics  # only the type: the client runs without prometheus-client imported

_log = logging.getLogger(__name__)


def bot_intents(*, message_content: bool = True) -> discord.Intents:
    """Guilds, guild and DM messages, and Message Content (a privileged intent: enable it in the portal).

    Without Message Content, guild messages arrive empty unless they mention the bot; DMs,
    mentions and slash commands still work.
    """
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


class AiroborosBot(commands.AutoShardedBot):
    """The bot (sharded automatically for many guilds): commands and messages live in cogs; resources are passed in."""

    def __init__(
        self, *, chat: ChatService, settings: DiscordConfig, metrics: Metrics | None = None, **options: Any
    ) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # a text bot: no voice warnings
        rate_limit = GlobalRateLimit(
            settings.requests_per_second, on_rate_limited=None if metrics is None else metrics.rate_limited
        )
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(message_content=settings.message_content),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            http_trace=rate_limit.trace_config(),  # under Discord's 50/s, and its 429s counted
            tree_cls=AccessTree,  # every command passes the access gate first
            **options,
        )
        self.chat = chat
        self.access = Access(chat.engine.config.access)
        """The one access gate ([access]): commands, buttons and messages all pass it."""
        chat.engine.admission.meter = self.access  # every model call, whatever asked for it, counts against the limit
        self.settings = settings
        self.replies = Replies(chat)
        """Every reply the bot shows, shared by the cogs (a shutdown stops them all)."""
        self.services = Services(
            chat=chat, replies=self.replies, access=self.access, settings=settings, proxies=Proxies()
        )
        """What every feature is given (features never import this class)."""

    async def setup_hook(self) -> None:
        """Register the features (their cogs and persistent buttons), then sync slash commands."""
        await self.add_cog(AccessGuard(self, self.access))
        # [discord] roleplay = false: no /character, no /scene (and no Manage Webhooks)
        for setup in FEATURES + (ROLEPLAY if self.settings.roleplay else ()):
            await setup(self, self.services)
        self.tree.error(self.on_app_command_error)
        if self.settings.guild_ids:
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                _log.info("Synced %d commands to guild %d", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            _log.info("Synced %d global commands (they can take up to an hour to appear)", len(synced))

    def add_dynamic_items(self, *items: type[discord.ui.DynamicItem[Any]]) -> None:
        """Register persistent buttons; each must pass the access gate (:class:`AccessChecked`), so none skips it."""
        for item in items:
            if not issubclass(item, AccessChecked):
                raise TypeError(f"{item.__name__} must inherit AccessChecked (the access gate) before DynamicItem")
        super().add_dynamic_items(*items)

    async def on_message(self, message: discord.Message, /) -> None:
        """Messages are handled by the conversations cog; there are no prefix commands."""

    async def on_ready(self) -> None:
        assert self.user is not None
        _log.info("Connected as %s (%d) to %d guilds", self.user, self.user.id, len(self.guilds))

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Slash commands' errors take the one error path: a short ephemeral answer, a log line if unexpected."""
        await report(interaction, error)
