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
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import discord
from asyncio_throttle import Throttler
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author, ChatService, Reply
from bot.core.compare import PairTally, compare_messages, label, new_seed, pick_variants, shown_order, tally
from bot.errors import BotError, GenerationError
from bot.frontends.discord.access import AccessChecked
from bot.frontends.discord.feedback import (
    NO_MENTIONS,
    DiscordRefusal,
    refusal,
    report,
    require,
    require_open_thread,
)
from bot.frontends.discord.rendering import RESTART_MARK, STOPPED_MARK, ChannelThrottles, queued_text
from bot.store import Comparison, VoteChoice

_log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 4096
"""Discord's limit on one embed's description."""
EMBEDS_LIMIT = 6000
"""Discord's limit on all the text of a message's embeds together."""
RESERVED_PER_EMBED = 200
"""Characters kept for each embed's title and footer when sharing :data:`EMBEDS_LIMIT` among descriptions."""
CONTENT_LIMIT = 2000
WRITING = "writing…"
"""The end of the footer of an answer still being written."""
SHUTDOWN_GRACE = 10.0
"""Seconds a shutdown waits for the comparisons in flight to show their final state."""
_COLOURS = (discord.Colour.blurple(), discord.Colour.green(), discord.Colour.orange(), discord.Colour.purple())


