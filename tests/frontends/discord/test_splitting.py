"""Splitting replies over 2000 characters without breaking code fences, losing or repeating text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.frontends.discord.ui.splitting import MESSAGE_LIMIT, Piece, join_pieces, split_message, split_pieces

FENCE = "```"
# Small limits reach the edge cases (fence lines at the limit, reopeners that do not fit) quickly.
LIMITS = (10, 11, 16, 50, 73, 200, MESSAGE_LIMIT)
PROPERTY = settings(max_examples=400, deadline=None)


def fences_balanced(piece: str) -> bool:
    """Whether a message opens and closes code blocks in pairs."""
    return sum(1 for line in piece.split("\n") if line.strip().startswith(FENCE)) % 2 == 0


def _repeat(unit: str, counts: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """``unit`` repeated a drawn number of times: long lines without asking hypothesis for long text."""
    return counts.map(lambda count: unit * count)


@st.composite
def texts(draw: st.DrawFn) -> tuple[str, int]:
    """A model-like text and a limit: prose, long lines, fences of every length, stray backticks."""
    limit = draw(st.sampled_from(LIMITS))
    near_limit = st.integers(max(0, limit - 8), limit + 8)
    long = st.integers(limit + 1, 3 * limit)
    line = st.one_of(
        st.sampled_from(["", FENCE, "```python", "  ```js", "``", "````", "```\r", "hello world", "print(1)"]),
        st.text(alphabet=" ab`\t\r.", max_size=15),
        st.text(max_size=20),  # anything at all, Unicode whitespace included
        _repeat("x", long),  # a long line without spaces: hard cuts
        _repeat("word ", st.integers(1, limit // 2)),  # a long line with spaces: space cuts
        _repeat("a", near_limit).map(lambda tail: FENCE + tail),  # a fence line at the limit, no language tag
        _repeat("b", near_limit).map(lambda tail: "```python " + tail),  # the same with a language tag
        _repeat("c", long).map(lambda tail: FENCE + tail),  # a fence line longer than the limit
        _repeat("d ", long).map(lambda tail: "```rust " + tail),  # the same with a language tag and spaces
        _repeat("`", near_limit),  # only backticks
        _repeat(" ", near_limit).map(lambda indent: indent + FENCE),  # a fence after a long indent
    )
    separator = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    return separator.join(draw(st.lists(line, max_size=12))), limit


@st.composite
def short_line_texts(draw: st.DrawFn) -> tuple[str, int]:
    """A text of many lines, each well under half the limit, some of them fences."""
    limit = draw(st.sampled_from([limit for limit in LIMITS if limit >= 50]))
    line = st.one_of(st.sampled_from(["", FENCE, "```py"]), st.text(alphabet=" ab`.", max_size=limit // 2 - 5))
    return "\n".join(draw(st.lists(line, min_size=1, max_size=60))), limit


def test_short_text_is_one_message() -> None:
    """A reply that fits stays whole."""
    assert split_message("hello\nworld") == ["hello\nworld"]


def test_empty_text_is_one_empty_message() -> None:
    """An empty reply gives one empty message, as before."""
    assert split_message("") == [""]


def test_short_text_with_an_open_fence_is_untouched() -> None:
    """A reply that fits is not changed, even with a block it leaves open."""
    assert split_message("```python\nprint(1") == ["```python\nprint(1"]


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
    assert all(p.endswith(" ") for p in pieces)
    assert "".join(pieces) == text


def test_line_without_spaces_is_cut_hard_at_the_limit() -> None:
    """A line with no space is cut into full messages."""
    text = "x" * 4500
    assert split_message(text) == ["x" * 2000, "x" * 2000, "x" * 500]


def test_space_in_the_first_half_is_not_used() -> None:
    """A space early in the room would waste the message: the cut is hard instead."""
    text = "ab " + "x" * 100
    assert split_message(text, 50) == [text[:50], text[50:100], text[100:]]


def test_opener_is_not_left_alone_before_a_line_that_is_cut_anyway() -> None:
    """An opener goes with the start of a code line too long for a message, not into an empty block."""
    text = "intro\n```py\n" + "x" * 3000
    pieces = split_message(text)
    assert pieces[0] == "intro"
    assert pieces[1].startswith("```py\nxxx")
    assert all(p.strip() != "```py\n```" for p in pieces)


def test_text_left_inside_a_block_ends_with_a_closed_piece() -> None:
    """A long text that ends inside a code block still gets a closing fence in its last piece."""
    pieces = split_pieces("```py\n" + "x = 1\n" * 400)
    assert pieces[-1].closed
    assert pieces[-1].text.endswith("\n```")


def test_long_opener_is_reopened_with_its_language_tag() -> None:
    """An opener line too long to repeat is reopened with its language tag alone."""
    text = "```python " + "t" * 1000 + "\n" + "print(1)\n" * 300 + "```"
    pieces = split_message(text)
    assert pieces[1].startswith("```python\n")


def test_long_opener_without_a_short_tag_is_reopened_bare() -> None:
    """An opener line whose tag is too long to repeat is reopened with bare backticks."""
    text = FENCE + "t" * 1000 + "\n" + "print(1)\n" * 300 + "```"
    pieces = split_message(text)
    assert pieces[1].startswith("```\nprint(1)")


def test_limit_below_the_minimum_is_refused() -> None:
    """A limit with no room for content between a reopened and a closing fence is an error."""
    with pytest.raises(ValueError, match="at least"):
        split_message("x" * 100, limit=9)


def test_join_refuses_a_piece_without_its_reopening_line() -> None:
    """Rebuilding checks that the lines said to be added are really there."""
    with pytest.raises(ValueError, match="reopening"):
        join_pieces([Piece("code\n```", reopener="```py", closed=True)])


@pytest.mark.timeout(5)
def test_issue_fence_line_longer_than_the_room_returns() -> None:
    """Regression: a 1996-character fence line used to freeze the event loop."""
    text = FENCE + "a" * 1993 + "\nhello\n```"
    pieces = split_pieces(text)
    assert all(len(p.text) <= MESSAGE_LIMIT for p in pieces)
    assert all(fences_balanced(p.text) for p in pieces)
    assert join_pieces(pieces) == text


def test_issue_1990_character_fence_line_gives_two_pieces() -> None:
    """Regression: a 1990-character fence line in a 2051-character text gave 12 pieces of 2000."""
    text = FENCE + "a" * 1987 + "\n" + "word " * 12
    pieces = split_pieces(text)
    assert len(pieces) == 2
    assert join_pieces(pieces) == text


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "`" * 400_000,
        "```\n" * 100_000,
        "\n" * 400_000,
        ("```py\n" + "x" * 3000 + "\n") * 100,
        (FENCE + "a" * 1997 + "\n") * 200,
        " " * 200_000 + FENCE,
        "x " * 200_000,
    ],
    ids=["backticks", "fences", "newlines", "long-code-lines", "fences-at-limit", "long-indent", "words"],
)
def test_big_adversarial_text_is_split_in_linear_time(text: str) -> None:
    """Texts of hundreds of thousands of characters split in well under a second each."""
    pieces = split_pieces(text)
    assert join_pieces(pieces) == text


@pytest.mark.timeout(30)
@PROPERTY
@given(texts())
def test_any_text_splits_into_non_empty_pieces_within_the_limit(case: tuple[str, int]) -> None:
    """Every piece of a split text has 1 to ``limit`` characters."""
    text, limit = case
    pieces = split_message(text, limit)
    if len(text) > limit:
        assert all(1 <= len(p) <= limit for p in pieces)
    else:
        assert pieces == [text]


@pytest.mark.timeout(30)
@PROPERTY
@given(texts())
def test_any_split_text_has_balanced_fences_in_every_piece(case: tuple[str, int]) -> None:
    """Every piece of a text that needed splitting opens and closes its code blocks in pairs."""
    text, limit = case
    pieces = split_message(text, limit)
    assert len(text) <= limit or all(fences_balanced(p) for p in pieces)


@pytest.mark.timeout(30)
@PROPERTY
@given(texts())
def test_any_text_is_rebuilt_exactly_from_its_pieces(case: tuple[str, int]) -> None:
    """Removing the added fence lines and restoring consumed newlines gives the original back."""
    text, limit = case
    assert join_pieces(split_pieces(text, limit)) == text


@pytest.mark.timeout(30)
@PROPERTY
@given(texts())
def test_split_message_sends_the_pieces_that_rebuild(case: tuple[str, int]) -> None:
    """The messages are exactly the texts of the recorded pieces."""
    text, limit = case
    assert split_message(text, limit) == [p.text for p in split_pieces(text, limit)]


@pytest.mark.timeout(30)
@PROPERTY
@given(short_line_texts())
def test_text_of_short_lines_is_cut_only_at_line_ends(case: tuple[str, int]) -> None:
    """Where every line fits in half a message, every cut falls at a line end."""
    text, limit = case
    pieces = split_pieces(text, limit)
    assert all(p.newline_after for p in pieces[:-1])
