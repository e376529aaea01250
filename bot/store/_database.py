"""`Database`: the one connection to the bot's SQLite file, one operation at a time, each its own transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from bot.errors import StoreError

from ._migrations import migrate

_log = logging.getLogger(__name__)

_MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5_000
"""How long a statement waits for another process's write lock before failing (then: "the database is busy")."""


class Database:
    """One SQLite database, opened, configured and migrated; :class:`~bot.store.Store` adds what it holds.

    Every operation holds the connection through :meth:`_use`, which takes turns among asyncio tasks, runs the
    operation as one transaction and turns SQLite's errors into `StoreError`.
    """

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        """Wrap an open, configured and migrated connection; use `open` instead."""
        self._db = db
        self._path = path
        self._in_memory = path == _MEMORY
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open (creating it and its parent folders if needed) the database at `path` and apply pending migrations.

        ``":memory:"`` opens a private in-memory database. Raises `StoreError` naming the path if the file cannot
        be opened, is not an SQLite database, or has a schema newer than this code knows.
        """
        name = os.fspath(path)
        in_memory = name == _MEMORY
        if not in_memory:
            try:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"Cannot create the folder for the database at {name}: {exc}") from exc
        try:
            db = await aiosqlite.connect(name, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the database at {name}: {exc}") from exc
        try:
            await _configure(db, name, in_memory=in_memory)
            await migrate(db, name)
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"Cannot open the database at {name} (is it an SQLite database?): {exc}") from exc
        except BaseException:
            await db.close()
            raise
        _log.debug("Opened the database at %s", name)
        return cls(db, name)

    async def close(self) -> None:
        """Wait for running operations, then close the database; closing twice is harmless."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._db.close()
            except sqlite3.Error as exc:
                raise StoreError(f"Could not close the database at {self._path}: {exc}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_version(self) -> int:
        """The schema version the database is at (``PRAGMA user_version``)."""
        async with self._use("read the schema version") as db:
            rows = list(await db.execute_fetchall("PRAGMA user_version"))
        return int(rows[0][0])

    async def _truncate_wal(self) -> None:
        """Copy the write-ahead log into the database file and empty it, so no old page survives in the log."""
        if self._in_memory:
            return
        async with self._use("clean up the deleted data") as db:
            rows = list(await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))
        if rows and rows[0][0]:
            _log.warning("Could not fully checkpoint the database at %s: another connection is reading it", self._path)

    @contextlib.asynccontextmanager
    async def _use(self, action: str, *, write: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Hold the connection for one operation, in a transaction if `write`; turn SQLite errors into `StoreError`.

        `action` completes the user-facing sentence "The database could not ...".
        """
        async with self._lock:
            if self._closed:
                raise StoreError("The database is closed.")
            db = self._db
            try:
                try:
                    if write:
                        # IMMEDIATE takes the write lock up front, so the transaction cannot fail half-way on a lock.
                        await db.execute("BEGIN IMMEDIATE")
                    yield db
                    if write:
                        await db.commit()
                except BaseException:
                    # Cancellation included: a statement we were awaiting (even the BEGIN) still runs on aiosqlite's
                    # thread, and this ROLLBACK is queued after it. A no-op when no transaction is open.
                    await db.rollback()
                    raise
            except sqlite3.Error as exc:
                raise _store_error(exc, action, self._path) from exc


def _store_error(exc: sqlite3.Error, action: str, path: str) -> StoreError:
    """The `StoreError` a user sees for a failed operation: a busy or full database says so, the rest is generic.

    Busy and full are the operator's to fix (another program holding the write lock longer than the busy timeout,
    no space left), so they are logged as one line; anything else is unexpected and logged with its traceback.
    """
    # The primary result code is the low byte: SQLITE_BUSY_SNAPSHOT and friends are busy too.
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        _log.warning("Could not %s: the database at %s is busy (%s)", action, path, exc)
        return StoreError(f"The database is busy, so it could not {action}; please try again in a moment.")
    if code == sqlite3.SQLITE_FULL:
        _log.error("Could not %s: the database at %s or its disk is full (%s)", action, path, exc)
        return StoreError(f"The database disk is full, so it could not {action}; the bot's operator has to free space.")
    _log.exception("Could not %s in the database at %s", action, path)
    return StoreError(f"The database could not {action}.")


async def _configure(db: aiosqlite.Connection, path: str, *, in_memory: bool) -> None:
    """Set the per-connection pragmas and check that they took."""
    await db.execute("PRAGMA foreign_keys = ON")
    await db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    # Overwrite deleted rows with zeros so that /forget-me and retention really remove the text from the file.
    await db.execute("PRAGMA secure_delete = ON")
    rows = list(await db.execute_fetchall("PRAGMA foreign_keys"))
    if not rows or rows[0][0] != 1:
        raise StoreError(f"Cannot open the database at {path}: this SQLite build does not enforce foreign keys.")
    if in_memory:
        return
    # synchronous stays at its default (FULL): a committed user message must survive a power cut, not only a crash.
    rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
    mode = str(rows[0][0]) if rows else "unknown"
    if mode.lower() != "wal":
        _log.warning("The database at %s is in journal mode %r instead of WAL", path, mode)
