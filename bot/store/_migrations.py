"""The database schema as an ordered list of migrations, and the code that applies them.

``MIGRATIONS[n - 1]`` takes a database from schema version ``n - 1`` to ``n``; the version a database has reached is
kept in ``PRAGMA user_version`` (0 for a new file). Each migration runs in its own transaction together with the
version bump, so a failed migration leaves the database exactly as it was.

Foreign keys are off while migrations run (SQLite's documented procedure for schema changes,
https://www.sqlite.org/lang_altertable.html#otheralter): with them on, dropping a table deletes the rows that refer
to it through ``ON DELETE CASCADE``, so rebuilding ``conversations`` would empty ``messages``. A table is rebuilt in
that procedure's order: create ``x_new``, copy the rows, drop ``x``, rename ``x_new`` to ``x``. (Renaming ``x`` away
first repoints the other tables' references at the old name, which is then dropped.) ``PRAGMA foreign_key_check``
runs before each commit, so a migration that leaves a row pointing at nothing is rolled back instead.

To change the schema, append a new script to `MIGRATIONS`. Never edit one that has shipped: databases in the wild
have already run it. That is also why the scripts spell out literal values (the CHECK lists below) instead of
building them from the enums in ``_models``.
"""

from __future__ import annotations

import logging
import sqlite3

import aiosqlite

from bot.errors import StoreError

__all__ = ["MIGRATIONS", "latest_version", "migrate", "split_statements"]

_log = logging.getLogger(__name__)

_V1_CONVERSATIONS_AND_MESSAGES = """
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL UNIQUE,
    guild_id    INTEGER,
    channel_id  INTEGER,
    owner_id    INTEGER,
    created_at  REAL    NOT NULL
);

CREATE INDEX conversations_owner_id ON conversations (owner_id);

CREATE TABLE messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id  INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content          TEXT    NOT NULL,
    author_id        INTEGER,
    author_name      TEXT,
    token_count      INTEGER CHECK (token_count IS NULL OR token_count >= 0),
    status           TEXT    NOT NULL CHECK (status IN ('ok', 'partial', 'cancelled', 'failed')),
    created_at       REAL    NOT NULL
);

CREATE INDEX messages_conversation_id_id ON messages (conversation_id, id);
CREATE INDEX messages_author_id ON messages (author_id);
"""

_V2_MESSAGE_LINKS = """
CREATE TABLE message_links (
    external_id  INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part         INTEGER NOT NULL CHECK (part >= 0)
);

CREATE INDEX message_links_message_id_part ON message_links (message_id, part);
"""
"""Where each stored message is shown: the Discord message ids of a user message or of every part of a reply."""

_SOURCES = """
CREATE TABLE sources (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_id     INTEGER NOT NULL,
    guild_id     INTEGER,
    title        TEXT    NOT NULL,
    url          TEXT,
    author_id    INTEGER NOT NULL,
    author_name  TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    text         TEXT    NOT NULL
);

CREATE INDEX sources_scope_id ON sources (scope_id, id);
CREATE INDEX sources_author_id ON sources (author_id);

CREATE VIRTUAL TABLE source_passages USING fts5 (
    text, source_id UNINDEXED, seq UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER sources_delete_passages AFTER DELETE ON sources BEGIN
    DELETE FROM source_passages WHERE source_id = old.id;
END;
"""
"""Sources for grounded answers (``/source``, ``/ask``): scoped to a channel or thread, with an FTS5 index of
their passages. A virtual table has no foreign keys, so a trigger removes a source's passages with it, whichever
code deletes the source."""

_RIDDLES = """
CREATE TABLE riddles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        INTEGER,
    channel_id      INTEGER,
    author_id       INTEGER NOT NULL,
    topic           TEXT,
    question        TEXT    NOT NULL,
    answer          TEXT    NOT NULL,
    solved_by       INTEGER,
    solved_by_name  TEXT,
    solved_at       REAL,
    created_at      REAL    NOT NULL
);

CREATE INDEX riddles_author_id ON riddles (author_id);
CREATE INDEX riddles_solved_by ON riddles (solved_by);
"""
"""Riddles posted with a Guess button (its custom_id holds the id) and who solved each one."""


