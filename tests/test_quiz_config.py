"""The ``[skills] quiz_seconds`` key: its default, its range, and how the bot gets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config
from bot.errors import ConfigError


def test_quiz_seconds_defaults_to_thirty() -> None:
    """Without a [skills] section a quiz takes answers for 30 seconds."""
    assert load_config(None).skills.quiz_seconds == 30


def test_quiz_seconds_is_read(tmp_path: Path) -> None:
    """[skills] quiz_seconds sets the default time of /quiz start."""
    path = tmp_path / "config.toml"
    path.write_text("[skills]\nquiz_seconds = 45\n", encoding="utf-8")
    assert load_config(path).skills.quiz_seconds == 45


@pytest.mark.parametrize("seconds", [9, 301])
def test_quiz_seconds_out_of_range_names_the_key(tmp_path: Path, seconds: int) -> None:
    """A default outside 10-300 seconds is refused at start-up, naming the key."""
    path = tmp_path / "config.toml"
    path.write_text(f"[skills]\nquiz_seconds = {seconds}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"skills\.quiz_seconds: Input should be"):
        load_config(path)
