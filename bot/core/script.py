"""Reading a scene's script as the model streams it: who says what, and when it must stop.

The card's scene replies look like::

    Yoda: "No need to apologize, Jon. We were just enjoying these delightful grapes."
    Homer: "Yeah, man! It's not every day you get to eat grapes with a real-life Jedi Master!"
    *Yoda raises an eyebrow*

and a 7B model writes many variations of it (``Homer (whispering): "Psst"``, ``1. Yoda: ...``, ``Yoda - "..."``,
``**Homer**:``, a line of narration, ``*Jon sits down*``). Public API:

- :class:`ScriptParser`: feed it text deltas as they stream (:meth:`~ScriptParser.feed`), then
  :meth:`~ScriptParser.close` it once generation ends. Both return events:

  - :class:`Say` ``(character, text, line_index)``: block ``line_index`` (0, 1, 2, ... in order) of ``character``
    (a character's label, or :data:`NARRATOR`) now reads ``text`` (the whole block so far, stripped; each Say for a
    block extends the previous one, so a frontend edits one Discord message per block and opens a new one when
    ``line_index`` grows);
  - :class:`Stop` ``(reason, human)``: the model began a line for a human participant (``human`` names them), or
    the turn has its ``max_lines`` character blocks (``human`` is empty). Nothing after it is reported; the caller
    should cancel the generation. Later :meth:`~ScriptParser.feed` calls return nothing.

- :func:`parse_script`: the same on a whole text, as ``[(character, text), ...]``.
- :func:`script_text`: parsed lines back to the ``Name: text`` script (narration bare), to store as the turn.

Rules, in the order they apply to each line:

1. **A named line** opens a new block: ``Name:`` or ``Name - `` (or an en or em dash). Around the name the parser
   looks through what :func:`~bot.core.sanitize.label_key` peels off: any case, spaces, bold/underline markers
   or quotes (``**Yoda:**``, ``**Yoda**:``, ``"Yoda":``), a list number or bullet (``1.``, ``2)``, ``-``,
   ``* ``), a ``USER/`` prefix, and an aside in brackets (``Homer (whispering):``, ``Homer [aside]:``), which opens the
   block as an action (``*whispering*``). A label with a bracket in it (``Alex (2)``) is matched whole first. The
   dash form only counts for names in the scene.
2. A **person's** name (rule 1): :class:`Stop`, and the rest of the text is discarded.
3. ``Narrator:`` (or ``Narration:``), when no one in the scene has that name: a :data:`NARRATOR` block.
4. A name that is neither a character nor a person nor the narrator (one to three words, capitalized, nothing but a
   ``**``/``__`` wrapper around it, e.g. ``Darth Vader:``) starts a dropped block: it and its continuation lines
   are never reported, until the next known name.
5. **An action line** (one opening with a single ``*``, never a name itself: ``*Yoda: frowns*`` is an action)
   that starts with a name: a character other than the current speaker opens that character's block with it
   (``*Yoda raises an eyebrow*`` after Homer's line is Yoda's); a person's (``*Jon sits down*``) is dropped, that
   line alone.
6. **Narration**: a plain line after a blank line, once the block's quotes are closed, opens a :data:`NARRATOR`
   block; text before the first named line is narration too, except in a one-character scene, where an unnamed
   reply is that character's (a small model often forgets the name).
7. Any other line continues the current block: multi-line speech, action lines, blank lines inside a block.
8. With ``max_lines``, the named line that would open one character block too many stops the script instead.

Streaming is exact: while the start of a line could still become a name prefix (``Jo`` may become ``Jon:``), it
is held back; it is decided at the first ``:``, at a known name's dash, or at the line's end (action lines), or
once the line is longer than any name could be. So any way of splitting the text into deltas yields the same
blocks and the same :class:`Stop`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.core.sanitize import MAX_LABEL_LENGTH, is_blank, label_key, speaker_label
from bot.core.scenes import Scene, speaker_names

NARRATOR = ":narrator"
"""The speaker of narration blocks (no label can contain a colon, so no character is called this)."""
NARRATOR_NAMES = frozenset({"narrator", "narration"})
"""Heads that open a narration block (unless someone in the scene goes by one of them)."""

_HEAD_LIMIT = MAX_LABEL_LENGTH * 2 + 24
"""A colon or dash further into a line than this cannot close a name (room for markers, a list mark, an aside)."""
_WRAPPED = re.compile(r"^(\*\*|__)?\s*([^\W_][\w'’.\-]*(?: [\w'’.\-]+){0,2})\s*(\*\*|__)?$")
_LIST_MARK = re.compile(r"^[ \t]*(?:\d{1,3}[.)]|[-•+*])[ \t]+(?=\S)")
_ASIDE = re.compile(r"[(\[]([^()\[\]]*)[)\]][\s*_]*$")
_DASH = re.compile(r"[ \t]+[-–—]{1,2}[ \t]+")
_OPEN_QUOTES = re.compile(r"[\"“”]")


@dataclass(frozen=True, slots=True)
class Say:
    """Block ``line_index`` of ``character`` now reads ``text`` (whole and stripped so far)."""

    character: str
    text: str
    line_index: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Cancel the generation: the model began a line for ``human`` (empty: the turn has all its lines)."""

    reason: str
    human: str


