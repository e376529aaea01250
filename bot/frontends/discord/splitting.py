"""Splitting long replies into Discord messages without breaking code blocks.

Discord messages hold at most 2000 characters. A reply is cut at line ends where
possible; a cut inside a fenced code block closes the fence at the end of one message
and reopens it (with its language) at the start of the next, so every message renders.
"""

from __future__ import annotations

MESSAGE_LIMIT = 2000
_FENCE = "```"


def _fence_change(line: str, opener: str | None) -> str | None:
    """The open fence after ``line``: a fence line opens one or closes the open one."""
    stripped = line.strip()
    if not stripped.startswith(_FENCE):
        return opener
    return None if opener is not None else stripped


def _hard_cut(line: str, room: int) -> int:
    """Where to cut a line too long for one message: at the last space if there is one."""
    cut = line.rfind(" ", 0, room)
    return cut + 1 if cut > room // 2 else room


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, closing and reopening code fences."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    opener: str | None = None  # the fence line of the block ``current`` ends inside, if any
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        candidate = line if not current else f"{current}\n{line}"
        after = _fence_change(line, opener)
        closing = len("\n" + _FENCE) if after is not None else 0
        if len(candidate) + closing <= limit:
            current, opener = candidate, after
            index += 1
            continue
        if current and current != (opener or ""):
            pieces.append(f"{current}\n{_FENCE}" if opener is not None else current)
            current = opener or ""
            continue
        # A single line does not fit even in an empty message: cut it.
        prefix = f"{current}\n" if current else ""
        room = limit - len(prefix) - (len("\n" + _FENCE) if opener is not None else 0)
        cut = _hard_cut(line, room)
        head = prefix + line[:cut]
        pieces.append(f"{head}\n{_FENCE}" if opener is not None else head)
        lines[index] = line[cut:]
        current = opener or ""
    if current and current != (opener or ""):
        pieces.append(current)
    return pieces
