"""`Privacy`: what the store keeps about a person (``/forget-me``), old conversations going (retention), exports.

Forgetting a user plans the deletion first (:func:`_plan`), so the counts ``/forget-me`` shows before the confirm
button are computed by the same code that deletes. A conversation the user owns goes whole when no one else wrote
in it (their DM, a thread only they used); in a conversation others wrote in, only the user's messages go, with the
bot's replies that answered nothing but them, and the conversation loses their name as its owner. What stays is
then still a well-formed history: the prompt builder merges the runs of replies that are left side by side, and
drops a leading reply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import aiosqlite

from ._models import CONVERSATION_COLUMNS, MESSAGE_COLUMNS, Conversation, StoredMessage, conversation_from_row
from ._models import message_from_row as _message

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Privacy", "Purged", "UserData"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UserData:
    """How much the store holds about one person (or deleted for them)."""

    messages: int = 0
    """Their messages, the bot's replies to them alone, and every message of the conversations that go whole."""
    conversations: int = 0
    """Their own conversations that nobody else wrote in: deleted whole."""
    sources: int = 0
    riddles: int = 0
    """Riddles they asked for."""
    quizzes: int = 0
    """Quizzes they asked for: deleted with everyone's answers (the topic is their words)."""
    quiz_answers: int = 0
    """Their answers to other people's quizzes (those to their own quizzes go with the quiz)."""
    votes: int = 0
    scenes: int = 0
    """Scenes they take part in."""
    scenes_started: int = 0
    """Scenes they started: they stay for the others in them, without their setting and rules (the starter's words)."""
    characters: tuple[str, ...] = ()
    """Names of the characters they created."""

    @property
    def empty(self) -> bool:
        """Whether there is nothing at all."""
        return not any(
            (
                self.messages,
                self.conversations,
                self.sources,
                self.riddles,
                self.quizzes,
                self.quiz_answers,
                self.votes,
                self.scenes,
                self.scenes_started,
                self.characters,
            )
        )


@dataclass(frozen=True, slots=True)
class Purged:
    """What one retention pass deleted."""

    conversations: int
    messages: int
    scenes: int


@dataclass(slots=True)
class _Plan:
    """The rows forgetting a user deletes, found before anything is deleted."""

    whole: list[int] = field(default_factory=list)
    """Conversations deleted with everything in them."""
    disowned: list[int] = field(default_factory=list)
    """Owned conversations others wrote in: they stay, without the owner."""
    messages: list[int] = field(default_factory=list)
    """Single messages deleted from conversations that stay."""
    whole_messages: int = 0
    counts: UserData = field(default_factory=UserData)


