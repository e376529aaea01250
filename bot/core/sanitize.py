"""Text from people that the prompt treats as structure: speaker labels and blank messages.

The airoboros layout has no escaping: a turn marker or a speaker label is plain text, so what makes a label
unforgeable is that text from people never contains it at a line start (see :mod:`bot.core.prompts`).
Invisible characters (zero-width spaces and joiners, bidirectional controls: Unicode category ``Cf``) would let
``AL\u200bICE`` look like ``ALICE`` to a reader while being another string to the sanitizer, so speaker labels
drop them; messages themselves keep them (they are harmless inside text, and some scripts need the joiners).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

FALLBACK_SPEAKER = "Someone"
"""The label of a person whose display name is empty once cleaned (only invisible characters, say)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
INVISIBLE = "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]*"
"""A regex for any run of the invisible (format) characters found in pasted text, to put between a marker's letters."""
MAX_LABEL_LENGTH = 40
"""Longest speaker label: the script parser only looks this far into a line for ``Name:``."""
_HEAD_LIMIT = MAX_LABEL_LENGTH * 3
"""A colon further into a line than this does not close a label (room for markdown, a list mark, an aside)."""
_LINE_BREAKS = re.compile("(\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029])")
"""Every line break :meth:`str.splitlines` knows: a model (or a reader) may take any of them for a new line."""
_DECOR = "*_~`\"'“”‘’ \t>"
_LIST_MARK = re.compile(r"^(?:\d{1,3}[.)]|[-•+])\s*")
_USER_PREFIX = re.compile(r"^user\s*/\s*", re.IGNORECASE)
_ASIDE = re.compile(r"\s*[(\[][^()\[\]]*[)\]][\s*_]*$")


def _visible(text: str) -> str:
    """``text`` without format (``Cf``) characters; control characters become spaces."""
    return "".join(" " if _CONTROL.match(c) else c for c in text if unicodedata.category(c) != "Cf")


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and invisible characters."""
    return not _visible(text).strip()


def speaker_label(name: str) -> str:
    """``name`` as a prompt shows it before a person's line: one line, no invisible characters, never empty.

    A colon would let a name end the label early (``"Bob: hi"``), so colons become spaces too.
    """
    return " ".join(_visible(name).replace(":", " ").split()) or FALLBACK_SPEAKER


def label_key(text: str) -> str:
    """How a line's head is compared with a label: what a reader (or the model) takes for the name.

    Invisible characters go, whitespace runs become one space, case is folded, and what the script parser looks
    through is peeled off: bold/italic/quote marks, a list number or bullet, a ``USER/`` prefix, and a trailing
    aside in brackets (``Yoda (whispering)``). ``"  **b\u200bob** "`` and ``"1. BOB [aside]"`` both give ``"bob"``.
    """
    head = " ".join(_visible(text).split()).strip(_DECOR)
    head = _LIST_MARK.sub("", head).strip(_DECOR)
    head = _USER_PREFIX.sub("", head).strip(_DECOR)
    return head.casefold()


def _head_keys(head: str) -> tuple[str, ...]:
    """The keys a line's head may stand for: as written, and without a trailing aside (``Alex (2)`` is both)."""
    key = label_key(head)
    bare = label_key(_ASIDE.sub("", head))
    return (key, bare) if bare and bare != key else (key,)


def defuse_labels(text: str, labels: Iterable[str]) -> str:
    """Write ``{label}:`` at a line start of ``text`` with a full-width colon, so no line poses as another's.

    A line start is the text's start or any line break Unicode knows (``\r``, ``\u2028``, ...); the label is
    matched as :func:`label_key` reads a head: in any case, with any spacing, invisible characters, markdown, a
    list mark or an aside around it (``bob:``, ``B\u200bob :``, ``**Bob**:``, ``1. Bob (aside):`` all count).
    """
    known = {label_key(label) for label in labels if label and not is_blank(label)}
    if not known:
        return text
    pieces = _LINE_BREAKS.split(text)  # the separators are kept, at odd indexes
    for index in range(0, len(pieces), 2):
        line = pieces[index]
        colon = line.find(":", 0, _HEAD_LIMIT)
        if colon >= 0 and known.intersection(_head_keys(line[:colon])):
            pieces[index] = f"{line[:colon]}：{line[colon + 1 :]}"
    return "".join(pieces)


def distinct_labels(names: Sequence[str], *, taken: Iterable[str] = ()) -> list[str]:
    """Each name's :func:`speaker_label`, made distinct: a clash gets a visible suffix, ``Alex (2)``, ``Alex (3)``.

    ``taken`` are labels already in use (a scene's characters, which keep theirs); ``names`` are labelled in order,
    so the same names in the same order always get the same labels. Labels are compared as :func:`label_key` reads
    them (``alex`` clashes with ``Alex``) and cut to ``limit`` characters first, suffix included.
    """
    used = {label_key(label) for label in taken}
    labels: list[str] = []
    for name in names:
        base = speaker_label(name)[:MAX_LABEL_LENGTH].strip() or FALLBACK_SPEAKER
        label, number = base, 1
        while label_key(label) in used:
            number += 1
            suffix = f" ({number})"
            label = base[: MAX_LABEL_LENGTH - len(suffix)].rstrip() + suffix
        used.add(label_key(label))
        labels.append(label)
    return labels
