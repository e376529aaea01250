"""/forget-me's summary counts the quizzes a person asked for, as forgetting then deletes them."""

from bot.store import Store

QUIZ_AUTHOR = 1
"""The person who is forgotten."""


async def _quiz(store: Store, author_id: int, *answerers: int) -> None:
    quiz = await store.quizzes.create(
        guild_id=9,
        channel_id=5,
        author_id=author_id,
        topic="cats",
        question="q?",
        options="abcd",
        answer="A",
        seconds=60,
    )
    for user_id in answerers:
        await store.quizzes.answer(quiz.id, user_id, "A")


async def test_summary_counts_the_quizzes_they_started_as_forget_deletes_them(store: Store) -> None:
    """A quiz they asked for (answered by them and by another) counts once; their answer elsewhere counts as one."""
    await _quiz(store, QUIZ_AUTHOR, QUIZ_AUTHOR, 3)
    await _quiz(store, 2, QUIZ_AUTHOR, 3)
    summary = await store.privacy.summary(QUIZ_AUTHOR)
    assert (summary.quizzes, summary.quiz_answers) == (1, 1)
    assert await store.privacy.forget(QUIZ_AUTHOR) == summary


async def test_a_quiz_they_started_alone_is_something_to_delete(store: Store) -> None:
    """A quiz nobody answered yet still makes the summary non-empty."""
    await _quiz(store, QUIZ_AUTHOR)
    assert not (await store.privacy.summary(QUIZ_AUTHOR)).empty
