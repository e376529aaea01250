"""Splitting replies over 2000 characters without breaking code fences."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.frontends.discord.splitting import MESSAGE_LIMIT, split_message


def fences_balanced(piece: str) -> bool:
    return sum(1 for line in piece.split("\n") if line.strip().startswith("```")) % 2 == 0


def test_short_text_is_one_message() -> None:
    """A reply that fits stays whole."""
    assert split_message("hello\nworld") == ["hello\nworld"]


def test_long_prose_is_cut_at_line_ends() -> None:
    """Prose is cut between lines and nothing is lost."""
    text = "\n".join(f"line {i} " + "x" * 80 for i in range(60))
    pieces = split_message(text)
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    assert "\n".join(pieces) == text


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    """A cut inside a code block closes the fence and reopens it with the language."""
    code = "\n".join(f"    print({i})  # " + "y" * 40 for i in range(80))
    text = f"Here you go:\n```python\n{code}\n```\nDone."
    pieces = split_message(text)
    assert len(pieces) >= 3
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    assert all(fences_balanced(p) for p in pieces)
    assert pieces[0].endswith("\n```")
    assert pieces[1].startswith("```python\n")
    assert pieces[-1].endswith("Done.")


def test_one_very_long_line_is_cut_at_spaces() -> None:
    """A single line longer than a message is cut, at a space where there is one."""
    text = "word " * 1000
    pieces = split_message(text)
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    assert "".join(pieces) == text


@given(st.lists(st.sampled_from(["```", "```js", "short line", "x" * 700, "y" * 2500, ""]), max_size=30))
def test_any_text_splits_within_limits_with_balanced_fences(lines: list[str]) -> None:
    """Whatever the text, every piece fits and no piece leaves a code fence open."""
    text = "\n".join(lines)
    pieces = split_message(text)
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces)
    if sum(1 for line in lines if line.startswith("```")) % 2 == 0:
        assert all(fences_balanced(p) for p in pieces)
