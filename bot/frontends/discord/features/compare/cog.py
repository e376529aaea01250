"""``/compare``: one prompt through several model variants, side by side in one message, and votes on them.

``/compare run`` posts one message with an embed per variant (title: the variant's name, or
A/B when blind; description: its answer so far; footer: tokens, tokens/s, time to first
token) and streams every answer into it at once, at most one edit a second. With exactly
two variants the message gets vote buttons (Chatbot Arena style): one vote per person,
and in a blind comparison the first vote reveals which variant was which, to everyone.
``/compare results`` shows the tally and the win rate of each pair of variants.

The variants, seed and tally come from :mod:`bot.core.compare`; comparisons and votes are
kept by ``store.votes``. Every interaction is acknowledged before anything slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Any

import discord
from asyncio_throttle import Throttler
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author
from bot.core.compare import compare_messages, new_seed, pick_variants, shown_order, tally
from bot.errors import BotError
from bot.frontends.discord.features.compare.panel import ComparisonRun, cut
from bot.frontends.discord.features.compare.votes import (
    choice_text,
    results_embed,
    revealed_text,
    shown_title,
)
from bot.frontends.discord.services import Services
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
    DiscordRefusal,
    refusal,
    report,
    require,
    require_open_thread,
)
from bot.frontends.discord.ui.rendering import RESTART_MARK
from bot.store import Comparison, VoteChoice

_log = logging.getLogger(__name__)

CONTENT_LIMIT = 2000
SHUTDOWN_GRACE = 10.0
"""Seconds a shutdown waits for the comparisons in flight to show their final state."""


class Compare(commands.Cog):
    """Compare model variants on one prompt, and vote on their answers."""

    compare = app_commands.Group(name="compare", description="Run one prompt through several model variants")

    def __init__(self, services: Services) -> None:
        self.chat = services.chat
        self.throttles = services.replies.throttles
        self._running: set[ComparisonRun] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def cog_unload(self) -> None:
        """On shutdown (before Discord closes): stop each comparison in flight; each shows what it had, marked."""
        for run in list(self._running):
            run.stop(RESTART_MARK)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)

    @compare.command(name="run")
    @app_commands.describe(
        prompt="What every variant answers",
        variants="Comma-separated variant names (default: every loaded variant)",
        blind="Hide which variant is which (shown as A and B) until someone votes",
    )
    async def run_command(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 4000],
        variants: app_commands.Range[str, 1, 200] | None = None,
        blind: bool = False,
    ) -> None:
        """Answer one prompt with several model variants, side by side (same seed, same sampling)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._compare(interaction, prompt, variants, blind)
        except BotError as error:
            await report(interaction, error, returned=prompt)  # the prompt comes back: nothing typed is lost
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _compare(
        self, interaction: discord.Interaction[Any], prompt: str, requested: str | None, blind: bool
    ) -> None:
        at_once = self.chat.engine.config.inference.max_queued_per_user
        chosen = pick_variants(requested, self.chat.engine.names, blind=blind, at_once=at_once)
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise DiscordRefusal("Use /compare in a text channel, a thread or a DM.")
        _check_permissions(interaction, channel)
        author = Author(interaction.user.id, interaction.user.display_name)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        seed = new_seed()
        order = shown_order(chosen, blind=blind)
        async with contextlib.AsyncExitStack() as stack:
            # Admission first, for every variant: a full queue or a too-long prompt refuses the whole comparison.
            replies = [
                await stack.enter_async_context(
                    self.chat.generate(
                        author, compare_messages(prompt), dataclasses.replace(options, seed=seed, variant=name)
                    )
                )
                for name in order
            ]
            comparison = await self.chat.store.votes.add_comparison(
                order,
                seed=seed,
                blind=blind,
                author_id=author.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
            )
            channel_id = getattr(channel, "id", 0)
            run = ComparisonRun(comparison, replies, Throttler(rate_limit=1, period=1.0), self.throttles(channel_id))
            try:
                async with self.throttles(channel_id):
                    message = await channel.send(
                        _echo(author, prompt, seed), embeds=run.embeds(streaming=True), allowed_mentions=NO_MENTIONS
                    )
            except discord.HTTPException as error:
                raise refusal(error, "post the comparison") from error
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()  # the comparison itself is the answer
            self._running.add(run)
            try:
                await run.stream(message)
            finally:
                self._running.discard(run)

    @compare.command(name="results")
    async def results_command(self, interaction: discord.Interaction[Any]) -> None:
        """The votes so far: wins, ties and win rate for each pair of variants."""
        await interaction.response.defer(thinking=True)
        tallies = tally(await self.chat.store.votes.counts())
        await interaction.edit_original_response(embed=results_embed(tallies))

    @commands.Cog.listener()
    async def on_compare_vote(
        self, interaction: discord.Interaction[Any], comparison_id: int, choice: VoteChoice
    ) -> None:
        """A vote button was pressed: one vote per person; the first vote reveals a blind comparison."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            outcome = await self.chat.store.votes.vote(comparison_id, interaction.user.id, choice)
            if outcome is None:
                raise DiscordRefusal("This comparison is no longer available.")
        except BotError as error:
            await report(interaction, error)
            return
        comparison = outcome.comparison
        said = choice_text(comparison, outcome.choice)
        if not outcome.recorded:
            await interaction.edit_original_response(
                content=f"You already voted on this comparison ({said}); a vote can't be changed."
            )
            return
        text = f"Thanks, your vote is in: {said}."
        if comparison.blind:
            text += f" {revealed_text(comparison)}"
            if outcome.first and interaction.message is not None:
                await self._reveal(interaction.message, comparison)
        await interaction.edit_original_response(content=text)

    async def _reveal(self, message: discord.Message, comparison: Comparison) -> None:
        """Put the variants' names on a blind comparison's answers, for everyone."""
        embeds = [embed.copy() for embed in message.embeds]
        for position, embed in enumerate(embeds):
            embed.title = shown_title(comparison, position, revealed=True)
        try:
            async with self.throttles(message.channel.id):
                await message.edit(embeds=embeds, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            _log.warning("Could not reveal the variants of comparison %d", comparison.id, exc_info=True)


def _echo(author: Author, prompt: str, seed: int) -> str:
    """The message's text: who asked what, and the seed every variant got."""
    seed_line = f"\n-# same prompt, same sampling, seed {seed}"
    head = f"**{author.name}:** "
    return head + cut(prompt, CONTENT_LIMIT - len(head) - len(seed_line)) + seed_line


def _check_permissions(interaction: discord.Interaction[Any], channel: object) -> None:
    """The bot must be able to post embeds where the comparison was asked for."""
    if interaction.guild_id is None:
        return  # a DM: no permissions apply
    permissions = interaction.app_permissions
    in_thread = isinstance(channel, discord.Thread)
    send = "send_messages_in_threads" if in_thread else "send_messages"
    require(permissions, ("view_channel", send, "embed_links"))
    require_open_thread(channel, permissions)
