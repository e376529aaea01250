"""``/settings show|set|reset``: per-channel settings and per-server defaults for the model.

What applies in a channel is its own value, else (in a thread) its parent channel's, else
the server's default, else the config's ``[generation]``; see :mod:`bot.core.settings`.
Every command that generates gets them through :meth:`ChatService.options_for`, so they
apply to conversations, ``/chat`` and every other command alike. This cog also tells the
chat service which channel a thread sits in (:meth:`SettingsCommands.parent_of`).

Who may change what (checked when the command runs; ``default_permissions`` only hides the
command from members who lack Manage Channels, and a server may open it to everyone in
Server Settings > Integrations, which then lets them *see* the settings):

- server defaults (``scope:guild``): Manage Server;
- a channel's settings: Manage Channels; a thread's own settings: Manage Threads or Manage Channels;
- in a DM: the person in it (it is their conversation); there are no server defaults there.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import no_parent
from bot.core.settings import SYSTEM_PROMPT_LIMIT, ChannelSettings, Effective, Place, Source
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import DiscordRefusal
from bot.store import Scope

_log = logging.getLogger(__name__)

ScopeName = Literal["channel", "guild"]
SettingName = Literal["temperature", "top_p", "max_new_tokens", "system_prompt", "history", "variant"]

LABELS = {
    "temperature": "Temperature",
    "top_p": "Top p",
    "max_new_tokens": "Max new tokens",
    "history": "History",
    "variant": "Model variant",
    "system_prompt": "System prompt",
}
"""Each setting's field name in the embed, in the order shown (the system prompt last: it is long).
Each field's value is where the value comes from (in italics), then the value."""

FIELD_LIMIT = 1024
"""Discord's limit on an embed field's value."""


def variant_choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """The loaded variants whose name contains what was typed (Discord shows at most 25)."""
    typed = current.strip().lower()
    return [app_commands.Choice(name=n, value=n) for n in names if typed in n.lower()][:25]


def source_text(source: Source, *, in_thread: bool) -> str:
    """Where a value comes from, as the embed says it."""
    if source == Source.CHANNEL and in_thread:
        return "parent channel"
    return {Source.THREAD: "thread", Source.CHANNEL: "channel", Source.SERVER: "server", Source.DEFAULT: "default"}[
        source
    ]


def value_text(name: str, value: object) -> str:
    """A setting's value as the embed shows it."""
    if name == "history":
        return "on" if value else "off"
    if name == "system_prompt":
        return discord.utils.escape_markdown(str(value)) if value else "*the model's own*"
    return f"`{value}`"


def settings_embed(effective: Effective, title: str, *, in_thread: bool = False) -> discord.Embed:
    """The settings that apply, each value with where it comes from (thread / channel / server / default)."""
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    for name, label in LABELS.items():
        source = source_text(effective.sources[name], in_thread=in_thread)
        text = f"*{source}*\n{value_text(name, getattr(effective.values, name))}"
        if len(text) > FIELD_LIMIT:
            text = text[: FIELD_LIMIT - 1] + "…"
        embed.add_field(name=label, value=text, inline=name != "system_prompt")
    embed.set_footer(text="A thread's own > its channel's > the server's > the bot's defaults. Change: /settings set")
    return embed


def _place(interaction: discord.Interaction[Any]) -> tuple[Place, bool]:
    """Where the command runs, and whether that is a thread."""
    channel = interaction.channel
    parent = channel.parent_id if isinstance(channel, discord.Thread) else None
    return Place(interaction.guild_id, interaction.channel_id, parent), parent is not None


def _title(scope: Scope, place: Place, in_thread: bool) -> str:
    if scope == Scope.GUILD:
        return "Server defaults"
    if place.guild_id is None:
        return "Settings in this DM"
    return "Settings in this thread" if in_thread else "Settings in this channel"


def _scope(interaction: discord.Interaction[Any], scope: ScopeName) -> Scope:
    if scope == "guild" and interaction.guild_id is None:
        raise DiscordRefusal("There are no server settings in a DM; use scope:channel.")
    return Scope(scope)


def require_may_change(interaction: discord.Interaction[Any], scope: Scope) -> None:
    """Refuse, naming the permission, a change this member may not make (see the module docstring)."""
    if interaction.guild_id is None:
        return  # a DM: the person's own conversation
    have = interaction.permissions
    if scope == Scope.GUILD:
        if not have.manage_guild:
            raise DiscordRefusal("You need the **Manage Server** permission to change the server's defaults.")
        return
    if isinstance(interaction.channel, discord.Thread):
        if not (have.manage_threads or have.manage_channels):
            raise DiscordRefusal("You need the **Manage Threads** permission to change this thread's settings.")
        return
    if not have.manage_channels:
        raise DiscordRefusal("You need the **Manage Channels** permission to change this channel's settings.")


