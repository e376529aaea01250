"""`Votes`: comparisons of model variants (`/compare`) and the votes people cast on them.

A comparison keeps the variants in the order they were shown (the first is "A", the second "B") and the sampling
seed every variant was given, so an answer can be reproduced. Each person votes at most once on a comparison.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Comparison", "VoteChoice", "VoteCount", "VoteOutcome", "Votes"]


class VoteChoice(enum.StrEnum):
    """What a vote says: the first variant shown is better, the second is, or neither."""

    A = "a"
    B = "b"
    TIE = "tie"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One run of `/compare`: the variants in the order shown, and the seed they all got."""

    id: int
    variants: tuple[str, ...]
    seed: int
    blind: bool
    author_id: int | None
    """Who ran it (None once they asked the bot to forget them)."""
    guild_id: int | None
    channel_id: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What casting a vote did: ``recorded`` is False when the person had voted already (``choice`` is their vote).

    ``first`` is True for the first vote on the comparison (a blind comparison is revealed then).
    """

    comparison: Comparison
    choice: VoteChoice
    recorded: bool
    first: bool


@dataclass(frozen=True, slots=True)
class VoteCount:
    """How many votes said ``choice`` on comparisons that showed ``first`` as A and ``second`` as B."""

    first: str
    second: str
    choice: VoteChoice
    count: int


_COMPARISON_COLUMNS = "id, seed, blind, author_id, guild_id, channel_id, created_at"


class Votes:
    """The comparisons and votes in a :class:`Store` (``store.votes``)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add_comparison(
        self,
        variants: Sequence[str],
        *,
        seed: int,
        blind: bool,
        author_id: int,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> Comparison:
        """Record a comparison of ``variants`` (in the order they are shown)."""
        if len(variants) < 2:
            raise ValueError(f"a comparison needs at least two variants, got {list(variants)}")
        created_at = time.time()
        async with self._store._use("save the comparison", write=True) as db:
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO comparisons (seed, blind, author_id, guild_id, channel_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (seed, int(blind), author_id, guild_id, channel_id, created_at),
                )
            )
            comparison_id = int(rows[0][0])
            await db.executemany(
                "INSERT INTO comparison_variants (comparison_id, position, variant) VALUES (?, ?, ?)",
                [(comparison_id, position, name) for position, name in enumerate(variants)],
            )
        return Comparison(comparison_id, tuple(variants), seed, blind, author_id, guild_id, channel_id, created_at)

    async def comparison(self, comparison_id: int) -> Comparison | None:
        """The comparison with this id, or None."""
        async with self._store._use("load the comparison") as db:
            return await _load(db, comparison_id)

    async def vote(self, comparison_id: int, voter_id: int, choice: VoteChoice) -> VoteOutcome | None:
        """Cast ``voter_id``'s vote; a second vote by the same person changes nothing. None if there is no such
        comparison, or it did not compare exactly two variants."""
        async with self._store._use("save your vote", write=True) as db:
            comparison = await _load(db, comparison_id)
            if comparison is None or len(comparison.variants) != 2:
                return None
            rows = list(
                await db.execute_fetchall("SELECT COUNT(*) FROM votes WHERE comparison_id = ?", (comparison_id,))
            )
            before = int(rows[0][0])
            # ON CONFLICT DO NOTHING rather than check-then-insert: one vote per person, even for a double click.
            inserted = list(
                await db.execute_fetchall(
                    "INSERT INTO votes (comparison_id, voter_id, choice, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (comparison_id, voter_id) DO NOTHING RETURNING choice",
                    (comparison_id, voter_id, VoteChoice(choice).value, time.time()),
                )
            )
            if inserted:
                return VoteOutcome(comparison, VoteChoice(choice), recorded=True, first=before == 0)
            rows = list(
                await db.execute_fetchall(
                    "SELECT choice FROM votes WHERE comparison_id = ? AND voter_id = ?", (comparison_id, voter_id)
                )
            )
        return VoteOutcome(comparison, VoteChoice(rows[0][0]), recorded=False, first=False)

    async def counts(self) -> list[VoteCount]:
        """Every vote, counted per (first variant, second variant, choice)."""
        async with self._store._use("count the votes") as db:
            rows = await db.execute_fetchall(
                "SELECT a.variant, b.variant, v.choice, COUNT(*) FROM votes v"
                " JOIN comparison_variants a ON a.comparison_id = v.comparison_id AND a.position = 0"
                " JOIN comparison_variants b ON b.comparison_id = v.comparison_id AND b.position = 1"
                " GROUP BY a.variant, b.variant, v.choice ORDER BY a.variant, b.variant, v.choice"
            )
        return [VoteCount(str(first), str(second), VoteChoice(choice), int(n)) for first, second, choice, n in rows]

    async def forget_voter(self, voter_id: int) -> int:
        """Delete every vote ``voter_id`` cast and their name on the comparisons they ran (``/forget-me``).

        The comparisons themselves stay (they hold no text of theirs), so other people's votes are kept.
        Returns how many votes went.
        """
        async with self._store._use("delete your votes", write=True) as db:
            async with db.execute("DELETE FROM votes WHERE voter_id = ?", (voter_id,)) as cursor:
                deleted = cursor.rowcount
            await db.execute("UPDATE comparisons SET author_id = NULL WHERE author_id = ?", (voter_id,))
        return deleted


async def _load(db: aiosqlite.Connection, comparison_id: int) -> Comparison | None:
    rows = list(
        await db.execute_fetchall(f"SELECT {_COMPARISON_COLUMNS} FROM comparisons WHERE id = ?", (comparison_id,))
    )
    if not rows:
        return None
    id_, seed, blind, author_id, guild_id, channel_id, created_at = rows[0]
    names = await db.execute_fetchall(
        "SELECT variant FROM comparison_variants WHERE comparison_id = ? ORDER BY position", (comparison_id,)
    )
    variants = tuple(str(row[0]) for row in names)
    return Comparison(id_, variants, seed, bool(blind), author_id, guild_id, channel_id, created_at)
