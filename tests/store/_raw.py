"""Plain `sqlite3` access to a database file, to check what really is on disk, and the faults the store meets."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from bot.store import Store


def query(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection and return every row."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        return connection.execute(sql, parameters).fetchall()


@contextmanager
def write_lock_held(path: Path, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """Another process's connection holding the write lock (``BEGIN IMMEDIATE``) until the block ends."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute(begin)
        other.execute("INSERT INTO conversations (key, created_at) VALUES ('dm:other', 0)")
        try:
            yield other
        finally:
            other.execute("ROLLBACK")


async def limit_pages(store: Store, pages: int | None) -> None:
    """Cap the database at ``pages`` pages (None: its current size) on the store's connection: a full disk.

    With None, the file's free pages are given back first (``VACUUM``): a migration that rebuilt a table leaves some,
    and a write that reuses them would not find the disk full.
    """
    async with store._use("limit the size") as db:
        if pages is None:
            await db.execute("VACUUM")
            (row,) = await db.execute_fetchall("PRAGMA page_count")
            pages = int(row[0])
        await db.execute(f"PRAGMA max_page_count = {pages}")
