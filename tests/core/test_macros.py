"""Card macros: {{char}}, {{user}}, <BOT>, <USER>, {{original}} and comments, filled in one pass."""

from __future__ import annotations

import pytest

from bot.core.macros import DEFAULT_USER, fill_macros, user_name


@pytest.mark.parametrize(
    ("text", "filled"),
    [
        ("{{char}} greets {{user}}.", "Mira greets Jon."),
        ("{{CHAR}} greets {{ User }}.", "Mira greets Jon."),
        ("<BOT> greets <user>; <Char> waves.", "Mira greets Jon; Mira waves."),
        ("Hi{{// a note for editors }} there", "Hi there"),
        ("{{random:a,b}} stays", "{{random:a,b}} stays"),
    ],
)
def test_macros_are_filled_whatever_their_case(text: str, filled: str) -> None:
    """The V1 and V2 macros are found in any case; comments vanish; unknown macros stay."""
    assert fill_macros(text, char="Mira", user="Jon") == filled


def test_a_name_that_looks_like_a_macro_is_not_filled_again() -> None:
    """What a macro becomes is never read again: a person named {{char}} stays so."""
    assert fill_macros("{{user}} meets {{char}}", char="Mira", user="{{char}}") == "{{char}} meets Mira"


def test_original_is_filled_only_when_given() -> None:
    """{{original}} is the replaced system prompt where there is one, and left alone elsewhere."""
    assert fill_macros("{{original}} Be {{char}}.", char="Mira", user="Jon", original="Base.") == "Base. Be Mira."
    assert fill_macros("{{original}}", char="Mira", user="Jon") == "{{original}}"


@pytest.mark.parametrize(
    ("people", "addressed", "name"),
    [
        ((), None, DEFAULT_USER),
        (("Jon",), None, "Jon"),
        (("Jon", "Ann"), None, "Jon and Ann"),
        (("Jon", "Ann", "Bo"), None, "Jon, Ann and Bo"),
        (("Jon", "Ann"), "Ann", "Ann"),
    ],
)
def test_user_is_the_person_addressed_or_everyone(people: tuple[str, ...], addressed: str | None, name: str) -> None:
    """{{user}} names the person addressed, else the scene's people joined by "and", else a default."""
    assert user_name(people, addressed) == name
