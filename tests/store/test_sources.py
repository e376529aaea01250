"""Sources: scoped storage, passage search by bm25, deletion with the index, ranking of unstored passages."""

from pathlib import Path

from bot.store import Store, StoredSource
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
    assert hits[0] == (fruit.id, 1)
    assert set(hits) == {(fruit.id, 1), (other.id, 1), (fruit.id, 0)}  # "are" matches the bananas too
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
