"""Reading a scene's script as the model streams it: who says what, and when it must stop.

The card's scene replies look like::

    Yoda: "No need to apologize, Jon. We were just enjoying these delightful grapes."
    Homer: "Yeah, man! It's not every day you get to eat grapes with a real-life Jedi Master!"
    *Yoda raises an eyebrow*

Public API:

- :class:`ScriptParser`: feed it text deltas as they stream (:meth:`~ScriptParser.feed`), then
  :meth:`~ScriptParser.close` it once generation ends. Both return events:

  - :class:`Say` ``(character, text, line_index)``: block ``line_index`` (0, 1, 2, ... in order) of ``character``
    now reads ``text`` (the whole block so far, stripped; each Say for a block extends the previous one, so a
    frontend edits one Discord message per block and opens a new one when ``line_index`` grows);
  - :class:`Stop` ``(reason, human)``: the model began a line for a human participant. Nothing after it is
    reported; the caller should cancel the generation. Later :meth:`~ScriptParser.feed` calls return nothing.

- :func:`parse_script`: the same on a whole text, as ``[(character, text), ...]``.
- :func:`script_text`: parsed lines back to the ``Name: text`` script, e.g. to store as the assistant turn.

Rules, in the order they apply to each line:

1. A line opening with ``Name:`` starts a new block for that name. The name is matched case-insensitively, with
   spaces inside (``Homer Simpson:``), surrounding spaces, bold or underline markers or quotes (``**Yoda:**``,
   ``**Yoda**:``, ``"Yoda":``) and a ``USER/`` prefix. A line opening with a single ``*`` is an action, never a
   name (``*Yoda raises an eyebrow*``).
2. A human participant's name: :class:`Stop`, and the rest of the text is discarded.
3. A name that is neither a character nor a human (one to three words, capitalized, nothing but a ``**``/``__``
   wrapper around it, e.g. ``Darth Vader:``) starts a dropped block: it and its continuation lines are never
   reported, until the next known name.
4. Any other line continues the current block: multi-line speech, action lines, blank lines inside a block.
5. Text before the first named line belongs to the *first* character: the model was asked to prefix every line,
   and a reply that forgot to (a small model, a one-character scene) is better posted than lost.

Streaming is exact: while the start of a line could still become a name prefix (``Jo`` may become ``Jon:``), it
is held back; it is decided at the first ``:`` or line break, or once the line is longer than any name could be.
So any way of splitting the text into deltas yields the same blocks and the same :class:`Stop`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.core.sanitize import is_blank, speaker_label
from bot.core.scenes import MAX_NAME_LENGTH, Scene, speaker_names

_HEAD_LIMIT = MAX_NAME_LENGTH + 24
"""A colon further into a line than this cannot close a name (leaves room for spaces and markers)."""
_DECOR = "*_\"'“”‘’ \t"
_WRAPPED = re.compile(r"^(\*\*|__)?\s*([^\W_][\w'’.\-]*(?: [\w'’.\-]+){0,2})\s*(\*\*|__)?$")
_USER_PREFIX = re.compile(r"^user/", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Say:
    """Block ``line_index`` of ``character`` now reads ``text`` (whole and stripped so far)."""

    character: str
    text: str
    line_index: int


@dataclass(frozen=True, slots=True)
class Stop:
    """The model began a line for ``human``: cancel the generation; nothing after this is reported."""

    reason: str
    human: str


ScriptEvent = Say | Stop

_DROPPED = object()
"""The speaker of a block attributed to a name not in the scene."""


@dataclass(frozen=True, slots=True)
class _Head:
    """What the start of a line turned out to be."""

    kind: str  # "speaker", "dropped", "human" or "text"
    name: str = ""
    consumed: int = 0


class ScriptParser:
    """Splits a streamed scene reply into character blocks; see the module docstring for the rules.

    ``characters`` are the speaking names (the first one gets any text before the first named line); ``humans``
    the participants the model must never speak for; ``aliases`` maps further names (``Homer Simpson``) to a
    character's speaking name. :meth:`from_scene` fills all three from a :class:`~bot.core.scenes.Scene`.
    """

    def __init__(
        self, characters: Sequence[str], humans: Sequence[str] = (), *, aliases: Mapping[str, str] | None = None
    ) -> None:
        if not characters:
            raise ValueError("a script needs at least one character")
        self._characters = {_key(name): name.strip() for name in characters}
        for alias, name in (aliases or {}).items():
            self._characters.setdefault(_key(alias), name.strip())
        self._humans = {_key(name): name.strip() for name in humans}
        self._pending = ""
        self._at_line_start = True
        self._speaker: object = characters[0].strip()
        self._block = ""
        self._index: int | None = None
        self._shown = ""
        self._next_index = 0
        self._lines: list[tuple[str, str]] = []
        self.stopped = False
        """A :class:`Stop` was reported; further input is ignored."""
        self.closed = False

    @classmethod
    def from_scene(cls, scene: Scene) -> ScriptParser:
        """A parser for ``scene``'s characters (full names as aliases) and humans."""
        return cls([c.name for c in scene.characters], scene.humans, aliases=speaker_names(scene))

    @property
    def lines(self) -> list[tuple[str, str]]:
        """The blocks reported so far, as ``(character, text)`` in order (the latest text of each)."""
        return list(self._lines)

    def feed(self, delta: str) -> list[ScriptEvent]:
        """Take the next piece of streamed text; return what became certain."""
        if self.stopped or self.closed:
            return []
        self._pending += delta
        return self._run(final=False)

    def close(self) -> list[ScriptEvent]:
        """Generation ended: decide what was held back and report it."""
        if self.stopped or self.closed:
            return []
        events = self._run(final=True)
        self.closed = True
        return events

    def _run(self, *, final: bool) -> list[ScriptEvent]:
        events: list[ScriptEvent] = []
        while self._pending:
            if self._at_line_start:
                head = self._read_head(self._pending, final=final)
                if head is None:
                    break  # the line start is still ambiguous: wait for more text
                if head.kind == "human":
                    self._emit(events)
                    self.stopped, self._pending = True, ""
                    events.append(Stop(f"the model began a line for {head.name}", head.name))
                    return events
                if head.kind in ("speaker", "dropped"):
                    self._emit(events)
                    self._speaker = head.name if head.kind == "speaker" else _DROPPED
                    self._block, self._index, self._shown = "", None, ""
                self._pending = self._pending[head.consumed :]
                self._at_line_start = False
            else:
                end = self._pending.find("\n")
                if end < 0:
                    self._block, self._pending = self._block + self._pending, ""
                else:
                    self._block += self._pending[: end + 1]
                    self._pending = self._pending[end + 1 :]
                    self._at_line_start = True
        self._emit(events)
        return events

    def _emit(self, events: list[ScriptEvent]) -> None:
        """Report the current block if its visible text changed."""
        text = self._block.strip()
        if self._speaker is _DROPPED or not text or text == self._shown:
            return
        assert isinstance(self._speaker, str)
        if self._index is None:
            self._index, self._next_index = self._next_index, self._next_index + 1
            self._lines.append((self._speaker, text))
        self._lines[self._index] = (self._speaker, text)
        self._shown = text
        events.append(Say(self._speaker, text, self._index))

    def _read_head(self, text: str, *, final: bool) -> _Head | None:
        """Classify the line starting ``text``, or ``None`` while more text could change the answer."""
        window = text[: _HEAD_LIMIT + 3]  # enough to see a colon within the limit and a closing marker after it
        end = window.find("\n")
        line, has_end = (window[:end], True) if end >= 0 else (window, False)
        stripped = line.lstrip(" \t")
        if stripped.startswith("*") and not stripped.startswith("**") and len(stripped) > 1:
            return _Head("text")  # an action, whatever follows
        colon = line.find(":")
        if colon < 0 or colon > _HEAD_LIMIT:
            if has_end or final or len(line) > _HEAD_LIMIT:
                return _Head("text")
            return None
        lead = line[:colon]
        candidate = _USER_PREFIX.sub("", lead.strip(_DECOR)).strip(_DECOR)
        consumed = colon + 1
        wrapper = re.match(r"[ \t]*(\*\*|__)", lead)
        if wrapper and not lead.rstrip(" \t").endswith(wrapper.group(1)):
            # "**Yoda:**": the closing marker comes after the colon.
            after = line[consumed : consumed + 2]
            if len(after) < 2 and not (has_end or final):
                return None
            if after == wrapper.group(1):
                consumed += 2
        key = _key(candidate)
        if key in self._humans:
            return _Head("human", self._humans[key], consumed)
        if key in self._characters:
            return _Head("speaker", self._characters[key], consumed)
        if candidate[:1].isupper() and _WRAPPED.match(lead.strip(" \t")):
            return _Head("dropped", candidate, consumed)
        return _Head("text")


def parse_script(
    text: str, characters: Sequence[str], humans: Sequence[str] = (), *, aliases: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """The blocks of a whole reply as ``(character, text)``, up to the first line for a human."""
    parser = ScriptParser(characters, humans, aliases=aliases)
    parser.feed(text)
    parser.close()
    return parser.lines


def script_text(lines: Iterable[tuple[str, str]]) -> str:
    """Parsed blocks back to the script the model writes (``Yoda: "..."`` per block, one block per line)."""
    return "\n".join(f"{speaker_label(character)}: {text}" for character, text in lines)


def _key(name: str) -> str:
    """How a name is matched: its prompt label (:func:`~bot.core.sanitize.speaker_label`), casefolded; the prompt
    shows labels, so the model writes them."""
    return speaker_label(name).casefold() if not is_blank(name) else ""
