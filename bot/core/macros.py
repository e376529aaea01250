"""Card macros: ``{{char}}``, ``{{user}}`` (and V1's ``<BOT>``, ``<USER>``) filled in a card's text, as the specs say.

What is filled, with a case-insensitive search (Character Card V1 spec, "In prompts sent to the AI"; V3 "Curly Braced
Syntaxes"; SillyTavern's ``evaluateMacros``):

- ``{{char}}``, ``<BOT>``, ``<CHAR>``: the character's name (a V3 card's ``nickname`` is kept but not used: the
  model's lines are read by the name, so the prompt keeps to it);
- ``{{user}}``, ``<USER>``: the person the character addresses, or the scene's people joined by "and"
  (:func:`user_name`; a default name when there is nobody yet, as the V1 spec asks);
- ``{{original}}`` (``system_prompt`` and ``post_history_instructions`` only, V2 spec): the system prompt the card's
  own replaces, when one is given;
- ``{{// a comment}}``: nothing (V3 spec).

One pass over the text: what a macro is replaced with is never read again, so a person named ``{{char}}`` stays
``{{char}}``. Other macros (``{{random:...}}``, ``{{roll:...}}``, ...) are left as they are: they would make a
scene's prompt differ on every turn, which costs its cached prefix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["DEFAULT_USER", "fill_macros", "user_name"]

DEFAULT_USER = "User"
"""``{{user}}`` when nobody is in the scene yet (SillyTavern's default persona name)."""

_MACROS = re.compile(
    r"\{\{\s*(?P<curly>char|user|original)\s*\}\}|<(?P<angle>bot|char|user)>|(?P<comment>\{\{//.*?\}\})",
    re.IGNORECASE | re.DOTALL,
)


def fill_macros(text: str, *, char: str, user: str, original: str | None = None) -> str:
    """``text`` with the macros above filled; ``{{original}}`` stays as written when ``original`` is None."""

    def value(match: re.Match[str]) -> str:
        if match.group("comment"):
            return ""
        name = (match.group("curly") or match.group("angle")).lower()
        if name == "original":
            return match.group(0) if original is None else original
        return user if name == "user" else char

    return _MACROS.sub(value, text)


def user_name(people: Sequence[str], addressed: str | None = None) -> str:
    """What ``{{user}}`` means: ``addressed`` if given, else ``people`` as ``A``, ``A and B``, ``A, B and C``."""
    if addressed:
        return addressed
    if not people:
        return DEFAULT_USER
    if len(people) == 1:
        return people[0]
    return f"{', '.join(people[:-1])} and {people[-1]}"
