"""`Sources`: the store's part for grounded answers: sources scoped to a channel or thread, and their passages.

A source is kept whole (its text, for prompts that fit it entirely) and as passages in an FTS5 table
(``source_passages``), so that when the sources in scope do not fit the model's window the passages that best
match a question can be picked by bm25, and read without their sources' whole text. A passage's rowid is
``source_id * 2**32 + seq``: a source's passages are one rowid range, and a passage is read by its rowid. Splitting
text into passages is the caller's job (the core), so the store stays about SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiosqlite

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["Passage", "SourceUsage", "Sources", "StoredSource", "match_query"]

_COLUMNS = "id, scope_id, guild_id, title, url, author_id, author_name, created_at, size"
_WORD = re.compile(r"\w+")
_MAX_QUERY_TERMS = 64
_ROWIDS_PER_SOURCE = 2**32
"""Passage rowids of one source: ``source_id * 2**32 + seq`` (the migration ``_PASSAGE_ROWIDS``)."""
_CHUNK = 500
"""Rowids per ``IN (...)`` list: SQLite limits the number of parameters of a statement."""


@dataclass(frozen=True, slots=True)
class StoredSource:
    """One stored source; ``text`` is empty when it was listed without its text."""

    id: int
    scope_id: int
    guild_id: int | None
    title: str
    url: str | None
    author_id: int
    author_name: str
    created_at: float
    size: int
    """The text's size in bytes (UTF-8)."""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """One stored passage: which source, its place in it (from 0), its text."""

    source_id: int
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class SourceUsage:
    """What is stored already where a source is being added: in its channel, and by its author (anywhere)."""

    channel_count: int
    channel_bytes: int
    person_count: int
    person_bytes: int


def _source(row: Sequence[Any], text: str = "") -> StoredSource:
    id_, scope_id, guild_id, title, url, author_id, author_name, created_at, size = row[:9]
    return StoredSource(id_, scope_id, guild_id, title, url, author_id, author_name, created_at, size, text)


