"""Sources: scoped storage, passage search by bm25, deletion with the index, ranking of unstored passages."""

from pathlib import Path

import pytest

from bot.store import Passage, SourceUsage, Store, StoredSource
from bot.store import _migrations as migrations
from bot.store._sources import match_query

from ._raw import query


async def add(store: Store, scope_id: int, title: str, passages: list[str], author_id: int = 1) -> StoredSource:
    return await store.sources.add(
        scope_id=scope_id,
        guild_id=9,
        title=title,
        url=None,
        author_id=author_id,
        author_name="Alice",
        text="\n\n".join(passages),
        passages=passages,
    )


async def test_sources_are_listed_by_scope_oldest_first(store: Store) -> None:
    """Only the sources of the channels asked for come back, in the order they were added."""
    first = await add(store, 100, "one", ["alpha"])
    await add(store, 200, "elsewhere", ["beta"])
    third = await add(store, 300, "thread", ["gamma"])
    found = await store.sources.in_scope([300, 100])
    assert [s.id for s in found] == [first.id, third.id]
    assert found[0].text == "alpha"
    assert found[0].size == len(b"alpha")
    assert [s.text for s in await store.sources.in_scope([100], with_text=False)] == [""]


async def test_search_ranks_matching_passages_in_scope_by_bm25(store: Store) -> None:
    """The passage about the question's words comes first; other scopes and non-matching passages never do."""
    fruit = await add(store, 100, "fruit", ["Bananas are yellow.", "Blueberries are now green, sadly green."])
    await add(store, 200, "other", ["Blueberries everywhere, green green green."])
    other = await add(store, 100, "cars", ["Cars have wheels.", "Some blueberries grow near roads."])
    hits = await store.sources.search([100], "What color are blueberries now? green?")
    assert hits[0] == Passage(fruit.id, 1, "Blueberries are now green, sadly green.")
    assert {(p.source_id, p.seq) for p in hits} == {(fruit.id, 1), (other.id, 1), (fruit.id, 0)}  # "are": bananas
    assert await store.sources.search([100], "!!!") == []


async def test_deleting_a_source_removes_its_passages(store: Store, db_path: Path) -> None:
    """The trigger takes a deleted source's passages out of the index."""
    source = await add(store, 100, "fruit", ["Blueberries are green."])
    assert await store.sources.delete(source.id)
    assert await store.sources.search([100], "blueberries") == []
    assert await store.sources.get(source.id) is None
    assert await store.sources.delete(source.id) is False
    assert query(db_path, "SELECT COUNT(*) FROM source_passages") == [(0,)]


async def test_rank_orders_unstored_passages_and_leaves_nothing_behind(store: Store) -> None:
    """Passages of a message asked about are ranked in a temporary table that is emptied afterwards."""
    order = await store.sources.rank(["nothing here", "green blueberries", "blueberries"], "green blueberries?")
    assert order == [1, 2]
    assert await store.sources.rank(["again green"], "green") == [0]
    async with store._use("check") as db:
        assert list(await db.execute_fetchall("SELECT COUNT(*) FROM temp.ranked_passages")) == [(0,)]


def test_match_query_quotes_every_word() -> None:
    """FTS5 syntax in a question (quotes, NEAR, stars) stays plain words."""
    assert match_query('What is "NEAR" a* OR b? what') == '"what" OR "is" OR "near" OR "a" OR "or" OR "b"'
    assert match_query("?!") is None


async def test_passages_are_read_by_their_place_in_the_order_asked(store: Store) -> None:
    """A passage is read by (source, seq); places with no passage are left out; a deleted source's passages go."""
    first = await add(store, 100, "one", ["a0", "a1", "a2"])
    second = await add(store, 100, "two", ["b0"])
    places = [(second.id, 0), (first.id, 2), (first.id, 9), (first.id, 0)]
    assert [p.text for p in await store.sources.passages(places)] == ["b0", "a2", "a0"]
    await store.sources.delete(first.id)
    assert await store.sources.passages(places) == [Passage(second.id, 0, "b0")]


async def test_a_refused_add_stores_nothing_and_sees_what_is_held(store: Store, db_path: Path) -> None:
    """``admit`` sees the channel's and the author's sources inside the transaction; raising there stores nothing."""
    await add(store, 100, "mine here", ["abc"], author_id=1)
    await add(store, 200, "mine elsewhere", ["defgh"], author_id=1)
    await add(store, 100, "theirs here", ["ij"], author_id=2)
    seen = []

    def refuse(usage: SourceUsage) -> None:
        seen.append(usage)
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await store.sources.add(
            scope_id=100,
            guild_id=9,
            title="t",
            url=None,
            author_id=1,
            author_name="A",
            text="x",
            passages=["x"],
            admit=refuse,
        )
    assert seen == [SourceUsage(channel_count=2, channel_bytes=5, person_count=2, person_bytes=8)]
    assert query(db_path, "SELECT COUNT(*) FROM sources") == [(3,)]
    assert query(db_path, "SELECT COUNT(*) FROM source_passages") == [(3,)]


async def test_an_older_database_keeps_its_passages_under_the_new_rowids(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading renumbers the passages by (source, seq): they are read by place, found by words and deleted
    with their source."""
    old_schema = migrations.MIGRATIONS[: migrations.MIGRATIONS.index(migrations._PASSAGE_ROWIDS)]
    monkeypatch.setattr(migrations, "MIGRATIONS", old_schema)
    async with await Store.open(db_path):
        pass
    monkeypatch.undo()
    for id_, passages in ((1, ["alpha one", "alpha two"]), (2, ["beta one"])):
        query(
            db_path,
            "INSERT INTO sources (id, scope_id, title, author_id, author_name, created_at, size, text)"
            " VALUES (?, 100, 't', 1, 'A', 0, 1, 'x')",
            (id_,),
        )
        for seq, text in enumerate(passages):
            query(db_path, "INSERT INTO source_passages (text, source_id, seq) VALUES (?, ?, ?)", (text, id_, seq))
    async with await Store.open(db_path) as store:
        assert [p.text for p in await store.sources.passages([(1, 1), (2, 0), (1, 0)])] == [
            "alpha two",
            "beta one",
            "alpha one",
        ]
        assert [(p.source_id, p.seq) for p in await store.sources.search([100], "beta")] == [(2, 0)]
        await store.sources.delete(1)
    assert query(db_path, "SELECT rowid, text FROM source_passages") == [(2 * 2**32, "beta one")]
