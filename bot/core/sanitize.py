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
from collections.abc import Iterable

FALLBACK_SPEAKER = "Someone"
"""The label of a person whose display name is empty once cleaned (only invisible characters, say)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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


def defuse_labels(text: str, labels: Iterable[str]) -> str:
    """Write ``{label}:`` at a line start of ``text`` with a full-width colon, so no line poses as another's."""
    known = sorted({label for label in labels if label}, key=len, reverse=True)
    if not known:
        return text
    pattern = re.compile(r"^([ \t]*(?:" + "|".join(re.escape(label) for label in known) + r")[ \t]*):", re.MULTILINE)
    return pattern.sub("\\1：", text)