class SettingsCommands(commands.Cog):
    """Show and change the model's settings for a channel, a thread, a DM or the whole server."""

    group = app_commands.Group(
        name="settings",
        description="The model's settings here: temperature, length, system prompt, history, variant",
        default_permissions=discord.Permissions(manage_channels=True),
    )

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = chat = services.chat
        self.settings = ChannelSettings(chat.store, chat.engine, chat.generation)

    async def cog_load(self) -> None:
        """From now on the chat service knows which channel a thread sits in (threads inherit its settings)."""
        self.chat.parent_of = self.parent_of

    async def cog_unload(self) -> None:
        self.chat.parent_of = no_parent

    async def parent_of(self, channel_id: int) -> int | None:
        """The channel a thread sits in (from the cache, else asked of Discord); None for anything else."""
        channel: object = self.bot.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.bot.fetch_channel(channel_id)
            except discord.HTTPException:
                _log.info("Could not look up channel %d; it gets no parent channel's settings", channel_id)
                return None
        return channel.parent_id if isinstance(channel, discord.Thread) else None

    # -- commands --------------------------------------------------------------------------

    @group.command(name="show")
    @app_commands.describe(scope="channel: what applies here (default); guild: the server's defaults")
    async def show(self, interaction: discord.Interaction[Any], scope: ScopeName = "channel") -> None:
        """Show the settings that apply here, and where each comes from."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        chosen = _scope(interaction, scope)
        place, in_thread = _place(interaction)
        effective = await self.settings.effective(place, chosen)
        await interaction.edit_original_response(embed=settings_embed(effective, _title(chosen, place, in_thread)))

    @group.command(name="set")
    @app_commands.describe(
        temperature="Randomness, 0-2 (0: always the likeliest word; the model card uses 0.5)",
        top_p="Nucleus sampling, above 0 up to 1 (1: off)",
        max_new_tokens="Longest reply in tokens (at most what the model's window and the bot allow)",
        system_prompt=f"The system message the model gets (at most {SYSTEM_PROMPT_LIMIT} characters)",
        history="Keep earlier messages in the prompt (off: each message is answered on its own)",
        variant="Which loaded model answers",
        scope="channel: this channel or thread (default); guild: the server's defaults (Manage Server)",
    )
    async def set_(  # noqa: PLR0917 (each slash-command option is a parameter)
        self,
        interaction: discord.Interaction[Any],
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
        top_p: app_commands.Range[float, 0.0, 1.0] | None = None,
        max_new_tokens: app_commands.Range[int, 1, 4096] | None = None,
        system_prompt: app_commands.Range[str, 1, SYSTEM_PROMPT_LIMIT] | None = None,
        history: bool | None = None,
        variant: str | None = None,
        scope: ScopeName = "channel",
    ) -> None:
        """Change settings here (or the server's defaults); the others stay as they are."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        chosen = _scope(interaction, scope)
        require_may_change(interaction, chosen)
        given = {
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "system_prompt": system_prompt,
            "history": history,
            "variant": variant,
        }
        changes = {name: value for name, value in given.items() if value is not None}
        if not changes:
            raise DiscordRefusal("Give at least one setting to change, e.g. `/settings set temperature:0.7`.")
        place, in_thread = _place(interaction)
        effective = await self.settings.change(place, chosen, changes)
        names = ", ".join(changes)
        await interaction.edit_original_response(
            content=f"Saved {names}.",
            embed=settings_embed(effective, _title(chosen, place, in_thread), in_thread=in_thread),
        )

    @set_.autocomplete("variant")
    async def _variant_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return variant_choices(self.chat.engine.names, current)

    @group.command(name="reset")
    @app_commands.describe(
        scope="channel: this channel or thread (default); guild: the server's defaults (Manage Server)",
        setting="Only this setting (default: all of them)",
    )
    async def reset(
        self, interaction: discord.Interaction[Any], scope: ScopeName = "channel", setting: SettingName | None = None
    ) -> None:
        """Forget the settings made here (or the server's defaults): the inherited ones apply again."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        chosen = _scope(interaction, scope)
        require_may_change(interaction, chosen)
        place, in_thread = _place(interaction)
        effective = await self.settings.reset(place, chosen, setting)
        what = f"the {setting} setting" if setting else "all settings"
        await interaction.edit_original_response(
            content=f"Reset {what}.",
            embed=settings_embed(effective, _title(chosen, place, in_thread), in_thread=in_thread),
        )

    # -- places that go away ---------------------------------------------------------------

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A deleted thread's settings go with it."""
        await self.chat.store.settings.reset(Scope.CHANNEL, payload.thread_id)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """A deleted channel's settings go with it."""
        await self.chat.store.settings.reset(Scope.CHANNEL, channel.id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """The bot left a server (or was removed): its defaults and its channels' settings are forgotten."""
        await self.chat.store.settings.forget_guild(guild.id)


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/settings``."""
    await bot.add_cog(SettingsCommands(bot, services))
