"""`Store`: the one object that talks SQL to the bot's SQLite database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from bot.errors import StoreError

from ._catchup import CatchUp
from ._characters import Characters
from ._migrations import migrate
from ._models import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    Conversation,
    MessageStatus,
    Role,
    StoredMessage,
    conversation_from_row,
    message_from_row,
)
from ._privacy import Privacy
from ._quizzes import Quizzes
from ._riddles import Riddles
from ._scenes import Scenes
from ._settings import SettingsTable
from ._sources import Sources
from ._votes import Votes

__all__ = ["Store"]

_log = logging.getLogger(__name__)

_MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 5_000
"""How long a statement waits for another process's write lock before failing (then: "the database is busy")."""

_HISTORY_STATUSES = (MessageStatus.OK.value, MessageStatus.PARTIAL.value)


class Store:
    """One SQLite database.

    Open with ``async with await Store.open(path) as store`` or ``store = await Store.open(path)`` ...
    ``await store.close()``.

    Every public method may be called concurrently from many asyncio tasks: they share one connection and take
    turns, and each runs as a single transaction, so no task ever sees another's half-finished work. Database
    failures surface as `StoreError`, whose text can be shown to a user.
    """

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        """Wrap an open, configured and migrated connection; use `Store.open` instead."""
        self._db = db
        self._path = path
        self._in_memory = path == _MEMORY
        self._lock = asyncio.Lock()
        self._closed = False
        self.sources = Sources(self)
        self.riddles = Riddles(self)
        self.quizzes = Quizzes(self)
        self.votes = Votes(self)
        self.settings = SettingsTable(self)
        self.characters = Characters(self)
        self.scenes = Scenes(self)
        self.privacy = Privacy(self)
        self.catchup = CatchUp(self)

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Store:
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

    async def get_conversation(self, key: str) -> Conversation | None:
        """The conversation with this key, or None."""
        async with self._use("load the conversation") as db:
            rows = list(
                await db.execute_fetchall(f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE key = ?", (key,))
            )
        return conversation_from_row(rows[0]) if rows else None

    async def get_or_create_conversation(
        self,
        key: str,
        *,
        guild_id: int | None = None,
        channel_id: int | None = None,
        owner_id: int | None = None,
    ) -> Conversation:
        """The conversation with this key, created with the given ids if it does not exist yet.

        An existing conversation is returned as stored; the ids passed in do not change it.
        """
        # A read first: an existing conversation then needs no write lock, so a busy database fails at the message
        # being saved (which is what the person is told) rather than here.
        existing = await self.get_conversation(key)
        if existing is not None:
            return existing
        async with self._use("open the conversation", write=True) as db:
            # ON CONFLICT DO NOTHING rather than check-then-insert: another process may create the row in between.
            await db.execute(
                "INSERT INTO conversations (key, guild_id, channel_id, owner_id, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                (key, guild_id, channel_id, owner_id, time.time()),
            )
            rows = list(
                await db.execute_fetchall(f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE key = ?", (key,))
            )
        return conversation_from_row(rows[0])

    async def add_message(
        self,
        conversation_id: int,
        *,
        role: Role,
        content: str,
        author_id: int | None = None,
        author_name: str | None = None,
        token_count: int | None = None,
        status: MessageStatus = MessageStatus.OK,
        external_ids: Sequence[int] = (),
    ) -> StoredMessage:
        """Append a message to a conversation; it is committed to disk before this returns.

        ``external_ids`` are the ids of the platform messages that show it (one for a user's message, one per
        part of a long reply); :meth:`message_by_external_id` finds the message from any of them.
        """
        async with self._use("save the message", write=True) as db:
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO messages"
                    " (conversation_id, role, content, author_id, author_name, token_count, status, created_at)"
                    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {MESSAGE_COLUMNS}",
                    (
                        conversation_id,
                        Role(role).value,
                        content,
                        author_id,
                        author_name,
                        token_count,
                        MessageStatus(status).value,
                        time.time(),
                    ),
                )
            )
            message = message_from_row(rows[0])
            await _link(db, message.id, external_ids)
        return message

    async def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        token_count: int | None = None,
        status: MessageStatus | None = None,
        external_ids: Sequence[int] | None = None,
    ) -> bool:
        """Change a stored message in place (an edit, a finished or regenerated reply); False if it is gone.

        ``external_ids``, when given, replace the message's links.
        """
        assignments: list[str] = []
        values: list[object] = []
        for column, value in (("content", content), ("token_count", token_count), ("status", status)):
            if value is not None:
                assignments.append(f"{column} = ?")
                values.append(value.value if isinstance(value, MessageStatus) else value)
        async with self._use("update the message", write=True) as db:
            rows = list(await db.execute_fetchall("SELECT 1 FROM messages WHERE id = ?", (message_id,)))
            if not rows:
                return False
            if assignments:
                await db.execute(f"UPDATE messages SET {', '.join(assignments)} WHERE id = ?", (*values, message_id))
            if external_ids is not None:
                await db.execute("DELETE FROM message_links WHERE message_id = ?", (message_id,))
                await _link(db, message_id, external_ids)
        return True

    async def message_by_external_id(self, external_id: int) -> StoredMessage | None:
        """The stored message shown by the platform message ``external_id``, or None."""
        async with self._use("find the message") as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_qualified(MESSAGE_COLUMNS, 'm')} FROM message_links l"
                    " JOIN messages m ON m.id = l.message_id WHERE l.external_id = ?",
                    (external_id,),
                )
            )
        return message_from_row(rows[0]) if rows else None

    async def external_ids(self, message_id: int) -> list[int]:
        """The platform message ids that show a stored message, in order (empty if none were recorded)."""
        async with self._use("find the message") as db:
            rows = await db.execute_fetchall(
                "SELECT external_id FROM message_links WHERE message_id = ? ORDER BY part", (message_id,)
            )
        return [int(row[0]) for row in rows]

    async def history(self, conversation_id: int, *, limit: int) -> list[StoredMessage]:
        """The newest `limit` messages whose status is ok or partial, oldest first.

        Cancelled and failed messages are never part of the history the model sees.
        """
        if limit < 0:
            # SQLite reads a negative LIMIT as "no limit"; that would silently feed the model everything.
            raise ValueError(f"limit must not be negative, got {limit}")
        async with self._use("load the conversation history") as db:
            rows = await db.execute_fetchall(
                f"SELECT {MESSAGE_COLUMNS} FROM ("
                f"  SELECT {MESSAGE_COLUMNS} FROM messages"
                "   WHERE conversation_id = ? AND status IN (?, ?) ORDER BY id DESC LIMIT ?"
                ") ORDER BY id",
                (conversation_id, *_HISTORY_STATUSES, limit),
            )
        return [message_from_row(row) for row in rows]

    async def last_message(
        self, conversation_id: int, *, role: Role | None = None, before: int | None = None
    ) -> StoredMessage | None:
        """The newest message of the conversation, whatever its status (of ``role``, older than ``before``), or None."""
        conditions, values = ["conversation_id = ?"], [conversation_id]
        if role is not None:
            conditions.append("role = ?")
            values.append(Role(role).value)  # type: ignore[arg-type]
        if before is not None:
            conditions.append("id < ?")
            values.append(before)
        async with self._use("load the last message") as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT 1",
                    tuple(values),
                )
            )
        return message_from_row(rows[0]) if rows else None

    async def delete_message(self, message_id: int) -> None:
        """Delete one message; deleting a message that does not exist is not an error."""
        async with self._use("delete the message", write=True) as db:
            await db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    async def reset_conversation(self, conversation_id: int) -> int:
        """Delete every message of the conversation (keeping the conversation) and return how many there were."""
        async with self._use("reset the conversation", write=True) as db:
            return await _changed_rows(db, "DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))

    async def delete_conversation(self, key: str) -> bool:
        """Delete the conversation with this key and all its messages; False if there was none."""
        async with self._use("delete the conversation", write=True) as db:
            return await _changed_rows(db, "DELETE FROM conversations WHERE key = ?", (key,)) > 0

    async def forget_user(self, author_id: int) -> int:
        """Delete what the store holds about the user (see `Privacy.forget`); return how many messages went.

        The count includes the bot's replies that went with them and every message of their conversations that
        nobody else wrote in.
        """
        return (await self.privacy.forget(author_id)).messages

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


async def _link(db: aiosqlite.Connection, message_id: int, external_ids: Sequence[int]) -> None:
    """Record the platform messages that show a stored message; an id shown elsewhere before moves here."""
    if not external_ids:
        return
    await db.executemany(
        "INSERT INTO message_links (external_id, message_id, part) VALUES (?, ?, ?)"
        " ON CONFLICT (external_id) DO UPDATE SET message_id = excluded.message_id, part = excluded.part",
        [(int(external_id), message_id, part) for part, external_id in enumerate(external_ids)],
    )


def _qualified(columns: str, table: str) -> str:
    """``"a, b"`` -> ``"t.a, t.b"``: a column list for a query that joins tables."""
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


async def _changed_rows(db: aiosqlite.Connection, sql: str, parameters: tuple[object, ...]) -> int:
    """Run one INSERT, UPDATE or DELETE and return how many rows it changed."""
    async with db.execute(sql, parameters) as cursor:
        return cursor.rowcount


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