def cut(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` within ``limit`` characters: cut at the end with "…" when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def description_limit(count: int) -> int:
    """How long each of ``count`` embeds' descriptions may be so that the message stays within Discord's limits."""
    return min(DESCRIPTION_LIMIT, (EMBEDS_LIMIT - count * RESERVED_PER_EMBED) // count)


def footer_text(tokens: int, elapsed: float, first_token: float | None) -> str:
    """``42 tokens · 12.3 tokens/s · first token 0.41 s``: what one answer cost."""
    parts = [f"{tokens} token{'' if tokens == 1 else 's'}"]
    if tokens and elapsed > 0:
        parts.append(f"{tokens / elapsed:.1f} tokens/s")
    parts.append("first token …" if first_token is None else f"first token {first_token:.2f} s")
    return " · ".join(parts)


def shown_title(comparison: Comparison, position: int, *, revealed: bool) -> str:
    """An embed's title: the variant's name; when blind, its letter (and the name once revealed)."""
    name = comparison.variants[position]
    if not comparison.blind:
        return name
    return f"{label(position)} · {name}" if revealed else label(position)


def choice_text(comparison: Comparison, choice: VoteChoice) -> str:
    """What a vote says, in the words of the buttons."""
    if choice == VoteChoice.TIE:
        return "Tie"
    position = 0 if choice == VoteChoice.A else 1
    who = label(position) if comparison.blind else comparison.variants[position]
    return f"{who} is better"


def revealed_text(comparison: Comparison) -> str:
    """``A was `full`, B was `qlora`.``"""
    return ", ".join(f"{label(i)} was `{name}`" for i, name in enumerate(comparison.variants)) + "."


class VoteButton(
    AccessChecked,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"airoboros:vote:(?P<comparison>\d+):(?P<choice>a|b|tie)",
):
    """One vote on a comparison (persistent: the comparison and the choice are in the ``custom_id``)."""

    def __init__(self, comparison_id: int, choice: VoteChoice, label: str = "") -> None:
        style = discord.ButtonStyle.secondary if choice == VoteChoice.TIE else discord.ButtonStyle.primary
        super().__init__(
            discord.ui.Button(
                label=label or choice.value, style=style, custom_id=f"airoboros:vote:{comparison_id}:{choice.value}"
            )
        )
        self.comparison_id = comparison_id
        self.choice = choice

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VoteButton:
        label = getattr(item, "label", None) or ""
        return cls(int(match["comparison"]), VoteChoice(match["choice"]), label)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("compare_vote", interaction, self.comparison_id, self.choice)


def vote_view(comparison: Comparison) -> discord.ui.View:
    """ "A is better", "B is better" (the names when not blind) and "Tie"."""
    view = discord.ui.View(timeout=None)
    for choice in VoteChoice:
        view.add_item(VoteButton(comparison.id, choice, choice_text(comparison, choice)))
    return view


def results_embed(tallies: Sequence[PairTally]) -> discord.Embed:
    """The tally per pair of variants: wins, ties and win rates."""
    embed = discord.Embed(title="Compare: votes so far", colour=discord.Colour.blurple())
    if not tallies:
        embed.description = "No votes yet. Run `/compare run` with two variants and vote on the answers."
        return embed
    for pair in tallies[:25]:  # Discord's limit on fields
        a, b = pair.first, pair.second
        votes = f"{pair.total} vote{'' if pair.total == 1 else 's'}"
        embed.add_field(
            name=f"{a} vs {b}",
            value=(
                f"**{a}** {pair.first_wins} · **{b}** {pair.second_wins} · ties {pair.ties} ({votes})\n"
                f"win rate: {a} {pair.win_rate(a):.0%} · {b} {pair.win_rate(b):.0%}"
            ),
            inline=False,
        )
    embed.set_footer(text="Win rate: wins plus half the ties, over all votes on the pair.")
    return embed


@dataclass(slots=True)
class _Panel:
    """One variant's answer as it streams."""

    reply: Reply
    started: float = 0.0
    first_at: float | None = None
    ended_at: float | None = None
    error: BotError | None = None

    def footer(self) -> str:
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        first = None if self.first_at is None else self.first_at - self.started
        return footer_text(self.reply.completion_tokens, end - self.started if self.started else 0.0, first)


class _Run:
    """One comparison on screen: its answers stream concurrently into one message, edited at most once a second."""

    def __init__(
        self, comparison: Comparison, replies: Sequence[Reply], message_throttle: Throttler, channel_throttle: Throttler
    ) -> None:
        self.comparison = comparison
        self.panels = [_Panel(reply) for reply in replies]
        self.message: discord.Message | None = None
        self.stopped: str | None = None
        self.gone = False
        self._message_throttle = message_throttle
        self._channel_throttle = channel_throttle
        self._dirty = asyncio.Event()
        self._consumers: list[asyncio.Task[None]] = []
        self._closing = False
        self._shown: list[Any] | None = None

    def embeds(self, *, streaming: bool) -> list[discord.Embed]:
        limit = description_limit(len(self.panels))
        embeds = []
        for position, panel in enumerate(self.panels):
            embed = discord.Embed(
                title=shown_title(self.comparison, position, revealed=False),
                description=cut(self._description(panel, streaming=streaming), limit),
                colour=_COLOURS[position % len(_COLOURS)],
            )
            footer = panel.footer()
            embed.set_footer(text=f"{footer} · {WRITING}" if streaming and panel.ended_at is None else footer)
            embeds.append(embed)
        return embeds

    def _description(self, panel: _Panel, *, streaming: bool) -> str:
        text = panel.reply.text.strip()
        if streaming:
            return text or queued_text(panel.reply.position)
        if panel.error is not None:
            return f"{text}\n\n⚠️ {panel.error}" if text else f"⚠️ {panel.error}"
        if self.stopped is not None and panel.reply.finish_reason is None:
            return f"{text} {self.stopped}" if text else self.stopped
        return text or "*(no answer)*"

    @property
    def votable(self) -> bool:
        """Votes are offered on two answers that both ended on their own."""
        return len(self.panels) == 2 and self.stopped is None and all(p.error is None for p in self.panels)

    def stop(self, mark: str = STOPPED_MARK) -> None:
        """Stop every answer; the text so far stays, marked."""
        self.stopped = mark
        for consumer in self._consumers:
            consumer.cancel()

    async def stream(self, message: discord.Message) -> None:
        """Stream every answer into ``message`` until all have ended (or :meth:`stop`), then the final edit."""
        self.message = message
        self._consumers = [asyncio.create_task(self._consume(panel)) for panel in self.panels]
        pump = asyncio.create_task(self._pump())
        try:
            await asyncio.gather(*self._consumers, return_exceptions=True)
        finally:
            for consumer in self._consumers:
                consumer.cancel()
            self._closing = True
            self._dirty.set()
            await pump
        if self.gone:
            return
        view = vote_view(self.comparison) if self.votable else None
        try:
            await self._edit(self.embeds(streaming=False), view=view, force=True)
        except discord.HTTPException:
            _log.warning("Could not show the end of a comparison", exc_info=True)

    async def _consume(self, panel: _Panel) -> None:
        panel.started = time.monotonic()
        try:
            async for _ in panel.reply.deltas():
                if panel.first_at is None:
                    panel.first_at = time.monotonic()
                self._dirty.set()
        except GenerationError as error:
            panel.error = error
        except Exception:
            _log.exception("An answer of a comparison failed")
            panel.error = GenerationError("Something went wrong on my side with this answer.")
        finally:
            panel.ended_at = time.monotonic()
            self._dirty.set()

    async def _pump(self) -> None:
        """Edit the message whenever an answer moved, within the throttles."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing or all(panel.ended_at is not None for panel in self.panels):
                return  # the final edit follows: no footer without "writing…" before it
            try:
                await self._edit(self.embeds(streaming=True))
            except discord.NotFound:
                _log.info("A comparison's message is gone; stopping it")
                self.gone = True
                self.stop()
                return
            except discord.HTTPException:
                _log.warning("An edit of a comparison failed; the next one will carry the text", exc_info=True)

    async def _edit(
        self, embeds: list[discord.Embed], *, view: discord.ui.View | None = None, force: bool = False
    ) -> None:
        shown: list[Any] = [embed.to_dict() for embed in embeds]
        if shown == self._shown and not force:
            return
        assert self.message is not None
        async with self._message_throttle, self._channel_throttle:
            await self.message.edit(embeds=embeds, view=view, allowed_mentions=NO_MENTIONS)
        self._shown = shown


class Compare(commands.Cog):
    """Compare model variants on one prompt, and vote on their answers."""

    compare = app_commands.Group(name="compare", description="Run one prompt through several model variants")

    def __init__(self, chat: ChatService, throttles: ChannelThrottles) -> None:
        self.chat = chat
        self.throttles = throttles
        self._running: set[_Run] = set()
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
        chosen = pick_variants(requested, self.chat.engine.names, blind=blind)
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
            run = _Run(
                comparison,
                replies,
                Throttler(rate_limit=1, period=self.throttles.message_period),
                self.throttles(channel_id),
            )
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
