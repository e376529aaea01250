"""The code map holds: layers import only downwards, features never import the bot class, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"
DISCORD = BOT / "frontends" / "discord"
MAX_LINES = 500
"""Past this a module holds two jobs (the issue that set the layout: "no module in bot/ is past 500 lines")."""
LAYERS = ("store", "inference", "core", "frontends")
"""From the bottom up: a layer may import the ones below it, never one above."""


def modules() -> list[Path]:
    return sorted(BOT.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at run time or for types."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _name(path: Path) -> str:
    return str(path.relative_to(BOT.parent))


@pytest.mark.parametrize("path", modules(), ids=_name)
def test_every_module_is_small_and_says_what_it_is_for(path: Path) -> None:
    """Each module is under the size limit and opens with a docstring."""
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{_name(path)} is past {MAX_LINES} lines: split it along a seam"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{_name(path)} does not open with a line saying what it is for"


@pytest.mark.parametrize("path", modules(), ids=_name)
def test_layers_import_only_downwards(path: Path) -> None:
    """store < inference < core < frontends: nothing imports a layer above its own."""
    parts = path.relative_to(BOT).parts
    if parts[0] not in LAYERS:
        return  # the command line, config, errors, ...: the top, or shared by all
    above = LAYERS[LAYERS.index(parts[0]) + 1 :]
    wrong = sorted(name for name in imported(path) if name.split(".")[:2] in (["bot", layer] for layer in above))
    assert not wrong, f"{_name(path)} imports a layer above its own: {wrong}"


@pytest.mark.parametrize("path", sorted((DISCORD / "features").rglob("*.py")), ids=_name)
def test_no_feature_imports_the_bot_class(path: Path) -> None:
    """A feature is given discord.py's bot and its services; the client module stays out of it."""
    assert not {"bot.frontends.discord.app.client", "bot.frontends.discord.app.runner"} & imported(path)


def test_the_discord_frontend_reads_as_a_map() -> None:
    """At most 6 modules sit directly in the Discord frontend beside its packages."""
    loose = sorted(path.name for path in DISCORD.glob("*.py"))
    assert len(loose) <= 6, loose
    assert {"app", "ui", "features"} <= {path.name for path in DISCORD.iterdir() if path.is_dir()}