_QUIZZES = """
CREATE TABLE quizzes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER,
    author_id   INTEGER NOT NULL,
    topic       TEXT,
    question    TEXT    NOT NULL,
    option_a    TEXT    NOT NULL,
    option_b    TEXT    NOT NULL,
    option_c    TEXT    NOT NULL,
    option_d    TEXT    NOT NULL,
    answer      TEXT    NOT NULL CHECK (answer IN ('A', 'B', 'C', 'D')),
    created_at  REAL    NOT NULL,
    ends_at     REAL    NOT NULL,
    revealed_at REAL
);

CREATE INDEX quizzes_guild_id ON quizzes (guild_id);
CREATE INDEX quizzes_pending ON quizzes (ends_at) WHERE revealed_at IS NULL;

CREATE TABLE quiz_answers (
    quiz_id      INTEGER NOT NULL REFERENCES quizzes (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL,
    letter       TEXT    NOT NULL CHECK (letter IN ('A', 'B', 'C', 'D')),
    answered_at  REAL    NOT NULL,
    PRIMARY KEY (quiz_id, user_id)
);

CREATE INDEX quiz_answers_user_id ON quiz_answers (user_id);
"""
"""/quiz: the questions (revealed_at stays NULL until the answer is shown) and one answer per person and quiz."""


_COMPARISONS_AND_VOTES = """
CREATE TABLE comparisons (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seed        INTEGER NOT NULL,
    blind       INTEGER NOT NULL CHECK (blind IN (0, 1)),
    author_id   INTEGER,
    guild_id    INTEGER,
    channel_id  INTEGER,
    created_at  REAL    NOT NULL
);

CREATE INDEX comparisons_author_id ON comparisons (author_id);

CREATE TABLE comparison_variants (
    comparison_id  INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL CHECK (position >= 0),
    variant        TEXT    NOT NULL,
    PRIMARY KEY (comparison_id, position)
);

CREATE TABLE votes (
    comparison_id  INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    voter_id       INTEGER NOT NULL,
    choice         TEXT    NOT NULL CHECK (choice IN ('a', 'b', 'tie')),
    created_at     REAL    NOT NULL,
    PRIMARY KEY (comparison_id, voter_id)
);

CREATE INDEX votes_voter_id ON votes (voter_id);
"""
"""/compare: each comparison with its variants in the order shown and its seed; one vote per person."""


_SETTINGS = """
CREATE TABLE settings (
    scope           TEXT    NOT NULL CHECK (scope IN ('guild', 'channel')),
    place_id        INTEGER NOT NULL,
    guild_id        INTEGER,
    temperature     REAL    CHECK (temperature IS NULL OR (temperature >= 0 AND temperature <= 2)),
    top_p           REAL    CHECK (top_p IS NULL OR (top_p > 0 AND top_p <= 1)),
    max_new_tokens  INTEGER CHECK (max_new_tokens IS NULL OR max_new_tokens > 0),
    system_prompt   TEXT,
    history         INTEGER CHECK (history IS NULL OR history IN (0, 1)),
    variant         TEXT,
    updated_at      REAL    NOT NULL,
    PRIMARY KEY (scope, place_id)
);

CREATE INDEX settings_guild_id ON settings (guild_id);
"""
"""Per-guild defaults and per-channel (or thread, or DM) settings; NULL means "inherit"."""


_CHARACTERS = """
CREATE TABLE characters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    name_key        TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    personality     TEXT    NOT NULL,
    speaking_style  TEXT    NOT NULL,
    avatar          BLOB,
    avatar_type     TEXT,
    avatar_url      TEXT,
    extra           TEXT    NOT NULL DEFAULT '{}',
    creator_id      INTEGER NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    CHECK ((avatar IS NULL) = (avatar_type IS NULL))
);

CREATE UNIQUE INDEX characters_guild_name ON characters (guild_id, name_key);
CREATE INDEX characters_creator_id ON characters (creator_id);
"""
"""Roleplay characters per guild (``/character``): ``name_key`` is the casefolded name, unique in its guild; the
avatar is kept as bytes because Discord's attachment links expire."""


