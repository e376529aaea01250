"""Votes on a two-variant comparison: the buttons, what a vote says, the results embed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import discord

from bot.core.compare import PairTally, label
from bot.frontends.discord.app.access import AccessChecked
from bot.store import Comparison, VoteChoice


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
