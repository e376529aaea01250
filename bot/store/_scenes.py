"""`Scenes`: roleplay scenes, one per Discord thread, with their cast and the humans who joined.

A scene's id is its thread's id. The cast is a list of the guild's characters (ids, in order; a deleted character
leaves every cast through ``ON DELETE CASCADE``); the humans are the people who spoke in the scene, in the order
they first spoke, with the display name the model knows them by. ``rules`` of None means the card's rules.
The conversation itself (the lines) is an ordinary conversation ``thread:<id>`` in ``conversations``/``messages``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["SceneHuman", "SceneMember", "Scenes", "StoredScene"]


@dataclass(frozen=True, slots=True)
class SceneMember:
    """A character in a scene's cast; ``avatar_message_id`` is the message carrying its uploaded avatar, if any."""

    character_id: int
    avatar_message_id: int | None = None


@dataclass(frozen=True, slots=True)
class SceneHuman:
    """A person taking part in a scene, under the display name they had when they joined."""

    user_id: int
    name: str


@dataclass(frozen=True, slots=True)
class StoredScene:
    """One scene; ``cast`` and ``humans`` are in order (of casting, of joining)."""

    thread_id: int
    guild_id: int
    creator_id: int
    setting: str
    rules: tuple[str, ...] | None
    active: bool
    created_at: float
    cast: tuple[SceneMember, ...]
    humans: tuple[SceneHuman, ...]
    mode: str | None = None
    """Who speaks next (``/scene mode``); None: ``[scenes] mode``."""


class Scenes:
    """The ``scenes`` tables; every method is one transaction of the :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        *,
        thread_id: int,
        guild_id: int,
        creator_id: int,
        setting: str,
        cast: Sequence[SceneMember],
        rules: Sequence[str] | None = None,
    ) -> StoredScene:
        """Store a new, active scene with its cast (no humans yet)."""
        async with self._store._use("save the scene", write=True) as db:
            await db.execute(
                "INSERT INTO scenes (thread_id, guild_id, creator_id, setting, rules, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    guild_id,
                    creator_id,
                    setting,
                    None if rules is None else json.dumps(list(rules)),
                    time.time(),
                ),
            )
            await db.executemany(
                "INSERT INTO scene_characters (scene_id, character_id, position, avatar_message_id)"
                " VALUES (?, ?, ?, ?)",
                [(thread_id, m.character_id, position, m.avatar_message_id) for position, m in enumerate(cast)],
            )
            scene = await _load(db, thread_id)
        assert scene is not None
        return scene

    async def get(self, thread_id: int) -> StoredScene | None:
        """The scene of this thread, or None."""
        async with self._store._use("load the scene") as db:
            return await _load(db, thread_id)

    async def thread_ids(self, *, active: bool | None = None) -> set[int]:
        """The threads that hold a scene (only active or only ended ones, if ``active`` is given)."""
        query, values = "SELECT thread_id FROM scenes", ()
        if active is not None:
            query, values = query + " WHERE active = ?", (int(active),)  # type: ignore[assignment]
        async with self._store._use("list the scenes") as db:
            rows = await db.execute_fetchall(query, values)
        return {int(row[0]) for row in rows}

    async def set_mode(self, thread_id: int, mode: str) -> bool:
        """Set who speaks next in the scene (``model``, ``addressed``, ``round-robin``); False if there is none."""
        async with self._store._use("change the scene", write=True) as db:
            cursor = await db.execute("UPDATE scenes SET mode = ? WHERE thread_id = ?", (mode, thread_id))
            return cursor.rowcount > 0

    async def add_human(self, thread_id: int, user_id: int, name: str) -> bool:
        """``user_id`` joins the scene under ``name`` (last in order); False if they had joined already."""
        return await self._change(
            "add you to the scene",
            "INSERT INTO scene_humans (scene_id, user_id, display_name, position)"
            " SELECT ?, ?, ?, COALESCE(MAX(position) + 1, 0) FROM scene_humans WHERE scene_id = ?"
            " ON CONFLICT (scene_id, user_id) DO NOTHING",
            (thread_id, user_id, name, thread_id),
        )

    async def rename_human(self, thread_id: int, user_id: int, name: str) -> bool:
        """``user_id`` goes by ``name`` in the scene from now on (a proxy's name); False if they are not in it."""
        return await self._change(
            "rename you in the scene",
            "UPDATE scene_humans SET display_name = ? WHERE scene_id = ? AND user_id = ?",
            (name, thread_id, user_id),
        )

    async def add_character(self, thread_id: int, character_id: int, *, avatar_message_id: int | None = None) -> bool:
        """The character joins the cast (last); False if it was in it already."""
        return await self._change(
            "add the character to the scene",
            "INSERT INTO scene_characters (scene_id, character_id, position, avatar_message_id)"
            " SELECT ?, ?, COALESCE(MAX(position) + 1, 0), ? FROM scene_characters WHERE scene_id = ?"
            " ON CONFLICT (scene_id, character_id) DO NOTHING",
            (thread_id, character_id, avatar_message_id, thread_id),
        )

    async def remove_character(self, thread_id: int, character_id: int) -> bool:
        """The character leaves the cast; False if it was not in it."""
        return await self._change(
            "remove the character from the scene",
            "DELETE FROM scene_characters WHERE scene_id = ? AND character_id = ?",
            (thread_id, character_id),
        )

    async def end(self, thread_id: int) -> bool:
        """Mark the scene ended; False if there is no active scene in this thread."""
        return await self._change(
            "end the scene", "UPDATE scenes SET active = 0 WHERE thread_id = ? AND active = 1", (thread_id,)
        )

    async def delete(self, thread_id: int) -> bool:
        """Forget the scene (its thread was deleted); False if there was none."""
        return await self._change("delete the scene", "DELETE FROM scenes WHERE thread_id = ?", (thread_id,))

    async def _change(self, action: str, sql: str, values: tuple[object, ...]) -> bool:
        """Run one write; whether it changed a row."""
        async with self._store._use(action, write=True) as db, db.execute(sql, values) as cursor:
            return cursor.rowcount > 0


async def _load(db: Any, thread_id: int) -> StoredScene | None:
    rows = list(
        await db.execute_fetchall(
            "SELECT thread_id, guild_id, creator_id, setting, rules, active, created_at, mode"
            " FROM scenes WHERE thread_id = ?",
            (thread_id,),
        )
    )
    if not rows:
        return None
    thread, guild, creator, setting, rules, active, created, mode = rows[0]
    cast = await db.execute_fetchall(
        "SELECT character_id, avatar_message_id FROM scene_characters WHERE scene_id = ? ORDER BY position",
        (thread_id,),
    )
    humans = await db.execute_fetchall(
        "SELECT user_id, display_name FROM scene_humans WHERE scene_id = ? ORDER BY position", (thread_id,)
    )
    return StoredScene(
        thread,
        guild,
        creator,
        setting,
        None if rules is None else tuple(json.loads(rules)),
        bool(active),
        created,
        tuple(SceneMember(c, m) for c, m in cast),
        tuple(SceneHuman(u, n) for u, n in humans),
        mode,
    )