def match_query(question: str) -> str | None:
    """An FTS5 query matching any word of ``question`` (each quoted, so no word is read as FTS5 syntax)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(question)))[:_MAX_QUERY_TERMS]
    return " OR ".join(f'"{word}"' for word in words) or None


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class Sources:
    """Sources and their passage index; every method is one transaction of the :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self,
        *,
        scope_id: int,
        guild_id: int | None,
        title: str,
        url: str | None,
        author_id: int,
        author_name: str,
        text: str,
        passages: Sequence[str],
        admit: Callable[[SourceUsage], None] | None = None,
    ) -> StoredSource:
        """Store a source and index its ``passages`` (in order) for search.

        ``admit``, when given, is shown what the channel and the author hold already, inside the transaction that
        stores, and raises to refuse (nothing is stored then): two adds at once cannot both pass a cap.
        """
        if len(passages) >= _ROWIDS_PER_SOURCE:
            raise ValueError(f"a source has at most {_ROWIDS_PER_SOURCE - 1} passages")
        async with self._store._use("save the source", write=True) as db:
            if admit is not None:
                admit(await _usage(db, scope_id, author_id))
            rows = list(
                await db.execute_fetchall(
                    "INSERT INTO sources"
                    " (scope_id, guild_id, title, url, author_id, author_name, created_at, size, text)"
                    f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                    (
                        scope_id,
                        guild_id,
                        title,
                        url,
                        author_id,
                        author_name,
                        time.time(),
                        len(text.encode()),
                        text,
                    ),
                )
            )
            source = _source(rows[0], text)
            await db.executemany(
                "INSERT INTO source_passages (rowid, text, source_id, seq) VALUES (?, ?, ?, ?)",
                [(_rowid(source.id, seq), passage, source.id, seq) for seq, passage in enumerate(passages)],
            )
        return source

    async def in_scope(self, scope_ids: Sequence[int], *, with_text: bool = True) -> list[StoredSource]:
        """The sources of the channels ``scope_ids``, oldest first."""
        if not scope_ids:
            return []
        text = "text" if with_text else "''"
        async with self._store._use("load the sources") as db:
            rows = await db.execute_fetchall(
                f"SELECT {_COLUMNS}, {text} FROM sources WHERE scope_id IN ({_marks(len(scope_ids))}) ORDER BY id",
                tuple(scope_ids),
            )
        return [_source(row, row[9]) for row in rows]

    async def get(self, source_id: int) -> StoredSource | None:
        """The source with this id (without its text), or None."""
        async with self._store._use("load the source") as db:
            rows = list(await db.execute_fetchall(f"SELECT {_COLUMNS} FROM sources WHERE id = ?", (source_id,)))
        return _source(rows[0]) if rows else None

    async def delete(self, source_id: int) -> bool:
        """Delete a source and its passages; False if there was none."""
        async with (
            self._store._use("delete the source", write=True) as db,
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,)) as cursor,
        ):
            return cursor.rowcount > 0

    async def search(self, scope_ids: Sequence[int], question: str, *, limit: int = 64) -> list[Passage]:
        """Up to ``limit`` passages of the sources in scope that match ``question``, best first (bm25)."""
        query = match_query(question)
        if query is None or not scope_ids:
            return []
        async with self._store._use("search the sources") as db:
            rows = await db.execute_fetchall(
                "SELECT p.source_id, p.seq, p.text FROM source_passages p JOIN sources s ON s.id = p.source_id"
                f" WHERE source_passages MATCH ? AND s.scope_id IN ({_marks(len(scope_ids))})"
                " ORDER BY bm25(source_passages), p.rowid LIMIT ?",
                (query, *scope_ids, limit),
            )
        return [Passage(int(source_id), int(seq), str(text)) for source_id, seq, text in rows]

    async def passages(self, places: Sequence[tuple[int, int]]) -> list[Passage]:
        """The passages at these (source id, seq) places, in the order asked; a place with none is left out.

        Each is read by its rowid, so the cost is the passages asked for, whatever the sources hold.
        """
        wanted = [_rowid(source_id, seq) for source_id, seq in places]
        found: dict[int, Passage] = {}
        async with self._store._use("read the sources") as db:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = await db.execute_fetchall(
                    f"SELECT rowid, source_id, seq, text FROM source_passages WHERE rowid IN ({_marks(len(chunk))})",
                    tuple(chunk),
                )
                found.update({int(r[0]): Passage(int(r[1]), int(r[2]), str(r[3])) for r in rows})
        return [found[rowid] for rowid in wanted if rowid in found]

    async def rank(self, passages: Sequence[str], question: str) -> list[int]:
        """Rank passages that are not stored (a message asked about) by bm25 against ``question``.

        Returns the indexes of the matching passages, best first. Uses a temporary FTS5 table of this
        connection, emptied again before the connection is handed on, so nothing reaches the database file.
        """
        query = match_query(question)
        if query is None or not passages:
            return []
        async with self._store._use("search the message") as db:
            await db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS temp.ranked_passages USING fts5"
                " (text, tokenize = 'porter unicode61 remove_diacritics 2')"
            )
            try:
                await db.executemany(
                    "INSERT INTO temp.ranked_passages (rowid, text) VALUES (?, ?)",
                    [(index, passage) for index, passage in enumerate(passages)],
                )
                rows = await db.execute_fetchall(
                    "SELECT rowid FROM temp.ranked_passages WHERE ranked_passages MATCH ?"
                    " ORDER BY bm25(ranked_passages), rowid",
                    (query,),
                )
            finally:
                await db.execute("DELETE FROM temp.ranked_passages")
        return [int(row[0]) for row in rows]


def _rowid(source_id: int, seq: int) -> int:
    return source_id * _ROWIDS_PER_SOURCE + seq


async def _usage(db: aiosqlite.Connection, scope_id: int, author_id: int) -> SourceUsage:
    """How many sources, of how many bytes, the channel ``scope_id`` and the person ``author_id`` hold."""
    counts: list[int] = []
    for column, value in (("scope_id", scope_id), ("author_id", author_id)):
        rows = list(
            await db.execute_fetchall(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM sources WHERE {column} = ?", (value,)
            )
        )
        counts += [int(rows[0][0]), int(rows[0][1])]
    return SourceUsage(*counts)
