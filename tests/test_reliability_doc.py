"""docs/reliability.md: every row of its tables names a test that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
TEST_NAME = re.compile(r"`([\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    """The table rows of the document (header and rule lines left out)."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("|") and not line.startswith("|---")]
    return [row for row in rows if not re.match(r"\|\s*(Fault|Input|Rule|Promise)\s*\|", row)]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_row_names_a_test() -> None:
    """Each row carries at least one `file::test` reference."""
    rows = _rows()
    assert len(rows) > 100
    assert [row for row in rows if not TEST_NAME.search(row)] == []


def test_every_named_test_exists() -> None:
    """Each `file::test` in the document is a test function in that file under tests/."""
    missing = []
    for file, name in TEST_NAME.findall(DOC.read_text(encoding="utf-8")):
        path = ROOT / "tests" / file
        if not path.is_file() or name not in _test_functions(path):
            missing.append(f"{file}::{name}")
    assert missing == []