_SCENES = """
CREATE TABLE scenes (
    thread_id   INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    creator_id  INTEGER NOT NULL,
    setting     TEXT    NOT NULL,
    rules       TEXT,
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  REAL    NOT NULL
);

CREATE INDEX scenes_guild_id ON scenes (guild_id);

CREATE TABLE scene_characters (
    scene_id           INTEGER NOT NULL REFERENCES scenes (thread_id) ON DELETE CASCADE,
    character_id       INTEGER NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,
    avatar_message_id  INTEGER,
    PRIMARY KEY (scene_id, character_id)
);

CREATE INDEX scene_characters_character_id ON scene_characters (character_id);

CREATE TABLE scene_humans (
    scene_id      INTEGER NOT NULL REFERENCES scenes (thread_id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL,
    display_name  TEXT    NOT NULL,
    position      INTEGER NOT NULL,
    PRIMARY KEY (scene_id, user_id)
);

CREATE INDEX scene_humans_user_id ON scene_humans (user_id);
"""
"""Roleplay scenes (``/scene``): one per Discord thread (``thread_id``); ``rules`` is a JSON list, NULL for the
card's; the cast and the humans who joined keep their order in ``position``; ``avatar_message_id`` is the
message whose attachment serves an uploaded avatar as an URL (see ``bot/frontends/discord/features/scenes/cog.py``)."""

_SCENE_MODES = """
ALTER TABLE scenes ADD COLUMN mode TEXT;
"""
"""Who speaks next in a scene (``/scene mode``): ``model``, ``addressed`` or ``round-robin``; NULL: the config's."""


_RIDDLE_EXPLANATIONS = """
ALTER TABLE riddles ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
"""
"""The model's reasoning after a riddle's answer, shown when the answer is revealed ('' when it gave none)."""

_CARD_EXAMPLES_ARE_NOT_A_SPEAKING_STYLE = """
UPDATE characters SET speaking_style = ''
WHERE speaking_style <> ''
  AND json_valid(extra)
  AND speaking_style = json_extract(extra, '$.mes_example')
  AND json_type(extra, '$.extensions.airoboros_bot.speaking_style') IS NULL;
"""
"""Cards imported before scenes used ``mes_example`` as example dialogue had it copied into the speaking style (and
so into the sheet, pinned, ``{{user}}:`` lines and all); the card keeps it in ``extra``, so the copy goes. A speaking
style our own export carried (``extensions.airoboros_bot``) is a real one and stays."""

_CATCH_UP_MARKS = """
ALTER TABLE conversations ADD COLUMN seen_up_to INTEGER;

UPDATE conversations SET seen_up_to = (
    SELECT MAX(l.external_id) FROM messages m JOIN message_links l ON l.message_id = m.id
    WHERE m.conversation_id = conversations.id AND m.role = 'user'
);
"""
"""The newest platform message id of a person's message ever stored in each conversation. Deleting messages
(``/forget-me``, ``/reset``, a deletion on Discord) never lowers it, so the catch-up after a new gateway session
reads only what came after it and never brings a deleted message back. It is one id, no text, no author."""

_PASSAGE_ROWIDS = """
DROP TRIGGER sources_delete_passages;

CREATE VIRTUAL TABLE source_passages_new USING fts5 (
    text, source_id UNINDEXED, seq UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2'
);

INSERT INTO source_passages_new (rowid, text, source_id, seq)
    SELECT source_id * 4294967296 + seq, text, source_id, seq FROM source_passages ORDER BY source_id, seq;

DROP TABLE source_passages;

ALTER TABLE source_passages_new RENAME TO source_passages;

CREATE TRIGGER sources_delete_passages AFTER DELETE ON sources BEGIN
    DELETE FROM source_passages
        WHERE rowid BETWEEN old.id * 4294967296 AND old.id * 4294967296 + 4294967295;
END;
"""
"""A passage's rowid says which it is: ``source_id * 2**32 + seq``. A source's passages are then one rowid range
(the trigger deletes them without scanning the index) and any passage is read by its rowid, so ``/ask`` reads the
few passages it may use instead of every source's whole text."""


