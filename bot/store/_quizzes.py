"""`Quizzes`: quiz questions, who answered what, and each guild's scoreboard.

A quiz is stored when it is posted and marked revealed once its answer is shown, so a bot
that was down when a quiz's time ran out reveals it at the next start (:meth:`Quizzes.pending`).
The scoreboard is computed from the answers to revealed quizzes: there is no second copy of
the scores to drift out of step.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["AnswerOutcome", "Answered", "Quiz", "QuizAnswer", "QuizScore", "Quizzes"]

_LETTERS = ("A", "B", "C", "D")
_QUIZ_COLUMNS = (
    "id, guild_id, channel_id, message_id, author_id, topic, question,"
    " option_a, option_b, option_c, option_d, answer, created_at, ends_at, revealed_at"
)


@dataclass(frozen=True, slots=True)
class Quiz:
    """One quiz question as posted; ``ends_at`` and ``revealed_at`` are Unix times."""

    id: int
    guild_id: int | None
    channel_id: int
    message_id: int | None
    author_id: int
    topic: str | None
    question: str
    options: tuple[str, str, str, str]
    answer: str
    created_at: float
    ends_at: float
    revealed_at: float | None

    def option(self, letter: str) -> str:
        """The text of option ``letter`` (``"A"`` to ``"D"``)."""
        return self.options[_LETTERS.index(letter)]


@dataclass(frozen=True, slots=True)
class QuizAnswer:
    """One person's answer to a quiz."""

    user_id: int
    letter: str
    answered_at: float


@dataclass(frozen=True, slots=True)
class QuizScore:
    """One line of a guild's scoreboard: right answers out of answers given, over revealed quizzes."""

    user_id: int
    correct: int
    answered: int


class AnswerOutcome(enum.StrEnum):
    """What became of a button press."""

    RECORDED = "recorded"
    ALREADY = "already"
    """The person had answered before; their first answer stands."""
    LATE = "late"
    """The time is up, the reveal is on its way."""
    REVEALED = "revealed"
    UNKNOWN = "unknown"
    """No such quiz (deleted, or its posting failed)."""


@dataclass(frozen=True, slots=True)
class Answered:
    """The result of :meth:`Quizzes.answer`: the outcome, the person's letter (new or earlier), the quiz."""

    outcome: AnswerOutcome
    letter: str | None
    quiz: Quiz | None


def _quiz_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Quiz:
    (id_, guild_id, channel_id, message_id, author_id, topic, question, a, b, c, d, answer, created, ends, revealed) = (
        row
    )
    return Quiz(
        id=id_,
        guild_id=guild_id,
        channel_id=channel_id,
        message_id=message_id,
        author_id=author_id,
        topic=topic,
        question=question,
        options=(a, b, c, d),
        answer=answer,
        created_at=created,
        ends_at=ends,
        revealed_at=revealed,
    )