class Privacy:
    """The privacy operations, through the store's connection and transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def summary(self, user_id: int) -> UserData:
        """What :meth:`forget` would delete for ``user_id`` now; nothing changes."""
        async with self._store._use("look up your data") as db:
            plan = await _plan(db, user_id)
            # Counted as forget counts them: their answers to their own quizzes go with the quiz, not one by one.
            quiz_answers = await _count(
                db,
                "SELECT COUNT(*) FROM quiz_answers WHERE user_id = ?1"
                " AND quiz_id NOT IN (SELECT id FROM quizzes WHERE author_id = ?1)",
                user_id,
            )
            votes = await _count(db, "SELECT COUNT(*) FROM votes WHERE voter_id = ?", user_id)
        return replace(plan.counts, quiz_answers=quiz_answers, votes=votes)

    async def conversation_keys(self, user_id: int) -> list[str]:
        """The keys of the conversations forgetting ``user_id`` changes (they own it or wrote in it)."""
        async with self._store._use("look up your conversations") as db:
            rows = await db.execute_fetchall(
                "SELECT key FROM conversations WHERE owner_id = ?"
                " OR id IN (SELECT conversation_id FROM messages WHERE author_id = ?) ORDER BY key",
                (user_id, user_id),
            )
        return [str(row[0]) for row in rows]

    async def forget(self, user_id: int) -> UserData:
        """Delete what the store holds about ``user_id`` (see the module docstring) and return what went.

        Their sources, the riddles and quizzes they asked for, their quiz answers and votes, their place in scenes
        and the characters they created (for everyone: from every scene too) go; their name leaves the riddles they
        solved, the comparisons they ran and the scenes they started (which stay for the others in them, without
        the setting and rules they wrote). Deleted rows are overwritten on disk (``secure_delete``), the sources'
        full-text index is rewritten without their passages (FTS5 keeps a deleted row's words in its blocks until
        then), and the write-ahead log is emptied, so the text is really gone.
        """
        async with self._store._use("delete your data", write=True) as db:
            plan = await _plan(db, user_id)
            await _forget(db, plan, user_id)
        quiz_answers = await self._store.quizzes.forget_user(user_id)
        votes = await self._store.votes.forget_voter(user_id)
        counts = replace(plan.counts, quiz_answers=quiz_answers, votes=votes)
        _log.info(
            "Forgot user %d: deleted %d messages, %d conversations, %d sources, %d characters",
            user_id,
            counts.messages,
            counts.conversations,
            counts.sources,
            len(counts.characters),
        )
        await self._store._truncate_wal()
        return counts

    async def purge_older_than(self, cutoff: float) -> Purged:
        """Delete every conversation whose newest message is older than ``cutoff`` (a Unix time).

        A conversation without messages counts from when it was created. Its messages and their links go with it,
        and so does the scene of a purged thread (its cast and people). A conversation with one recent message is
        kept whole.
        """
        async with self._store._use("delete old conversations", write=True) as db:
            rows = await db.execute_fetchall(
                "SELECT c.id, c.key FROM conversations c WHERE COALESCE("
                "  (SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id ORDER BY m.id DESC LIMIT 1),"
                "  c.created_at) < ?",
                (cutoff,),
            )
            old = [(int(id_), str(key)) for id_, key in rows]
            if not old:
                return Purged(0, 0, 0)
            ids = [id_ for id_, _ in old]
            messages = await _count_in(db, "SELECT COUNT(*) FROM messages WHERE conversation_id IN ({})", ids)
            # Messages and their links go through ON DELETE CASCADE.
            await _execute_in(db, "DELETE FROM conversations WHERE id IN ({})", ids)
            threads = [int(key.removeprefix("thread:")) for _, key in old if key.startswith("thread:")]
            scenes = await _execute_in(db, "DELETE FROM scenes WHERE thread_id IN ({})", threads) if threads else 0
        await self._store._truncate_wal()
        return Purged(len(old), messages, scenes)

    async def conversation(self, key: str) -> Conversation | None:
        """The conversation stored under ``key``, or None."""
        return await self._store.get_conversation(key)

    async def messages_page(self, conversation_id: int, *, after: int = 0, limit: int = 500) -> list[StoredMessage]:
        """Up to ``limit`` messages of the conversation with an id above ``after``, oldest first, whatever their
        status: an export reads the whole history page by page."""
        async with self._store._use("read the conversation") as db:
            rows = await db.execute_fetchall(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND id > ? ORDER BY id LIMIT ?",
                (conversation_id, after, limit),
            )
        return [_message(row) for row in rows]


async def _plan(db: aiosqlite.Connection, user_id: int) -> _Plan:
    """Find what forgetting ``user_id`` deletes (see the module docstring)."""
    plan = _Plan()
    conversations = [
        conversation_from_row(row)
        for row in await db.execute_fetchall(
            f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE owner_id = ?"
            " OR id IN (SELECT conversation_id FROM messages WHERE author_id = ?) ORDER BY id",
            (user_id, user_id),
        )
    ]
    for conversation in conversations:
        rows = await db.execute_fetchall(
            "SELECT id, role, author_id FROM messages WHERE conversation_id = ? ORDER BY id", (conversation.id,)
        )
        messages = [(int(id_), str(role), author) for id_, role, author in rows]
        others = any(role == "user" and author != user_id for _, role, author in messages)
        if conversation.owner_id == user_id and not others:
            plan.whole.append(conversation.id)
            plan.whole_messages += len(messages)
            continue
        if conversation.owner_id == user_id:
            plan.disowned.append(conversation.id)
        plan.messages += _theirs(messages, user_id)
    sources = await _count(db, "SELECT COUNT(*) FROM sources WHERE author_id = ?", user_id)
    riddles = await _count(db, "SELECT COUNT(*) FROM riddles WHERE author_id = ?", user_id)
    quizzes = await _count(db, "SELECT COUNT(*) FROM quizzes WHERE author_id = ?", user_id)
    scenes = await _count(db, "SELECT COUNT(*) FROM scene_humans WHERE user_id = ?", user_id)
    scenes_started = await _count(db, "SELECT COUNT(*) FROM scenes WHERE creator_id = ?", user_id)
    names = await db.execute_fetchall("SELECT name FROM characters WHERE creator_id = ? ORDER BY name_key", (user_id,))
    plan.counts = UserData(
        messages=plan.whole_messages + len(plan.messages),
        conversations=len(plan.whole),
        sources=sources,
        riddles=riddles,
        quizzes=quizzes,
        scenes=scenes,
        scenes_started=scenes_started,
        characters=tuple(str(row[0]) for row in names),
    )
    return plan


def _theirs(messages: Sequence[tuple[int, str, int | None]], user_id: int) -> list[int]:
    """The user's messages, and each reply whose turn (the people's messages since the reply before) was all theirs."""
    doomed: list[int] = []
    turn: list[int | None] = []
    for id_, role, author in messages:
        if role == "user":
            turn.append(author)
            if author == user_id:
                doomed.append(id_)
            continue
        if turn and all(author == user_id for author in turn):
            doomed.append(id_)
        turn = []
    return doomed


async def _forget(db: aiosqlite.Connection, plan: _Plan, user_id: int) -> None:
    """Carry out ``plan`` inside the caller's transaction."""
    if plan.whole:
        await _execute_in(db, "DELETE FROM conversations WHERE id IN ({})", plan.whole)  # messages: ON DELETE CASCADE
    if plan.disowned:
        await _execute_in(db, "UPDATE conversations SET owner_id = NULL WHERE id IN ({})", plan.disowned)
    if plan.messages:
        await _execute_in(db, "DELETE FROM messages WHERE id IN ({})", plan.messages)
    # A message of theirs stored after the plan was made (none: the plan and this run in one transaction) would
    # still go here; this line is the guarantee that no message of theirs is left.
    await db.execute("DELETE FROM messages WHERE author_id = ?", (user_id,))
    await db.execute("DELETE FROM sources WHERE author_id = ?", (user_id,))  # passages: by trigger
    if plan.counts.sources:
        # FTS5 deletes a row by adding a delete marker: the passage's words stay in the index's blocks until they
        # are merged. 'optimize' merges them all now, and secure_delete zeroes the pages it frees.
        await db.execute("INSERT INTO source_passages (source_passages) VALUES ('optimize')")
    await db.execute("DELETE FROM riddles WHERE author_id = ?", (user_id,))
    await db.execute("UPDATE riddles SET solved_by = 0, solved_by_name = 'someone' WHERE solved_by = ?", (user_id,))
    await db.execute("DELETE FROM scene_humans WHERE user_id = ?", (user_id,))  # their name in scene sheets
    await db.execute("DELETE FROM characters WHERE creator_id = ?", (user_id,))  # scene casts: ON DELETE CASCADE
    # A scene they started stays for the others in it, without the setting and rules they wrote (no rules: the
    # card's). 0 is "nobody" (as riddles' solved_by): the column is NOT NULL, and rebuilding the table for a
    # nullable column would buy nothing a reader of the scene needs.
    await db.execute("UPDATE scenes SET creator_id = 0, setting = '', rules = NULL WHERE creator_id = ?", (user_id,))
    # A quiz they asked for goes whole: its topic is their words. Its answers go with it (ON DELETE CASCADE).
    await db.execute("DELETE FROM quizzes WHERE author_id = ?", (user_id,))


async def _count(db: aiosqlite.Connection, sql: str, value: int) -> int:
    rows = list(await db.execute_fetchall(sql, (value,)))
    return int(rows[0][0])


_CHUNK = 500
"""Ids per ``IN (...)`` list: SQLite limits the number of parameters of a statement."""


async def _count_in(db: aiosqlite.Connection, sql: str, ids: Sequence[int]) -> int:
    total = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = list(await db.execute_fetchall(sql.format(", ".join("?" * len(chunk))), tuple(chunk)))
        total += int(rows[0][0])
    return total


async def _execute_in(db: aiosqlite.Connection, sql: str, ids: Sequence[int]) -> int:
    """Run ``sql`` (with ``{}`` for the id list) over ``ids`` in chunks; returns how many rows it changed."""
    changed = 0
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        async with db.execute(sql.format(", ".join("?" * len(chunk))), tuple(chunk)) as cursor:
            changed += cursor.rowcount
    return changed
