"""Stored settings: per-guild defaults and per-channel values, each ``None`` where it inherits.

Reached as ``store.settings``::

    await store.settings.update(Scope.CHANNEL, channel_id, {"temperature": 0.7}, guild_id=guild_id)
    rows = await store.settings.get_many([(Scope.CHANNEL, channel_id), (Scope.GUILD, guild_id)])

The store keeps what it is given; ranges and model names are checked in ``bot.core.settings``
(the table's CHECK constraints only guard against a bug writing nonsense).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["SETTING_NAMES", "Scope", "SettingsTable", "StoredSettings"]


class Scope(enum.StrEnum):
    """Where a row of settings applies: a whole guild (its defaults) or one channel (a thread and a DM count)."""

    GUILD = "guild"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class StoredSettings:
    """One row of settings; ``None`` means "not set here: inherit"."""

    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    system_prompt: str | None = None
    history: bool | None = None
    variant: str | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing is set."""
        return all(getattr(self, name) is None for name in SETTING_NAMES)


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(StoredSettings))
"""The names of the settings, in the order they are shown; also the table's column names."""

_COLUMNS = ", ".join(SETTING_NAMES)


def _from_row(row: Sequence[Any]) -> StoredSettings:
    values = dict(zip(SETTING_NAMES, row, strict=True))
    if values["history"] is not None:
        values["history"] = bool(values["history"])
    return StoredSettings(**values)


class SettingsTable:
    """The ``settings`` table; every method is one transaction (see :class:`Store`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, scope: Scope, place_id: int) -> StoredSettings:
        """The row for ``place_id`` in ``scope``; all ``None`` if nothing was ever set there."""
        return (await self.get_many([(scope, place_id)]))[0]

    async def get_many(self, places: Sequence[tuple[Scope, int]]) -> list[StoredSettings]:
        """The rows for several places at once, in the order asked (one read for a whole resolution)."""
        if not places:
            return []
        where = " OR ".join("(scope = ? AND place_id = ?)" for _ in places)
        parameters = tuple(value for scope, place_id in places for value in (Scope(scope).value, int(place_id)))
        async with self._store._use("read the settings") as db:
            rows = await db.execute_fetchall(
                f"SELECT scope, place_id, {_COLUMNS} FROM settings WHERE {where}", parameters
            )
        found = {(str(row[0]), int(row[1])): _from_row(row[2:]) for row in rows}
        return [found.get((Scope(scope).value, int(place_id)), StoredSettings()) for scope, place_id in places]

    async def update(
        self, scope: Scope, place_id: int, changes: Mapping[str, Any], *, guild_id: int | None = None
    ) -> StoredSettings:
        """Set the settings named in ``changes`` (a ``None`` value clears one: it inherits again); returns the row.

        Settings not named keep their value. A row left with nothing set is deleted.
        """
        if scope == Scope.GUILD:
            guild_id = place_id
        unknown = set(changes) - set(SETTING_NAMES)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        key = (Scope(scope).value, int(place_id))
        async with self._store._use("save the settings", write=True) as db:
            sql = f"SELECT {_COLUMNS} FROM settings WHERE scope = ? AND place_id = ?"
            rows = list(await db.execute_fetchall(sql, key))
            row = replace(_from_row(rows[0]) if rows else StoredSettings(), **changes)
            if row.empty:
                await db.execute("DELETE FROM settings WHERE scope = ? AND place_id = ?", key)
                return row
            values = [getattr(row, name) for name in SETTING_NAMES]
            await db.execute(
                f"INSERT INTO settings (scope, place_id, guild_id, {_COLUMNS}, updated_at)"
                f" VALUES (?, ?, ?, {', '.join('?' for _ in SETTING_NAMES)}, ?)"
                " ON CONFLICT (scope, place_id) DO UPDATE SET"
                f" {', '.join(f'{name} = excluded.{name}' for name in SETTING_NAMES)},"
                " guild_id = COALESCE(excluded.guild_id, guild_id), updated_at = excluded.updated_at",
                (*key, guild_id, *values, time.time()),
            )
        return row

    async def reset(self, scope: Scope, place_id: int) -> bool:
        """Forget every setting of ``place_id`` in ``scope``; False if none was set."""
        async with (
            self._store._use("reset the settings", write=True) as db,
            db.execute(
                "DELETE FROM settings WHERE scope = ? AND place_id = ?", (Scope(scope).value, place_id)
            ) as cursor,
        ):
            return cursor.rowcount > 0

    async def forget_guild(self, guild_id: int) -> int:
        """Forget the settings of a guild and of all its channels (the bot left it); returns how many rows went."""
        async with (
            self._store._use("forget the server's settings", write=True) as db,
            db.execute("DELETE FROM settings WHERE guild_id = ?", (guild_id,)) as cursor,
        ):
            return cursor.rowcount
