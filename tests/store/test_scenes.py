"""Scenes: one per thread, a cast in order, humans in order of joining, ended but kept."""

from __future__ import annotations

from bot.store import SceneHuman, SceneMember, Store, StoredCharacter


async def character(store: Store, name: str) -> StoredCharacter:
    return await store.characters.create(
        guild_id=1, name=name, description=f"{name}, a test.", personality="", speaking_style="", creator_id=10
    )


async def test_create_then_get_keeps_the_cast_in_order(store: Store) -> None:
    """A new scene is active, has its cast in the given order and no humans; rules None mean the card's."""
    yoda, homer = await character(store, "Yoda"), await character(store, "Homer")
    made = await store.scenes.create(
        thread_id=500,
        guild_id=1,
        creator_id=10,
        setting="A cafe.",
        cast=[SceneMember(homer.id, 77), SceneMember(yoda.id)],
    )
    assert made == await store.scenes.get(500)
    assert made.cast == (SceneMember(homer.id, 77), SceneMember(yoda.id))
    assert (made.active, made.rules, made.humans, made.setting) == (True, None, (), "A cafe.")


async def test_rules_are_kept_as_given(store: Store) -> None:
    """Custom rules come back in order; an empty list stays empty (no Rules section)."""
    yoda = await character(store, "Yoda")
    await store.scenes.create(
        thread_id=1, guild_id=1, creator_id=10, setting="s", cast=[SceneMember(yoda.id)], rules=["be kind", "rhyme"]
    )
    await store.scenes.create(
        thread_id=2, guild_id=1, creator_id=10, setting="s", cast=[SceneMember(yoda.id)], rules=[]
    )
    first, second = await store.scenes.get(1), await store.scenes.get(2)
    assert first is not None and second is not None
    assert (first.rules, second.rules) == (("be kind", "rhyme"), ())


async def test_humans_join_once_in_order(store: Store) -> None:
    """Each person joins once, under the name they first had; the order is the order of joining."""
    yoda = await character(store, "Yoda")
    await store.scenes.create(thread_id=5, guild_id=1, creator_id=10, setting="s", cast=[SceneMember(yoda.id)])
    assert await store.scenes.add_human(5, 20, "Jon")
    assert await store.scenes.add_human(5, 21, "Ann")
    assert not await store.scenes.add_human(5, 20, "Jonathan")
    scene = await store.scenes.get(5)
    assert scene is not None and scene.humans == (SceneHuman(20, "Jon"), SceneHuman(21, "Ann"))


async def test_cast_changes_and_a_deleted_character_leaves_it(store: Store) -> None:
    """Characters are added last and removed; one deleted from the server leaves the cast."""
    yoda, homer, leia = await character(store, "Yoda"), await character(store, "Homer"), await character(store, "Leia")
    await store.scenes.create(thread_id=5, guild_id=1, creator_id=10, setting="s", cast=[SceneMember(yoda.id)])
    assert await store.scenes.add_character(5, homer.id, avatar_message_id=9)
    assert not await store.scenes.add_character(5, homer.id)
    assert await store.scenes.add_character(5, leia.id)
    assert await store.scenes.remove_character(5, yoda.id)
    assert not await store.scenes.remove_character(5, yoda.id)
    await store.characters.delete(leia.id)
    scene = await store.scenes.get(5)
    assert scene is not None and scene.cast == (SceneMember(homer.id, 9),)


async def test_end_marks_inactive_once_and_lists_follow(store: Store) -> None:
    """An ended scene stays stored but inactive; ending it again says so; the thread lists follow."""
    yoda = await character(store, "Yoda")
    for thread in (5, 6):
        await store.scenes.create(thread_id=thread, guild_id=1, creator_id=10, setting="s", cast=[SceneMember(yoda.id)])
    assert await store.scenes.end(5)
    assert not await store.scenes.end(5)
    scene = await store.scenes.get(5)
    assert scene is not None and not scene.active
    assert await store.scenes.thread_ids() == {5, 6}
    assert await store.scenes.thread_ids(active=True) == {6}
    assert await store.scenes.thread_ids(active=False) == {5}
    assert await store.scenes.delete(6)
    assert await store.scenes.get(6) is None and not await store.scenes.delete(6)
