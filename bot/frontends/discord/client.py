"""The Discord client: intents, the conversations cog, command sync, one error path."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.access import Access, AccessChecked, AccessGuard, AccessTree
from bot.frontends.discord.characters import Characters
from bot.frontends.discord.compare import Compare, VoteButton
from bot.frontends.discord.conversations import Conversations
from bot.frontends.discord.feedback import report
from bot.frontends.discord.privacy import ForgetButton, Privacy
from bot.frontends.discord.quiz import QuizButton, QuizCog
from bot.frontends.discord.ratelimit import GlobalRateLimit
from bot.frontends.discord.rendering import ChannelThrottles
from bot.frontends.discord.replying import Replies
from bot.frontends.discord.scenes import Scenes
from bot.frontends.discord.settings import SettingsCommands
from bot.frontends.discord.skills import GuessButton, Skills
from bot.frontends.discord.sources import Sources
from bot.frontends.discord.status import Status
from bot.frontends.discord.views import ReplyButton, SceneButton

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
        self,
        *,
        chat: ChatService,
        settings: DiscordConfig,
        metrics: Metrics | None = None,
        throttles: ChannelThrottles | None = None,
        **options: Any,
    ) -> None:
        """``throttles``: the pace of edits (default: Discord's edit budget); tests pass shorter periods."""
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
        self.settings = settings
        self.replies = Replies(chat, throttles)
        """Every reply the bot shows, shared by the cogs (a shutdown stops them all)."""

    async def setup_hook(self) -> None:
        """Register the persistent buttons and the cogs, then sync slash commands."""
        await self.add_cog(AccessGuard(self, self.access))
        self.add_dynamic_items(ReplyButton)
        await self.add_cog(Conversations(self, self.chat, self.replies))
        await self.add_cog(Sources(self, self.chat, self.replies))
        self.add_dynamic_items(GuessButton)
        await self.add_cog(Skills(self, self.chat, self.replies))
        self.add_dynamic_items(QuizButton)
        await self.add_cog(QuizCog(self, self.chat, default_seconds=self.chat.engine.config.skills.quiz_seconds))
        self.add_dynamic_items(VoteButton)
        await self.add_cog(Compare(self.chat, self.replies.throttles))
        await self.add_cog(SettingsCommands(self, self.chat))
        self.add_dynamic_items(ForgetButton)
        await self.add_cog(Privacy(self, self.chat, self.replies))
        await self.add_cog(Status(self))
        if self.settings.roleplay:  # [discord] roleplay = false: no /character, no /scene (and no Manage Webhooks)
            await self.add_cog(Characters(self, self.chat.store))
            self.add_dynamic_items(SceneButton)
            await self.add_cog(Scenes(self, self.chat, self.replies))
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
