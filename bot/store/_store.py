"""`Store`: the bot's SQLite database and what it holds: conversations and messages here, other tables beside."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosqlite

from ._catchup import CatchUp
from ._characters import Characters
from ._database import Database
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

_HISTORY_STATUSES = (MessageStatus.OK.value, MessageStatus.PARTIAL.value)


class Store(Database):
    """One SQLite database.

    Open with ``async with await Store.open(path) as store`` or ``store = await Store.open(path)`` ...
    ``await store.close()``.

    Every public method may be called concurrently from many asyncio tasks: they share one connection and take
    turns, and each runs as a single transaction, so no task ever sees another's half-finished work. Database
    failures surface as `StoreError`, whose text can be shown to a user.
    """

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        """Wrap an open, configured and migrated connection; use `Store.open` instead."""
        super().__init__(db, path)
        self.sources = Sources(self)
        self.riddles = Riddles(self)
        self.quizzes = Quizzes(self)
        self.votes = Votes(self)
        self.settings = SettingsTable(self)
        self.characters = Characters(self)
        self.scenes = Scenes(self)
        self.privacy = Privacy(self)
        self.catchup = CatchUp(self)

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
        part of a long reply); :meth:`message_by_external_id` finds the message from any of them. A person's
        message also raises its conversation's catch-up mark (:class:`~bot.store.CatchUp`).
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
            if message.role == Role.USER and external_ids:
                # The catch-up's mark: deleting this message later never lowers it (see CatchUp).
                await db.execute(
                    "UPDATE conversations SET seen_up_to = MAX(COALESCE(seen_up_to, 0), ?) WHERE id = ?",
                    (max(int(i) for i in external_ids), conversation_id),
                )
        return message

    async def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        token_count: int | None = None,
        status: MessageStatus | None = None,
        external_ids: Sequence[int] | None = None,
        author_name: str | None = None,
    ) -> bool:
        """Change a stored message in place (an edit, a finished or regenerated reply); False if it is gone.

        ``external_ids``, when given, replace the message's links; ``author_name`` renames its author (a proxy).
        """
        assignments: list[str] = []
        values: list[object] = []
        changes = (("content", content), ("token_count", token_count), ("status", status), ("author_name", author_name))
        for column, value in changes:
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

    async def authors(self, conversation_id: int) -> set[int]:
        """The people who wrote in the conversation: the authors of its users' messages."""
        async with self._use("load the conversation's authors") as db:
            rows = await db.execute_fetchall(
                "SELECT DISTINCT author_id FROM messages WHERE conversation_id = ? AND role = ?"
                " AND author_id IS NOT NULL",
                (conversation_id, Role.USER.value),
            )
        return {int(row[0]) for row in rows}

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
