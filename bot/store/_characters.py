"""`Characters`: each guild's roleplay characters, with their avatar images.

A character's name is unique in its guild whatever its case (``name_key`` holds the casefolded name under a
unique index). The avatar is stored as bytes with its content type, because Discord's signed attachment links
expire; an ``https`` link given instead is kept as it is (``avatar_url``) and never fetched by the bot. Fields a
character card had that we do not use (``scenario``, ``tags``, ...) are kept as JSON in ``extra`` so an export
gives them back.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import StoreError

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["CharacterNameTaken", "Characters", "StoredCharacter"]

_COLUMNS = (
    "id, guild_id, name, description, personality, speaking_style, avatar_type, avatar_url, extra,"
    " creator_id, created_at, updated_at, avatar IS NOT NULL"
)


class CharacterNameTaken(StoreError):
    """Another character of the guild already has this name (in any case)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"There is already a character named “{name}” in this server; pick another name.")


@dataclass(frozen=True, slots=True)
class StoredCharacter:
    """One guild's character; ``avatar`` is None when loaded without it (see ``has_avatar``) or when it has none."""

    id: int
    guild_id: int
    name: str
    description: str
    personality: str
    speaking_style: str
    avatar_type: str | None
    avatar_url: str | None
    extra: Mapping[str, Any]
    creator_id: int
    created_at: float
    updated_at: float
    has_avatar: bool
    avatar: bytes | None = field(default=None, repr=False)


def _character(row: Sequence[Any], avatar: bytes | None = None) -> StoredCharacter:
    (id_, guild_id, name, description, personality, style, avatar_type, url, extra, creator, created, updated) = row[
        :12
    ]
    return StoredCharacter(
        id_,
        guild_id,
        name,
        description,
        personality,
        style,
        avatar_type,
        url,
        json.loads(extra),
        creator,
        created,
        updated,
        bool(row[12]),
        avatar,
    )


def _key(name: str) -> str:
    return name.casefold()


class Characters:
    """Characters per guild; every method is one transaction of the :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        *,
        guild_id: int,
        name: str,
        description: str,
        personality: str,
        speaking_style: str,
        creator_id: int,
        avatar: bytes | None = None,
        avatar_type: str | None = None,
        avatar_url: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> StoredCharacter:
        """Store a new character; :class:`CharacterNameTaken` if the guild has one of that name already."""
        if (avatar is None) != (avatar_type is None):
            raise ValueError("an avatar needs its content type, and only an avatar has one")
        now = time.time()
        async with self._store._use("save the character", write=True) as db:
            await _check_free(db, guild_id, name, None)
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO characters (guild_id, name, name_key, description, personality, speaking_style,"
                    " avatar, avatar_type, avatar_url, extra, creator_id, created_at, updated_at)"
                    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                    (
                        guild_id,
                        name,
                        _key(name),
                        description,
                        personality,
                        speaking_style,
                        avatar,
                        avatar_type,
                        avatar_url,
                        json.dumps(dict(extra or {})),
                        creator_id,
                        now,
                        now,
                    ),
                )
            )
        return _character(rows[0], avatar)

    async def get(self, guild_id: int, name: str) -> StoredCharacter | None:
        """The guild's character of this name (any case), with its avatar, or None."""
        async with self._store._use("load the character") as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_COLUMNS}, avatar FROM characters WHERE guild_id = ? AND name_key = ?",
                    (guild_id, _key(name)),
                )
            )
        return _character(rows[0], rows[0][13]) if rows else None

    async def get_by_id(self, character_id: int) -> StoredCharacter | None:
        """The character with this id, with its avatar, or None."""
        async with self._store._use("load the character") as db:
            rows = list(
                await db.execute_fetchall(f"SELECT {_COLUMNS}, avatar FROM characters WHERE id = ?", (character_id,))
            )
        return _character(rows[0], rows[0][13]) if rows else None

    async def list(self, guild_id: int) -> builtins.list[StoredCharacter]:
        """The guild's characters by name (case-insensitively), without their avatar bytes."""
        async with self._store._use("list the characters") as db:
            rows = await db.execute_fetchall(
                f"SELECT {_COLUMNS} FROM characters WHERE guild_id = ? ORDER BY name_key, id", (guild_id,)
            )
        return [_character(row) for row in rows]

    async def update(
        self,
        character_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        personality: str | None = None,
        speaking_style: str | None = None,
    ) -> StoredCharacter | None:
        """Change the given fields (None: unchanged); None if the character is gone, CharacterNameTaken on a clash."""
        changes = {
            column: value
            for column, value in (
                ("name", name),
                ("description", description),
                ("personality", personality),
                ("speaking_style", speaking_style),
            )
            if value is not None
        }
        if name is not None:
            changes["name_key"] = _key(name)
        assignments = ", ".join(f"{column} = ?" for column in [*changes, "updated_at"])
        async with self._store._use("update the character", write=True) as db:
            if name is not None:
                current = list(
                    await db.execute_fetchall("SELECT guild_id FROM characters WHERE id = ?", (character_id,))
                )
                if not current:
                    return None
                await _check_free(db, current[0][0], name, character_id)
            # The column names come from the fixed list above, never from input.
            rows = list(
                await db.execute_fetchall(
                    f"UPDATE characters SET {assignments} WHERE id = ? RETURNING {_COLUMNS}, avatar",
                    (*changes.values(), time.time(), character_id),
                )
            )
        return _character(rows[0], rows[0][13]) if rows else None

    async def delete(self, character_id: int) -> bool:
        """Delete a character; False if there was none."""
        async with (
            self._store._use("delete the character", write=True) as db,
            db.execute("DELETE FROM characters WHERE id = ?", (character_id,)) as cursor,
        ):
            return cursor.rowcount > 0


async def _check_free(db: Any, guild_id: int, name: str, except_id: int | None) -> None:
    """Raise CharacterNameTaken if another character of the guild has this name (checked inside the write lock)."""
    rows = list(
        await db.execute_fetchall(
            "SELECT name FROM characters WHERE guild_id = ? AND name_key = ? AND id IS NOT ?",
            (guild_id, _key(name), except_id),
        )
    )
    if rows:
        raise CharacterNameTaken(rows[0][0])
