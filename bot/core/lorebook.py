"""A card's lorebook (``character_book``): which entries a turn's recent messages trigger, within a token budget.

The rules, in the order they apply (Character Card V2 and V3 specs; SillyTavern's world info where they leave a
choice):

1. Reading (:func:`read_lorebook`) is lenient: an entry that is not an object, or has no text, is skipped; a field
   of the wrong type takes its default. Nothing here refuses a card.
2. An entry with ``enabled`` false never triggers. Nor does one with ``use_regex`` true: a card's regular expression
   run on people's messages could stall the bot (Python's ``re`` has no time limit), so such entries are kept for
   export only.
3. A ``constant`` entry always triggers. Any other triggers when one of its ``keys`` appears in the last
   ``scan_depth`` messages (the book's own, else the caller's default), as plain text: case-insensitively unless
   ``case_sensitive`` is true. With ``selective`` and some ``secondary_keys``, one of those must appear too.
   Keys and contents have their macros filled (``{{char}}`` is the book's character).
4. Decorator lines (V3: lines opening with ``@@`` at the start of ``content``) are not text: they are dropped.
5. Budget (:func:`lore_for_turn`): triggered entries are kept by ``priority`` (highest first; V2: "lower priority
   value = discarded first"), then ``insertion_order`` (highest first, as SillyTavern keeps them), each while it fits
   both its book's ``token_budget`` (if any) and the scene's budget; one that does not fit is skipped and smaller
   ones may still come in.
6. Order in the prompt: ``before_char`` entries first, then the rest; within each, ``insertion_order`` ascending
   ("lower insertion order = inserted higher"), then the cast's order, then the book's.

``recursive_scanning`` (entries triggering entries) is not done: one scan over the people's and characters' lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LoreEntry", "Lorebook", "lore_for_turn", "read_lorebook"]

Fill = Callable[[str], str]
"""Fills a text's macros for the book's character (see :func:`bot.core.macros.fill_macros`)."""


@dataclass(frozen=True, slots=True)
class LoreEntry:
    """One entry of a lorebook, as far as the prompt is concerned."""

    keys: tuple[str, ...]
    content: str
    insertion_order: float = 0
    priority: float = 0
    constant: bool = False
    case_sensitive: bool = False
    selective: bool = False
    secondary_keys: tuple[str, ...] = ()
    before_char: bool = False


@dataclass(frozen=True, slots=True)
class Lorebook:
    """A card's ``character_book``: its usable entries in the book's order, and its own limits (None: unset)."""

    entries: tuple[LoreEntry, ...]
    scan_depth: int | None = None
    token_budget: int | None = None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _positive(value: Any) -> int | None:
    number = _number(value, 0)
    return int(number) if number >= 1 else None


def _strings(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else []
    return tuple(item.strip() for item in items if isinstance(item, str) and item.strip())


def _content(text: str) -> str:
    """The entry's text without its V3 decorator lines (``@@depth 4``, ...) at the start."""
    lines = text.strip().splitlines()
    while lines and lines[0].lstrip().startswith("@@"):
        lines.pop(0)
    return "\n".join(lines).strip()


def _entry(raw: Mapping[str, Any]) -> LoreEntry | None:
    content = raw.get("content")
    if raw.get("enabled", True) is False or raw.get("use_regex") is True or not isinstance(content, str):
        return None
    text = _content(content)
    if not text:
        return None
    return LoreEntry(
        keys=_strings(raw.get("keys")),
        content=text,
        insertion_order=_number(raw.get("insertion_order"), 0),
        priority=_number(raw.get("priority"), 0),
        constant=raw.get("constant") is True,
        case_sensitive=raw.get("case_sensitive") is True,
        selective=raw.get("selective") is True,
        secondary_keys=_strings(raw.get("secondary_keys")),
        before_char=raw.get("position") == "before_char",
    )


def read_lorebook(raw: Any) -> Lorebook | None:
    """The usable part of a card's ``character_book``, or None when it has no entry that could ever be used."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("entries"), list):
        return None
    entries = tuple(
        entry for entry in (_entry(item) for item in raw["entries"] if isinstance(item, Mapping)) if entry is not None
    )
    if not entries:
        return None
    depth, budget = _positive(raw.get("scan_depth")), _positive(raw.get("token_budget"))
    return Lorebook(entries, scan_depth=depth, token_budget=budget)


def _appears(keys: Sequence[str], text: str, folded: str, entry: LoreEntry, fill: Fill) -> bool:
    for filled in (fill(key) for key in keys):
        if filled and (filled in text if entry.case_sensitive else filled.casefold() in folded):
            return True
    return False


def _triggered(entry: LoreEntry, text: str, folded: str, fill: Fill) -> bool:
    if entry.constant:
        return True
    if not _appears(entry.keys, text, folded, entry, fill):
        return False
    return not (entry.selective and entry.secondary_keys) or _appears(entry.secondary_keys, text, folded, entry, fill)


@dataclass(frozen=True, slots=True)
class _Candidate:
    text: str
    entry: LoreEntry
    book: int
    index: int
    tokens: int


def lore_for_turn(
    books: Sequence[tuple[Lorebook, Fill]],
    recent: Sequence[str],
    *,
    scan_depth: int,
    budget: int,
    count_tokens: Callable[[str], int],
) -> tuple[str, ...]:
    """The texts of the entries ``recent`` (the scene's messages, oldest first) triggers, in prompt order.

    ``books`` are the cast's lorebooks in cast order, each with the macro filler of its character; ``budget`` is the
    most tokens all entries together may take (each book's ``token_budget`` limits its own entries too).
    """
    candidates: list[_Candidate] = []
    for book_index, (book, fill) in enumerate(books):
        depth = book.scan_depth or scan_depth
        text = "\n".join(list(recent)[-depth:] if depth > 0 else [])
        folded = text.casefold()
        for index, entry in enumerate(book.entries):
            if _triggered(entry, text, folded, fill):
                content = fill(entry.content)
                candidates.append(_Candidate(content, entry, book_index, index, count_tokens(content) + 1))
    used = [0] * len(books)
    total = 0
    kept: list[_Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (-c.entry.priority, -c.entry.insertion_order, c.book, c.index)):
        own = books[candidate.book][0].token_budget
        if total + candidate.tokens > budget or (own is not None and used[candidate.book] + candidate.tokens > own):
            continue
        kept.append(candidate)
        total += candidate.tokens
        used[candidate.book] += candidate.tokens
    kept.sort(key=lambda c: (not c.entry.before_char, c.entry.insertion_order, c.book, c.index))
    return tuple(candidate.text for candidate in kept)