ScriptEvent = Say | Stop

_DROPPED = object()
"""The speaker of a block attributed to a name not in the scene."""


@dataclass(frozen=True, slots=True)
class _Head:
    """What the start of a line turned out to be."""

    kind: str  # "speaker", "narrator", "dropped", "human", "skip" (drop this line) or "text"
    name: str = ""
    consumed: int = 0
    aside: str = ""


class ScriptParser:
    """Splits a streamed scene reply into character blocks; see the module docstring for the rules.

    ``characters`` are the speaking labels; ``humans`` the participants the model must never speak for;
    ``aliases`` maps further names (``Homer Simpson``) to a character's label; ``max_lines`` caps the character
    blocks of one turn (None: no cap). :meth:`from_scene` fills the names from a :class:`~bot.core.scenes.Scene`.
    """

    def __init__(
        self,
        characters: Sequence[str],
        humans: Sequence[str] = (),
        *,
        aliases: Mapping[str, str] | None = None,
        max_lines: int | None = None,
    ) -> None:
        if not characters:
            raise ValueError("a script needs at least one character")
        self._characters = {_key(name): name.strip() for name in characters}
        for alias, name in (aliases or {}).items():
            self._characters.setdefault(_key(alias), name.strip())
        self._humans = {_key(name): name.strip() for name in humans}
        self._sole = characters[0].strip() if len(characters) == 1 else None
        self.max_lines = max_lines
        self._pending = ""
        self._at_line_start = True
        self._skipping = False
        self._after_aside = False
        self._line = ""
        """The current line as read so far (its head included)."""
        self._blank = False
        """The line before the current one showed nothing."""
        self._speaker: object = None
        self._block = ""
        self._index: int | None = None
        self._shown = ""
        self._next_index = 0
        self._spoken = 0
        self._lines: list[tuple[str, str]] = []
        self.stopped = False
        """A :class:`Stop` was reported; further input is ignored."""
        self.closed = False

    @classmethod
    def from_scene(cls, scene: Scene, *, max_lines: int | None = None) -> ScriptParser:
        """A parser for ``scene``'s character labels (full names as aliases) and its people's labels."""
        return cls(list(scene.character_labels), scene.human_labels, aliases=speaker_names(scene), max_lines=max_lines)

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
                if head.kind == "speaker" and self._opens_one_too_many():
                    head = _Head("stop")
                if head.kind in ("human", "stop"):
                    self._emit(events)
                    self.stopped, self._pending = True, ""
                    reason = f"the model began a line for {head.name}" if head.name else "the turn has all its lines"
                    events.append(Stop(reason, head.name))
                    return events
                self._begin(head, events)
                self._line, self._pending = self._pending[: head.consumed], self._pending[head.consumed :]
                self._at_line_start = False
            else:
                end = self._pending.find("\n")
                line = self._pending if end < 0 else self._pending[: end + 1]
                self._pending = self._pending[len(line) :]
                self._line += line
                if self._after_aside:  # "Homer (whispering): hi": one space after "*whispering*"
                    line = line.lstrip(" \t")
                    self._after_aside = not line
                if not self._skipping:
                    self._block += line
                if end >= 0:
                    self._at_line_start, self._skipping = True, False
                    self._blank = not self._line.strip()
        self._emit(events)
        return events

    def _opens_one_too_many(self) -> bool:
        return self.max_lines is not None and self._spoken >= self.max_lines

    def _begin(self, head: _Head, events: list[ScriptEvent]) -> None:
        """Start the line ``head`` read: a new block, a skipped line, or more of the current block."""
        if head.kind == "skip":
            self._skipping = True
            return
        speaker: object
        if head.kind == "speaker":
            speaker = head.name
        elif head.kind == "narrator":
            speaker = NARRATOR
        elif head.kind == "dropped":
            speaker = _DROPPED
        elif self._speaker is None:
            speaker = self._sole or NARRATOR  # text before any name
        elif self._blank and self._speaker is not NARRATOR and not _open_quote(self._block):
            speaker = NARRATOR  # a paragraph after a line: narration
        else:
            return  # more of the current block
        self._emit(events)
        self._spoken += head.kind == "speaker"
        self._speaker = speaker
        self._block, self._index, self._shown = (f"*{head.aside}* " if head.aside else ""), None, ""
        self._after_aside = bool(head.aside)

    def _emit(self, events: list[ScriptEvent]) -> None:
        """Report the current block if its visible text changed."""
        text = self._block.strip()
        if self._speaker is _DROPPED or self._speaker is None or not text or text == self._shown:
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
        complete = has_end or final or len(line) > _HEAD_LIMIT
        listed = _LIST_MARK.match(line)
        body = line[listed.end() :] if listed else line
        stripped = body.lstrip(" \t")
        if stripped.startswith("*") and not stripped.startswith("**") and len(stripped) > 1:
            return self._action(stripped[1:]) if complete else None
        colon = line.find(":", 0, _HEAD_LIMIT)
        dash = _DASH.search(line, 0, colon if colon >= 0 else _HEAD_LIMIT)
        if dash is not None:
            known = self._known(line[: dash.start()])
            if known is not None:
                return _Head(known[0], known[1], dash.end(), known[2])
        if colon < 0:
            return _Head("text") if complete else None
        lead = line[:colon]
        consumed = colon + 1
        wrapper = re.match(r"[ \t]*(\*\*|__)", body)
        if wrapper and not lead.rstrip(" \t").endswith(wrapper.group(1)):
            # "**Yoda:**": the closing marker comes after the colon.
            after = line[consumed : consumed + 2]
            if len(after) < 2 and not (has_end or final):
                return None
            if after == wrapper.group(1):
                consumed += 2
        known = self._known(lead)
        if known is not None:
            return _Head(known[0], known[1], consumed, known[2])
        if label_key(lead) in NARRATOR_NAMES:
            return _Head("narrator", NARRATOR, consumed)
        name = lead[listed.end() :] if listed else lead
        if name.strip(" \t")[:1].isupper() and _WRAPPED.match(name.strip(" \t")):
            return _Head("dropped", name, consumed)
        return _Head("text")

    def _known(self, lead: str) -> tuple[str, str, str] | None:
        """``(kind, name, aside)`` if ``lead`` names a person or a character of the scene, else None."""
        key = label_key(lead)
        aside = _ASIDE.search(lead)
        bare = label_key(lead[: aside.start()]) if aside else key
        for candidate, note in ((key, ""), (bare, aside.group(1).strip() if aside else "")):
            if candidate in self._humans:
                return "human", self._humans[candidate], ""
            if candidate in self._characters:
                return "speaker", self._characters[candidate], note
        return None

    def _action(self, action: str) -> _Head:
        """An action line: whose it is, by the name it starts with (``*Jon sits down*``); longest names first."""
        words = label_key(action)
        names = [(key, "human", name) for key, name in self._humans.items()]
        names += [(key, "speaker", name) for key, name in self._characters.items() if key not in self._humans]
        for key, kind, name in sorted(names, key=lambda entry: -len(entry[0])):
            if words == key or (words.startswith(key) and not words[len(key) : len(key) + 1].isalnum()):
                if kind == "human":
                    return _Head("skip")
                return _Head("speaker", name) if name != self._speaker else _Head("text")
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
    """Parsed blocks back to the script the model writes (``Yoda: "..."`` per block, one block per line).

    Narration is written bare, as the model wrote it.
    """
    return "\n".join(text if who == NARRATOR else f"{speaker_label(who)}: {text}" for who, text in lines)


def _open_quote(text: str) -> bool:
    """Whether ``text`` leaves a quotation open (a paragraph after it is still speech)."""
    quotes = _OPEN_QUOTES.findall(text)
    return text.count('"') % 2 == 1 or quotes.count("“") > quotes.count("”")


def first_speaker(script: str) -> str | None:
    """The label opening a stored script (``Yoda`` for ``Yoda: "Hmm."\nHomer: ...``), or None if it has none."""
    head, colon, _ = script.lstrip().partition("\n")[0].partition(":")
    return head.strip() if colon and head.strip() and not is_blank(head) else None


def _key(name: str) -> str:
    """How a name is matched: its prompt label (:func:`~bot.core.sanitize.speaker_label`), casefolded; the prompt
    shows labels, so the model writes them."""
    return speaker_label(name).casefold() if not is_blank(name) else ""
