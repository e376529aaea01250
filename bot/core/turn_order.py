"""Who speaks next in a scene: the characters a person addressed, else the scene's mode decides.

The people choose first, in every mode: a message that names a character (``Yoda, what now?``, ``@Homer``) or
replies to one of its lines makes that character answer, and the prompt ends ``ASSISTANT: Yoda:`` (the trained
form ``/scene nudge`` uses). When nobody is addressed, the scene's mode (``/scene mode``, default ``[scenes]
mode``) decides:

- ``model``: the model's free turn, as the card's format has it: it writes whichever characters it likes;
- ``addressed``: one character answers: the one heard least recently (never heard first, in cast order), each
  candidate in that order taking the turn with its card's ``talkativeness`` (0-1, default 0.5) as the chance,
  the least recently heard one if none does;
- ``round-robin``: the character after the one who spoke last, in cast order.

Pure functions: labels in, a label out.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from bot.core.sanitize import label_key

SceneMode = Literal["model", "addressed", "round-robin"]
SCENE_MODES: tuple[SceneMode, ...] = get_args(SceneMode)
DEFAULT_TALKATIVENESS = 0.5
"""SillyTavern's default for a card without ``extensions.talkativeness``."""


def addressed_in(text: str, names: Mapping[str, str]) -> list[str]:
    """The characters ``text`` names, in the order it names them first: ``names`` maps a name to its label.

    A name counts as a whole word, in any case, with an ``@`` or not (``yoda,`` and ``@Yoda`` count, ``Yodan`` does
    not); longer names win where two overlap (``Homer Simpson`` before ``Homer``).
    """
    labels = {label_key(name): label for name, label in names.items() if label_key(name)}
    keys = sorted(labels.items(), key=lambda item: -len(item[0]))
    if not keys:
        return []
    pattern = re.compile(r"(?<!\w)@?(" + "|".join(re.escape(key) for key, _ in keys) + r")(?!\w)", re.IGNORECASE)
    found: dict[str, None] = {}
    lookup = dict(keys)
    for match in pattern.finditer(" ".join(text.split())):
        found.setdefault(lookup[match.group(1).casefold()], None)
    return list(found)


def cast_mode(name: str) -> SceneMode:
    """``name`` as a :data:`SceneMode` (an unknown one, from an older database say, is ``model``)."""
    return next((mode for mode in SCENE_MODES if mode == name), "model")


def talkativeness(extensions: Mapping[str, object] | None) -> float:
    """A card's ``extensions.talkativeness`` as a chance in 0-1 (cards store it as a string: ``"0.5"``)."""
    try:
        value = float((extensions or {}).get("talkativeness", DEFAULT_TALKATIVENESS))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_TALKATIVENESS
    return DEFAULT_TALKATIVENESS if math.isnan(value) else min(max(value, 0.0), 1.0)


def next_speaker(
    mode: SceneMode,
    cast: Sequence[str],
    *,
    addressed: Sequence[str] = (),
    heard: Iterable[str] = (),
    chances: Mapping[str, float] | None = None,
    rng: random.Random | None = None,
) -> str | None:
    """The label of the character who opens the next turn, or None for the model's free turn.

    ``cast`` are the character labels in cast order; ``addressed`` the ones the person named (first wins);
    ``heard`` the labels of the lines spoken so far, oldest first; ``chances`` each label's talkativeness.
    """
    present = [label for label in addressed if label in cast]
    if present:
        return present[0]
    if mode == "model" or not cast:
        return None
    spoken = [label for label in heard if label in cast]
    if mode == "round-robin":
        return cast[(cast.index(spoken[-1]) + 1) % len(cast)] if spoken else cast[0]
    last_heard = {label: index for index, label in enumerate(spoken)}
    waiting = sorted(cast, key=lambda label: (last_heard.get(label, -1), cast.index(label)))
    roll = rng or random.Random()
    for label in waiting:
        if roll.random() < (chances or {}).get(label, DEFAULT_TALKATIVENESS):
            return label
    return waiting[0]
