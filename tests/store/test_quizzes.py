"""The quiz tables: quizzes, one answer per person, the reveal, the per-guild scoreboard."""

from __future__ import annotations

import time
from pathlib import Path

from bot.store import AnswerOutcome, Quiz, Store

OPTIONS = ("Mercury", "Venus", "Pluto", "Jupiter")


async def new_quiz(store: Store, *, guild_id: int = 10, seconds: float = 60, answer: str = "C") -> Quiz:
    return await store.quizzes.create(
        guild_id=guild_id,
        channel_id=20,
        author_id=1,
        topic="space",
        question="Which one is in the Kuiper Belt?",
        options=OPTIONS,
        answer=answer,
        seconds=seconds,
    )


async def test_a_quiz_reads_back_as_stored(store: Store, db_path: Path) -> None:
    """create returns the stored quiz; it reads back the same after reopening, with its message id."""
    before = time.time()
    quiz = await new_quiz(store, seconds=30)
    assert (quiz.question, quiz.options, quiz.answer, quiz.topic) == (
        "Which one is in the Kuiper Belt?",
        OPTIONS,
        "C",
        "space",
    )
    assert before <= quiz.created_at and quiz.ends_at == quiz.created_at + 30
    assert (quiz.message_id, quiz.revealed_at) == (None, None)
    await store.quizzes.set_message(quiz.id, 555)
    await store.close()
    async with await Store.open(db_path) as reopened:
        again = await reopened.quizzes.get(quiz.id)
    assert again is not None
    assert again.message_id == 555
    assert again.option("C") == "Pluto"


async def test_the_first_answer_counts_and_a_second_is_refused(store: Store) -> None:
    """A person's second press leaves their first answer and says which it was."""
    quiz = await new_quiz(store)
    first = await store.quizzes.answer(quiz.id, 7, "B")
    second = await store.quizzes.answer(quiz.id, 7, "C")
    assert (first.outcome, first.letter) == (AnswerOutcome.RECORDED, "B")
    assert (second.outcome, second.letter) == (AnswerOutcome.ALREADY, "B")
    assert [(a.user_id, a.letter) for a in await store.quizzes.answers(quiz.id)] == [(7, "B")]


async def test_answers_after_the_time_or_the_reveal_are_refused(store: Store) -> None:
    """Once time is up an answer is late; once revealed it is refused as over; neither is stored."""
    over = await new_quiz(store, seconds=0)
    assert (await store.quizzes.answer(over.id, 7, "A")).outcome is AnswerOutcome.LATE
    revealed = await new_quiz(store)
    assert await store.quizzes.mark_revealed(revealed.id)
    assert (await store.quizzes.answer(revealed.id, 7, "A")).outcome is AnswerOutcome.REVEALED
    assert await store.quizzes.answers(over.id) == await store.quizzes.answers(revealed.id) == []


async def test_an_unknown_quiz_is_said_to_be_unknown(store: Store) -> None:
    """A press on a quiz that is not stored (deleted) is answered as unknown."""
    quiz = await new_quiz(store)
    await store.quizzes.answer(quiz.id, 7, "A")
    await store.quizzes.delete(quiz.id)
    assert (await store.quizzes.answer(quiz.id, 8, "A")).outcome is AnswerOutcome.UNKNOWN
    assert await store.quizzes.answers(quiz.id) == []


async def test_pending_lists_unrevealed_quizzes_soonest_first(store: Store) -> None:
    """Quizzes not revealed yet come back ordered by end time; revealing one takes it off, once."""
    later = await new_quiz(store, seconds=120)
    sooner = await new_quiz(store, seconds=10)
    done = await new_quiz(store, seconds=5)
    assert await store.quizzes.mark_revealed(done.id)
    assert not await store.quizzes.mark_revealed(done.id)
    assert [q.id for q in await store.quizzes.pending()] == [sooner.id, later.id]


async def test_scoreboard_counts_revealed_quizzes_of_the_guild(store: Store) -> None:
    """Right answers rank first, then fewer tries; other guilds and unrevealed quizzes do not count."""
    first, second, running = await new_quiz(store), await new_quiz(store, answer="A"), await new_quiz(store)
    elsewhere = await new_quiz(store, guild_id=99)
    for quiz, answers in (
        (first, {1: "C", 2: "C", 3: "A"}),
        (second, {1: "A", 2: "B", 4: "A"}),
        (running, {3: "C", 4: "C"}),
        (elsewhere, {3: "C"}),
    ):
        for user, letter in answers.items():
            await store.quizzes.answer(quiz.id, user, letter)
    for quiz in (first, second, elsewhere):
        await store.quizzes.mark_revealed(quiz.id)
    board = await store.quizzes.scoreboard(10)
    assert [(s.user_id, s.correct, s.answered) for s in board] == [(1, 2, 2), (4, 1, 1), (2, 1, 2), (3, 0, 1)]
    assert [s.user_id for s in await store.quizzes.scoreboard(10, limit=2)] == [1, 4]
    assert await store.quizzes.scoreboard(12345) == []


async def test_forget_user_removes_their_answers(store: Store) -> None:
    """A person's answers go with /forget-me; others' stay."""
    quiz = await new_quiz(store)
    await store.quizzes.answer(quiz.id, 7, "A")
    await store.quizzes.answer(quiz.id, 8, "C")
    assert await store.quizzes.forget_user(7) == 1
    assert [a.user_id for a in await store.quizzes.answers(quiz.id)] == [8]
