"""``/status``: what the bot is running and how busy it is, privately, for anyone who asks.

The answer is one ephemeral embed: the loaded model variants (backend, prompt format,
context window) and the default one, each variant's queue (waiting, running, slots),
uptime, version, the number of servers and the gateway latency. Everything comes from
memory (no database, no model work), so the command answers at once. File paths and
server URLs of the models are left out: anyone in a server may ask.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

import bot
from bot.core.engine import Engine, Variant
from bot.frontends.discord.services import DiscordBot, Services


@dataclass(frozen=True, slots=True)
class VariantStatus:
    """One loaded variant as ``/status`` shows it."""

    name: str
    backend: str
    prompt_format: str
    context_length: int
    quantized: bool
    adapter: bool
    waiting: int
    running: int
    slots: int

    @classmethod
    def of(cls, variant: Variant) -> VariantStatus:
        """The status of ``variant`` now."""
        config = variant.config
        return cls(
            name=variant.name,
            backend=config.backend,
            prompt_format=config.resolved_prompt_format,
            context_length=variant.builder.context_length,
            quantized=config.load_4bit,
            adapter=config.adapter is not None,
            waiting=variant.scheduler.waiting,
            running=variant.scheduler.running,
            slots=variant.scheduler.max_running,
        )


@dataclass(frozen=True, slots=True)
class BotStatus:
    """Everything ``/status`` shows, gathered at once."""

    variants: tuple[VariantStatus, ...]
    default: str
    uptime_s: float
    version: str
    guilds: int
    latency_s: float
    """Gateway heartbeat latency; ``nan``/``inf`` before the first heartbeat is acknowledged."""


def gather(engine: Engine, client: discord.Client, started: float) -> BotStatus:
    """The status of a bot serving ``engine``, started at ``started`` (``time.monotonic()``)."""
    return BotStatus(
        variants=tuple(VariantStatus.of(engine.variant(name)) for name in engine.names),
        default=engine.variant().name,
        uptime_s=time.monotonic() - started,
        version=bot.__version__,
        guilds=len(client.guilds),
        latency_s=client.latency,
    )


def duration_text(seconds: float) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``12 min``, ``40 s``: the two largest units, enough for an uptime."""
    total = int(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def latency_text(seconds: float) -> str:
    """The gateway latency in milliseconds, or that it is not measured yet."""
    return f"{seconds * 1000:.0f} ms" if math.isfinite(seconds) else "not measured yet"


def variant_line(variant: VariantStatus, *, default: bool) -> str:
    """``**qlora** (default): local, airoboros format, 2048 tokens, nf4 + LoRA``."""
    parts = [variant.backend, f"{variant.prompt_format} format", f"{variant.context_length} tokens"]
    weights = " + ".join(w for w, on in (("nf4", variant.quantized), ("LoRA", variant.adapter)) if on)
    if weights:
        parts.append(weights)
    return f"**{variant.name}**{' (default)' if default else ''}: {', '.join(parts)}"


def queue_line(variant: VariantStatus) -> str:
    """``**qlora**: 2 waiting, 8 running of 8``."""
    return f"**{variant.name}**: {variant.waiting} waiting, {variant.running} running of {variant.slots}"


def status_embed(status: BotStatus) -> discord.Embed:
    """The ``/status`` embed."""
    embed = discord.Embed(title="Bot status", colour=discord.Colour.blurple())
    embed.add_field(
        name="Models",
        value="\n".join(variant_line(v, default=v.name == status.default) for v in status.variants),
        inline=False,
    )
    embed.add_field(name="Queue", value="\n".join(queue_line(v) for v in status.variants), inline=False)
    embed.add_field(name="Uptime", value=duration_text(status.uptime_s))
    embed.add_field(name="Version", value=f"{status.version} (discord.py {discord.__version__})")
    embed.add_field(name="Servers", value=str(status.guilds))
    embed.add_field(name="Gateway latency", value=latency_text(status.latency_s))
    return embed


class Status(commands.Cog):
    """``/status``."""

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.engine = services.chat.engine
        self.started = time.monotonic()
        """When the bot set up its cogs: the start of its uptime."""

    @app_commands.command(name="status")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        """What the bot runs and how busy it is: models, queue, uptime, version."""
        embed = status_embed(gather(self.engine, self.bot, self.started))
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/status``."""
    await bot.add_cog(Status(bot, services))
