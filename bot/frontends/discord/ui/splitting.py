"""Splitting long replies into Discord messages without breaking code blocks.

Discord messages hold at most 2000 characters. A text that fits is sent as it is, in one
message. A longer text is cut into pieces of 1 to ``limit`` characters each, greedily from the
start, in time linear in its length. Where each piece ends, in order of preference:

1. at the end of a line: the last line end that fits. The ``"\\n"`` there belongs to no piece.
   A cut that would leave a fence opener as the last line of a piece is avoided when there is
   another line end, and is not made at all when the line after the opener is too long for a
   piece of its own (the opener then goes with the start of that line: no empty code block);
2. after the last space in the second half of the room (the space stays in the first piece);
3. anywhere (a hard cut), keeping as many characters as fit.

A fence line is a line that starts with ``` once stripped of whitespace, as Discord reads it;
each one opens a code block or closes the open one. Every piece of a split text is balanced:
where a piece ends inside a block, the splitter appends a closing line ("\\n```") and starts the
next piece with a reopening line and a ``"\\n"``. The reopening line is the opener line, stripped,
when it is at most a tenth of ``limit`` long (at least 3 characters); otherwise ``` and the
language tag (the first word after the backticks) if that is short enough; otherwise a bare ```.
A block the text leaves open at its very end is closed too. A single-piece text is returned
untouched, balanced or not.

Round trip: :func:`split_pieces` says for each piece which reopening line it starts with,
whether it ends with an added closing line, and whether the cut after it consumed one
``"\\n"``. :func:`join_pieces` removes the added lines and puts the consumed newlines back,
giving the original text exactly: no character is dropped or repeated. The information lives
in :class:`Piece`, never in whitespace at the ends of a message, which Discord trims. The pieces
themselves may begin or end with whitespace (a space cut keeps its space; a hard cut may fall
next to a newline), and a text made of a long run of whitespace gives whitespace-only pieces.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MESSAGE_LIMIT = 2000
_FENCE = "```"
_CLOSER = "\n" + _FENCE
# The smallest limit that leaves room for content between a reopening and a closing line.
_MIN_LIMIT = 10


@dataclass(frozen=True)
class Piece:
    """One message of a split text, and what the splitter added around the text's own characters.

    ``reopener`` is the fence line put (with a ``"\\n"``) before the characters, or ``""``;
    ``closed`` says whether ``"\\n```"`` was appended; ``newline_after`` says whether the cut
    after this piece consumed one ``"\\n"`` of the text.
    """

    text: str
    reopener: str = ""
    closed: bool = False
    newline_after: bool = False


def _is_fence(line: str) -> bool:
    """Whether a line opens or closes a code block."""
    return line.strip().startswith(_FENCE)


def _fence_lines(text: str, start: int, end: int) -> tuple[int, int]:
    """How many fence lines ``text[start:end]`` holds, and where the last one starts (-1: none)."""
    count, last, pos = 0, -1, start
    while True:
        newline = text.find("\n", pos, end)
        line_end = end if newline == -1 else newline
        if _is_fence(text[pos:line_end]):
            count, last = count + 1, pos
        if newline == -1:
            return count, last
        pos = newline + 1


def _reopener(text: str, start: int, limit: int) -> str:
    """The line that reopens the block whose opener line starts at ``start``: short enough to leave room."""
    cap = max(len(_FENCE), limit // 10)
    # Only the head of the line matters, and reading no further keeps a huge opener line cheap.
    line = text[start : start + limit].split("\n", 1)[0].strip()
    if len(line) <= cap:
        return line
    words = line[len(_FENCE) :].split(maxsplit=1)
    tagged = _FENCE + words[0] if words else _FENCE
    return tagged if len(tagged) <= cap else _FENCE


def _fits(text: str, start: int, end: int, room: int, inside: bool) -> bool:
    """Whether ``text[start:end]``, plus the closing line it may need, fits in ``room``."""
    count, _ = _fence_lines(text, start, end)
    ends_open = inside != (count % 2 == 1)
    return end - start + (len(_CLOSER) if ends_open else 0) <= room


def _cut_anyway(text: str, opener: int, line: int, limit: int) -> bool:
    """Whether the line starting at ``line`` is too long for a piece that reopens the block opened at ``opener``."""
    room = limit - len(_reopener(text, opener, limit)) - 1 - len(_CLOSER)
    return "\n" not in text[line : line + room + 1] and len(text) - line > room


def _next_cut(text: str, start: int, room: int, inside: bool, limit: int) -> tuple[int, bool]:
    """Where the piece from ``start`` ends, and whether the cut consumes the ``"\\n"`` there.

    ``inside`` says whether the piece starts inside a code block. Only about ``limit`` characters
    past ``start`` are read, a bounded number of times, which keeps the whole split linear.
    """
    size = len(text)
    clean: int | None = None  # the last line end that fits
    after_opener: int | None = None  # the last one that fits but would end the piece on an opener
    opener_start = -1  # where that opener line starts
    is_open, pos = inside, start
    while True:
        newline = text.find("\n", pos, start + room + 1)
        if newline == -1 and size > start + room:
            break
        line_end = size if newline == -1 else newline
        fence = _is_fence(text[pos:line_end])
        is_open = is_open != fence
        if line_end > start and line_end - start + (len(_CLOSER) if is_open else 0) <= room:
            if line_end == size:
                return size, False
            if fence and is_open:
                after_opener, opener_start = line_end, pos
            else:
                clean = line_end
        if newline == -1:
            break
        pos = newline + 1
    if clean is not None:
        return clean, True
    if after_opener is not None and not _cut_anyway(text, opener_start, after_opener + 1, limit):
        return after_opener, True
    # No line end fits. Any body of room - 4 characters fits with a closing line, so this terminates.
    hard = min(size, start + room - len(_CLOSER))
    for end in range(min(size, start + room), hard, -1):
        if _fits(text, start, end, room, inside):
            hard = end
            break
    space = text.rfind(" ", start + room // 2, hard)
    if space != -1 and _fits(text, start, space + 1, room, inside):
        return space + 1, False
    return hard, False


def split_pieces(text: str, limit: int = MESSAGE_LIMIT) -> list[Piece]:
    """Cut ``text`` into pieces of at most ``limit`` characters, recording what each cut added and consumed."""
    if limit < _MIN_LIMIT:
        raise ValueError(f"limit must be at least {_MIN_LIMIT}, not {limit}")
    if len(text) <= limit:
        return [Piece(text)]
    pieces: list[Piece] = []
    start = 0
    reopener = ""  # the line that reopens the block the previous piece ended in, if it ended in one
    while start < len(text):
        prefix = f"{reopener}\n" if reopener else ""
        end, newline = _next_cut(text, start, limit - len(prefix), bool(reopener), limit)
        count, last = _fence_lines(text, start, end)
        ends_open = bool(reopener) != (count % 2 == 1)
        body = text[start:end]
        pieces.append(Piece(prefix + body + (_CLOSER if ends_open else ""), reopener, ends_open, newline))
        if not ends_open:
            reopener = ""
        elif last != -1:  # the block was opened in this piece, by the fence line at ``last``
            reopener = _reopener(text, last, limit)
        start = end + newline
    return pieces


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``text`` into messages of at most ``limit`` characters, closing and reopening code fences."""
    return [piece.text for piece in split_pieces(text, limit)]


def join_pieces(pieces: Iterable[Piece]) -> str:
    """Give back the text :func:`split_pieces` cut: added fence lines removed, consumed newlines restored."""
    parts: list[str] = []
    for piece in pieces:
        body = piece.text
        if piece.reopener:
            head = piece.reopener + "\n"
            if not body.startswith(head):
                raise ValueError(f"piece does not start with its reopening line {piece.reopener!r}")
            body = body[len(head) :]
        if piece.closed:
            if not body.endswith(_CLOSER):
                raise ValueError("piece does not end with its closing fence line")
            body = body[: -len(_CLOSER)]
        parts.append(body + "\n" if piece.newline_after else body)
    return "".join(parts)
