"""Riddles in the store: added unsolved, found by id after a reopen, solved once by the first right guess."""

from pathlib import Path

from bot.store import Store


async def test_a_riddle_is_stored_unsolved_and_survives_a_reopen(db_path: Path) -> None:
    """A new riddle comes back, as stored, from a reopened database."""
    async with await Store.open(db_path) as store:
        riddle = await store.riddles.add(
            author_id=1, question="What has a neck?", answer="A bottle", topic="glass", guild_id=5, channel_id=6
        )
    assert not riddle.solved
    async with await Store.open(db_path) as store:
        assert await store.riddles.get(riddle.id) == riddle
        assert await store.riddles.get(riddle.id + 1) is None


async def test_only_the_first_solver_is_recorded(store: Store) -> None:
    """The first solve wins; a later one leaves the riddle as the first left it."""
    riddle = await store.riddles.add(author_id=1, question="What has a neck?", answer="A bottle")
    first = await store.riddles.solve(riddle.id, 2, "Bob")
    assert first is not None and (first.solved_by, first.solved_by_name) == (2, "Bob")
    second = await store.riddles.solve(riddle.id, 3, "Carol")
    assert second == first
    assert await store.riddles.solve(riddle.id + 1, 3, "Carol") is None
