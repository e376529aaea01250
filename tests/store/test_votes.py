"""Comparisons and votes: the variants in the order shown, one vote per person, counts per pair."""

from pathlib import Path

import pytest

from bot.store import Store, VoteChoice, VoteCount
from bot.store import _migrations as migrations

from ._raw import query


async def test_a_comparison_keeps_its_variant_order_and_seed(store: Store) -> None:
    """What was shown as A and B, and the seed, come back as stored."""
    saved = await store.votes.add_comparison(["full", "qlora"], seed=1234, blind=True, author_id=1, guild_id=9)
    loaded = await store.votes.comparison(saved.id)
    assert loaded == saved
    assert (loaded.variants, loaded.seed, loaded.blind, loaded.guild_id) == (("full", "qlora"), 1234, True, 9)
    assert await store.votes.comparison(saved.id + 1) is None


async def test_a_comparison_needs_two_variants(store: Store) -> None:
    """A comparison of one variant is a programming error, refused before it is stored."""
    with pytest.raises(ValueError, match="at least two"):
        await store.votes.add_comparison(["qlora"], seed=1, blind=False, author_id=1)


async def test_the_first_vote_is_recorded_and_marked_first(store: Store) -> None:
    """The first vote on a comparison is stored and says it was the first."""
    comparison = await store.votes.add_comparison(["qlora", "full"], seed=1, blind=True, author_id=1)
    first = await store.votes.vote(comparison.id, 10, VoteChoice.A)
    second = await store.votes.vote(comparison.id, 11, VoteChoice.TIE)
    assert first is not None and second is not None
    assert (first.recorded, first.first, first.choice) == (True, True, VoteChoice.A)
    assert (second.recorded, second.first, second.choice) == (True, False, VoteChoice.TIE)
    assert first.comparison == comparison


async def test_a_second_vote_by_the_same_person_changes_nothing(store: Store) -> None:
    """Voting again is refused and reports the vote that stands."""
    comparison = await store.votes.add_comparison(["qlora", "full"], seed=1, blind=False, author_id=1)
    await store.votes.vote(comparison.id, 10, VoteChoice.B)
    again = await store.votes.vote(comparison.id, 10, VoteChoice.A)
    assert again is not None
    assert (again.recorded, again.first, again.choice) == (False, False, VoteChoice.B)
    assert await store.votes.counts() == [VoteCount("qlora", "full", VoteChoice.B, 1)]


async def test_votes_on_unknown_or_three_way_comparisons_are_refused(store: Store) -> None:
    """Only a comparison of exactly two variants takes votes."""
    three = await store.votes.add_comparison(["a", "b", "c"], seed=1, blind=False, author_id=1)
    assert await store.votes.vote(three.id, 10, VoteChoice.A) is None
    assert await store.votes.vote(three.id + 100, 10, VoteChoice.A) is None
    assert await store.votes.counts() == []


async def test_counts_group_votes_by_pair_as_shown(store: Store) -> None:
    """Votes are counted per (A, B, choice), keeping the order each comparison showed."""
    one = await store.votes.add_comparison(["qlora", "full"], seed=1, blind=True, author_id=1)
    two = await store.votes.add_comparison(["full", "qlora"], seed=2, blind=True, author_id=1)
    for voter, choice in ((10, VoteChoice.A), (11, VoteChoice.A), (12, VoteChoice.TIE)):
        await store.votes.vote(one.id, voter, choice)
    await store.votes.vote(two.id, 10, VoteChoice.B)
    assert await store.votes.counts() == [
        VoteCount("full", "qlora", VoteChoice.B, 1),
        VoteCount("qlora", "full", VoteChoice.A, 2),
        VoteCount("qlora", "full", VoteChoice.TIE, 1),
    ]


async def test_forgetting_a_voter_removes_their_votes_and_name_only(store: Store, db_path: Path) -> None:
    """/forget-me takes a person's votes and their id off their comparisons; other votes stay."""
    mine = await store.votes.add_comparison(["qlora", "full"], seed=1, blind=False, author_id=10)
    await store.votes.vote(mine.id, 10, VoteChoice.A)
    await store.votes.vote(mine.id, 11, VoteChoice.B)
    assert await store.votes.forget_voter(10) == 1
    assert await store.votes.counts() == [VoteCount("qlora", "full", VoteChoice.B, 1)]
    kept = await store.votes.comparison(mine.id)
    assert kept is not None and kept.author_id is None
    assert query(db_path, "SELECT COUNT(*) FROM votes WHERE voter_id = 10") == [(0,)]


async def test_upgrade_adds_the_tables_and_keeps_conversations(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before /compare gains its tables through the appended migration."""
    index = migrations.MIGRATIONS.index(migrations._COMPARISONS_AND_VOTES)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:index])
    async with await Store.open(db_path) as old:
        await old.get_or_create_conversation("thread:1")
    monkeypatch.undo()
    async with await Store.open(db_path) as store:
        assert await store.get_conversation("thread:1") is not None
        comparison = await store.votes.add_comparison(["qlora", "full"], seed=1, blind=False, author_id=1)
        assert await store.votes.vote(comparison.id, 2, VoteChoice.TIE) is not None