MIGRATIONS: tuple[str, ...] = (
    _V1_CONVERSATIONS_AND_MESSAGES,
    _V2_MESSAGE_LINKS,
    _SOURCES,
    _RIDDLES,
    _QUIZZES,
    _COMPARISONS_AND_VOTES,
    _SETTINGS,
    _CHARACTERS,
    _SCENES,
    _RIDDLE_EXPLANATIONS,
    _SCENE_MODES,
    _CARD_EXAMPLES_ARE_NOT_A_SPEAKING_STYLE,
    _CATCH_UP_MARKS,
    _PASSAGE_ROWIDS,
)
"""Every migration in order; the schema version of a fully migrated database is ``len(MIGRATIONS)``."""


def latest_version() -> int:
    """The schema version this code brings a database to."""
    return len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into single statements.

    Uses SQLite's own tokenizer (`sqlite3.complete_statement`), so semicolons inside string literals, comments and
    ``CREATE TRIGGER ... BEGIN ...; END;`` bodies do not split a statement.
    """
    statements: list[str] = []
    start = 0
    for index, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : index + 1]):
            statements.append(script[start : index + 1].strip())
            start = index + 1
    rest = script[start:].strip()
    if rest:
        statements.append(rest)
    return statements


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def _apply(db: aiosqlite.Connection, version: int, script: str) -> bool:
    """Run the migration that reaches `version`; False if another connection already did.

    Foreign keys must be off (see the module docstring); the check that they still hold runs before the commit.
    """
    # BEGIN IMMEDIATE takes the write lock first, so two processes opening the same file cannot both migrate.
    try:
        await db.execute("BEGIN IMMEDIATE")
        if await _user_version(db) >= version:
            await db.rollback()
            return False
        for statement in split_statements(script):
            await db.execute(statement)
        async with db.execute("PRAGMA foreign_key_check") as cursor:
            violation = await cursor.fetchone()
        if violation is not None:
            table, _, parent, _ = violation
            raise sqlite3.IntegrityError(
                f"it would leave rows of table {table!r} pointing at missing rows of {parent!r}; nothing was changed"
            )
        # PRAGMA does not take parameters; `version` is an int we computed, never user input.
        await db.execute(f"PRAGMA user_version = {int(version)}")
        await db.commit()
    except BaseException:
        await db.rollback()  # a no-op when no transaction is open
        raise
    return True


async def _set_foreign_keys(db: aiosqlite.Connection, on: bool) -> None:
    """Turn foreign key enforcement on or off; outside a transaction only (inside one SQLite ignores it)."""
    await db.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    async with db.execute("PRAGMA foreign_keys") as cursor:
        row = await cursor.fetchone()
    if row is None or bool(row[0]) != on:
        raise sqlite3.OperationalError(f"could not turn foreign keys {'on' if on else 'off'}")


async def migrate(db: aiosqlite.Connection, path: str) -> int:
    """Apply every pending migration to `db` (the database at `path`) and return the resulting schema version.

    Foreign keys are off while migrations run and on again when this returns (or raises). Raises `StoreError` if
    the database is newer than this code or a migration fails (naming the table a migration would leave broken).
    """
    latest = latest_version()
    current = await _user_version(db)
    if current > latest:
        raise StoreError(
            f"The database at {path} has schema version {current}, but this version of the bot only knows "
            f"versions up to {latest}. Upgrade the bot, or point it at another database file."
        )
    if current == latest:
        return current
    await _set_foreign_keys(db, False)
    try:
        for version in range(current + 1, latest + 1):
            try:
                applied = await _apply(db, version, MIGRATIONS[version - 1])
            except sqlite3.Error as exc:
                raise StoreError(
                    f"Could not migrate the database at {path} to schema version {version}: {exc}"
                ) from exc
            if applied:
                _log.info("Migrated the database at %s to schema version %d", path, version)
    finally:
        await _set_foreign_keys(db, True)
    return await _user_version(db)
