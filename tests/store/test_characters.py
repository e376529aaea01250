"""Characters per guild: names unique whatever their case, avatars kept as bytes, edits and deletes."""

from __future__ import annotations

from typing import Any

import pytest

from bot.store import CharacterNameTaken, Store, StoredCharacter

PNG = b"\x89PNG\r\n\x1a\n fake image"


async def make(store: Store, name: str = "Aria", guild_id: int = 1, **overrides: Any) -> StoredCharacter:
    fields: dict[str, Any] = {
        "guild_id": guild_id,
        "name": name,
        "description": "A navigator.",
        "personality": "calm",
        "speaking_style": "Short sentences.",
        "creator_id": 10,
    } | overrides
    return await store.characters.create(**fields)


async def test_create_then_get_by_name_any_case_and_by_id(store: Store) -> None:
    """A created character comes back with its avatar and extra fields, by name in any case and by id."""
    made = await make(store, avatar=PNG, avatar_type="image/png", extra={"scenario": "On the bridge."})
    found = await store.characters.get(1, "aRIA")
    assert found == made == await store.characters.get_by_id(made.id)
    assert found is not None
    assert (found.avatar, found.avatar_type, found.has_avatar) == (PNG, "image/png", True)
    assert found.extra == {"scenario": "On the bridge."}
    assert found.created_at == found.updated_at


async def test_names_are_unique_per_guild_whatever_their_case(store: Store) -> None:
    """A second "ARIA" in the same guild is refused; another guild may have its own Aria."""
    await make(store)
    with pytest.raises(CharacterNameTaken, match="already a character named “Aria”"):
        await make(store, "ARIA")
    await make(store, "aria", guild_id=2)
    assert [c.name for c in await store.characters.list(1)] == ["Aria"]


async def test_list_is_by_name_without_avatar_bytes(store: Store) -> None:
    """The list is sorted case-insensitively, holds only the guild's characters, and says who has an avatar."""
    await make(store, "bo")
    await make(store, "Aria", avatar=PNG, avatar_type="image/png")
    await make(store, "Cy", guild_id=2)
    listed = await store.characters.list(1)
    assert [(c.name, c.has_avatar, c.avatar) for c in listed] == [("Aria", True, None), ("bo", False, None)]


async def test_update_changes_only_the_given_fields(store: Store) -> None:
    """An update keeps the fields it was not given and moves updated_at."""
    made = await make(store)
    updated = await store.characters.update(made.id, name="Aria Prime", personality="bold")
    assert updated is not None
    assert (updated.name, updated.personality, updated.description) == ("Aria Prime", "bold", "A navigator.")
    assert updated.updated_at >= made.updated_at
    assert await store.characters.get(1, "aria prime") == updated
    assert await store.characters.get(1, "Aria") is None


async def test_update_refuses_another_characters_name_but_allows_a_case_change(store: Store) -> None:
    """Renaming onto another character's name is refused; recasing one's own name is fine."""
    aria = await make(store)
    await make(store, "Bo")
    with pytest.raises(CharacterNameTaken):
        await store.characters.update(aria.id, name="bo")
    recased = await store.characters.update(aria.id, name="ARIA")
    assert recased is not None and recased.name == "ARIA"


async def test_update_and_delete_of_a_missing_character(store: Store) -> None:
    """Updating or deleting a character that is gone says so (None / False)."""
    made = await make(store)
    assert await store.characters.delete(made.id) is True
    assert await store.characters.delete(made.id) is False
    assert await store.characters.update(made.id, description="x") is None
    assert await store.characters.update(made.id, name="x") is None
    assert await store.characters.get_by_id(made.id) is None


async def test_an_avatar_needs_its_content_type(store: Store) -> None:
    """Bytes without a content type are a programming error, caught before SQL."""
    with pytest.raises(ValueError, match="content type"):
        await make(store, avatar=PNG)