class Quizzes:
    """The store's quiz tables; reach it as ``store.quizzes``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        *,
        guild_id: int | None,
        channel_id: int,
        author_id: int,
        topic: str | None,
        question: str,
        options: Sequence[str],
        answer: str,
        seconds: float,
    ) -> Quiz:
        """Store a new quiz whose answers close ``seconds`` from now."""
        if len(options) != len(_LETTERS):
            raise ValueError(f"a quiz has {len(_LETTERS)} options, got {len(options)}")
        now = time.time()
        async with self._store._use("save the quiz", write=True) as db:
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO quizzes (guild_id, channel_id, author_id, topic, question,"
                    " option_a, option_b, option_c, option_d, answer, created_at, ends_at)"
                    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_QUIZ_COLUMNS}",
                    (guild_id, channel_id, author_id, topic, question, *options, answer, now, now + seconds),
                )
            )
        return _quiz_from_row(rows[0])

    async def set_message(self, quiz_id: int, message_id: int) -> None:
        """Record the platform message that shows the quiz."""
        async with self._store._use("save the quiz", write=True) as db:
            await db.execute("UPDATE quizzes SET message_id = ? WHERE id = ?", (message_id, quiz_id))

    async def get(self, quiz_id: int) -> Quiz | None:
        """The quiz with this id, or None."""
        async with self._store._use("load the quiz") as db:
            rows = list(await db.execute_fetchall(f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE id = ?", (quiz_id,)))
        return _quiz_from_row(rows[0]) if rows else None

    async def delete(self, quiz_id: int) -> None:
        """Forget a quiz and its answers (one that could not be posted)."""
        async with self._store._use("delete the quiz", write=True) as db:
            await db.execute("DELETE FROM quizzes WHERE id = ?", (quiz_id,))

    async def answer(self, quiz_id: int, user_id: int, letter: str) -> Answered:
        """Record ``user_id``'s answer, unless they answered before, the time is up or the quiz was revealed."""
        if letter not in _LETTERS:
            raise ValueError(f"not an answer letter: {letter!r}")
        now = time.time()
        async with self._store._use("save your answer", write=True) as db:
            rows = list(await db.execute_fetchall(f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE id = ?", (quiz_id,)))
            if not rows:
                return Answered(AnswerOutcome.UNKNOWN, None, None)
            quiz = _quiz_from_row(rows[0])
            earlier = list(
                await db.execute_fetchall(
                    "SELECT letter FROM quiz_answers WHERE quiz_id = ? AND user_id = ?", (quiz_id, user_id)
                )
            )
            given = str(earlier[0][0]) if earlier else None
            if quiz.revealed_at is not None:
                return Answered(AnswerOutcome.REVEALED, given, quiz)
            if now >= quiz.ends_at:
                return Answered(AnswerOutcome.LATE, given, quiz)
            if given is not None:
                return Answered(AnswerOutcome.ALREADY, given, quiz)
            await db.execute(
                "INSERT INTO quiz_answers (quiz_id, user_id, letter, answered_at) VALUES (?, ?, ?, ?)",
                (quiz_id, user_id, letter, now),
            )
        return Answered(AnswerOutcome.RECORDED, letter, quiz)

    async def answers(self, quiz_id: int) -> list[QuizAnswer]:
        """Everyone's answers to a quiz, first answer first."""
        async with self._store._use("load the answers") as db:
            rows = await db.execute_fetchall(
                "SELECT user_id, letter, answered_at FROM quiz_answers WHERE quiz_id = ? ORDER BY answered_at, user_id",
                (quiz_id,),
            )
        return [QuizAnswer(int(user), str(letter), float(at)) for user, letter, at in rows]

    async def mark_revealed(self, quiz_id: int) -> bool:
        """Record that the quiz's answer is shown (its answers count from now on); False if it already was."""
        async with (
            self._store._use("save the quiz", write=True) as db,
            db.execute(
                "UPDATE quizzes SET revealed_at = ? WHERE id = ? AND revealed_at IS NULL", (time.time(), quiz_id)
            ) as cursor,
        ):
            return cursor.rowcount > 0

    async def pending(self) -> list[Quiz]:
        """Every quiz not revealed yet, the one that ends first first."""
        async with self._store._use("load the quizzes") as db:
            rows = await db.execute_fetchall(
                f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE revealed_at IS NULL ORDER BY ends_at, id"
            )
        return [_quiz_from_row(row) for row in rows]

    async def scoreboard(self, guild_id: int, *, limit: int = 10) -> list[QuizScore]:
        """The guild's best players over its revealed quizzes: most right answers, then fewest tries."""
        async with self._store._use("load the scoreboard") as db:
            rows = await db.execute_fetchall(
                "SELECT a.user_id, SUM(a.letter = q.answer) AS correct, COUNT(*) AS answered"
                " FROM quiz_answers a JOIN quizzes q ON q.id = a.quiz_id"
                " WHERE q.guild_id = ? AND q.revealed_at IS NOT NULL"
                " GROUP BY a.user_id ORDER BY correct DESC, answered ASC, MIN(a.answered_at) ASC LIMIT ?",
                (guild_id, limit),
            )
        return [QuizScore(int(user), int(correct), int(answered)) for user, correct, answered in rows]

    async def forget_user(self, user_id: int) -> int:
        """Delete every answer ``user_id`` gave (for ``/forget-me``); returns how many went."""
        async with (
            self._store._use("delete your quiz answers", write=True) as db,
            db.execute("DELETE FROM quiz_answers WHERE user_id = ?", (user_id,)) as cursor,
        ):
            return cursor.rowcount
