"""Stored settings: channel and guild rows, None = inherit, kept across restarts."""

import sqlite3
from pathlib import Path

import pytest

from bot.store import Scope, Store, StoredSettings

from ._raw import query


async def test_a_place_with_nothing_set_reads_as_all_none(store: Store) -> None:
    """A channel never configured has an empty row (everything inherits)."""
    assert await store.settings.get(Scope.CHANNEL, 10) == StoredSettings()


async def test_update_sets_only_the_named_settings(store: Store) -> None:
    """A later update keeps the settings it does not name."""
    await store.settings.update(Scope.CHANNEL, 10, {"temperature": 0.7, "history": False}, guild_id=1)
    row = await store.settings.update(Scope.CHANNEL, 10, {"system_prompt": "Be brief."}, guild_id=1)
    assert row == StoredSettings(temperature=0.7, history=False, system_prompt="Be brief.")
    assert await store.settings.get(Scope.CHANNEL, 10) == row


async def test_none_clears_a_setting_and_an_empty_row_is_deleted(store: Store, db_path: Path) -> None:
    """Clearing the last setting removes the row."""
    await store.settings.update(Scope.CHANNEL, 10, {"top_p": 0.9, "variant": "qlora"})
    await store.settings.update(Scope.CHANNEL, 10, {"top_p": None})
    assert await store.settings.get(Scope.CHANNEL, 10) == StoredSettings(variant="qlora")
    await store.settings.update(Scope.CHANNEL, 10, {"variant": None})
    assert query(db_path, "SELECT COUNT(*) FROM settings") == [(0,)]


async def test_guild_and_channel_rows_with_the_same_id_are_separate(store: Store) -> None:
    """Scope is part of the key: a guild's defaults never read as a channel's settings."""
    await store.settings.update(Scope.GUILD, 5, {"max_new_tokens": 100})
    await store.settings.update(Scope.CHANNEL, 5, {"max_new_tokens": 200}, guild_id=5)
    rows = await store.settings.get_many([(Scope.CHANNEL, 5), (Scope.CHANNEL, 6), (Scope.GUILD, 5)])
    assert rows == [StoredSettings(max_new_tokens=200), StoredSettings(), StoredSettings(max_new_tokens=100)]


async def test_reset_forgets_every_setting_of_one_place(store: Store) -> None:
    """Reset removes the row and says whether there was one."""
    await store.settings.update(Scope.CHANNEL, 10, {"temperature": 1.0})
    await store.settings.update(Scope.CHANNEL, 11, {"temperature": 1.5})
    assert await store.settings.reset(Scope.CHANNEL, 10) is True
    assert await store.settings.reset(Scope.CHANNEL, 10) is False
    assert await store.settings.get(Scope.CHANNEL, 11) == StoredSettings(temperature=1.5)


async def test_forget_guild_removes_its_defaults_and_its_channels(store: Store) -> None:
    """Leaving a guild forgets its defaults and every channel row recorded in it."""
    await store.settings.update(Scope.GUILD, 1, {"history": True})
    await store.settings.update(Scope.CHANNEL, 10, {"history": False}, guild_id=1)
    await store.settings.update(Scope.CHANNEL, 20, {"history": False}, guild_id=2)
    assert await store.settings.forget_guild(1) == 2
    assert await store.settings.get(Scope.CHANNEL, 20) == StoredSettings(history=False)


async def test_settings_survive_a_restart(db_path: Path) -> None:
    """What was stored is read back, types intact, after the database is closed and opened again."""
    async with await Store.open(db_path) as store:
        await store.settings.update(
            Scope.CHANNEL, 10, {"temperature": 0.25, "max_new_tokens": 64, "history": False, "system_prompt": "Hi."}
        )
    async with await Store.open(db_path) as store:
        assert await store.settings.get(Scope.CHANNEL, 10) == StoredSettings(
            temperature=0.25, max_new_tokens=64, history=False, system_prompt="Hi."
        )


async def test_an_unknown_setting_is_refused(store: Store) -> None:
    """A misspelt name is a bug, not a silent no-op."""
    with pytest.raises(ValueError, match="unknown settings: temprature"):
        await store.settings.update(Scope.CHANNEL, 10, {"temprature": 1.0})


async def test_the_table_refuses_out_of_range_values(store: Store, db_path: Path) -> None:
    """The CHECK constraints guard the ranges even against a bug that skips validation."""
    with pytest.raises(sqlite3.IntegrityError):
        query(
            db_path,
            "INSERT INTO settings (scope, place_id, temperature, updated_at) VALUES ('channel', 1, 3.0, 0)",
        )
