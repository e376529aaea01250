"""Riddles posted with a Guess button, and who solved them: the button works after a restart."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Riddles", "StoredRiddle"]

_COLUMNS = (
    "id, guild_id, channel_id, author_id, topic, question, answer, solved_by, solved_by_name, solved_at, created_at,"
    " explanation"
)


@dataclass(frozen=True, slots=True)
class StoredRiddle:
    """One riddle the bot posted; ``solved_by`` is None until someone guesses it."""

    id: int
    guild_id: int | None
    channel_id: int | None
    author_id: int
    topic: str | None
    question: str
    answer: str
    solved_by: int | None
    solved_by_name: str | None
    solved_at: float | None
    created_at: float
    explanation: str = ""
    """The model's reasoning after the answer, shown with it ('' when it gave none)."""

    @property
    def solved(self) -> bool:
        """Whether someone has solved it."""
        return self.solved_by is not None


def _riddle(row: sqlite3.Row | tuple[Any, ...]) -> StoredRiddle:
    return StoredRiddle(*row)


class Riddles:
    """The ``riddles`` table, through the store's connection and transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self,
        *,
        author_id: int,
        question: str,
        answer: str,
        explanation: str = "",
        topic: str | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> StoredRiddle:
        """Store a new, unsolved riddle asked for by ``author_id``; its id goes into the Guess button."""
        async with self._store._use("save the riddle", write=True) as db:
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO riddles (guild_id, channel_id, author_id, topic, question, answer, explanation,"
                    f" created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                    (guild_id, channel_id, author_id, topic, question, answer, explanation, time.time()),
                )
            )
        return _riddle(rows[0])

    async def get(self, riddle_id: int) -> StoredRiddle | None:
        """The riddle with this id, or None."""
        async with self._store._use("load the riddle") as db:
            rows = list(await db.execute_fetchall(f"SELECT {_COLUMNS} FROM riddles WHERE id = ?", (riddle_id,)))
        return _riddle(rows[0]) if rows else None

    async def solve(self, riddle_id: int, user_id: int, user_name: str) -> StoredRiddle | None:
        """Mark the riddle solved by ``user_id`` unless someone was first; returns it as it is now (None if gone).

        The check and the write are one statement, so of two right guesses at once only one wins.
        """
        async with self._store._use("record who solved the riddle", write=True) as db:
            await db.execute(
                "UPDATE riddles SET solved_by = ?, solved_by_name = ?, solved_at = ?"
                " WHERE id = ? AND solved_by IS NULL",
                (user_id, user_name, time.time(), riddle_id),
            )
            rows = list(await db.execute_fetchall(f"SELECT {_COLUMNS} FROM riddles WHERE id = ?", (riddle_id,)))
        return _riddle(rows[0]) if rows else None
