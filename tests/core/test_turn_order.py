"""Who speaks next in a scene: addressed characters first, then the scene's mode."""

from __future__ import annotations

import random

import pytest

from bot.core.turn_order import addressed_in, cast_mode, next_speaker, talkativeness

CAST = ("Yoda", "Homer", "Leia")
NAMES = {"Yoda": "Yoda", "Homer Simpson": "Homer", "Homer": "Homer", "Leia": "Leia"}


@pytest.mark.parametrize(
    ("text", "addressed"),
    [
        ("Yoda, what do you think?", ["Yoda"]),
        ("@homer and @YODA: dinner?", ["Homer", "Yoda"]),
        ("Homer Simpson! Leia?", ["Homer", "Leia"]),
        ("Yodan is not a name here, nor is homers", []),
        ("leia leia yoda", ["Leia", "Yoda"]),
    ],
)
def test_names_in_a_message_address_their_characters(text: str, addressed: list[str]) -> None:
    """Whole names in any case, with or without @, in the order first named; longer names first."""
    assert addressed_in(text, NAMES) == addressed


def test_an_addressed_character_speaks_whatever_the_mode() -> None:
    """The people choose first: in every mode, the first addressed character in the cast opens the turn."""
    for mode in ("model", "addressed", "round-robin"):
        assert next_speaker(cast_mode(mode), CAST, addressed=["Vader", "Leia"], heard=["Leia"]) == "Leia"


def test_the_model_mode_leaves_the_turn_free() -> None:
    """Nobody addressed in ``model`` mode: no speaker is forced (the card's free multi-character turn)."""
    assert next_speaker("model", CAST, heard=["Yoda"]) is None


def test_round_robin_follows_the_cast_order() -> None:
    """The character after the last one heard; the first of the cast when nobody spoke yet."""
    assert next_speaker("round-robin", CAST) == "Yoda"
    assert next_speaker("round-robin", CAST, heard=["Yoda", "Homer"]) == "Leia"
    assert next_speaker("round-robin", CAST, heard=["Homer", "Leia"]) == "Yoda"


def test_addressed_mode_picks_the_least_recently_heard() -> None:
    """Never-heard characters first (cast order), then the one heard longest ago, when talkativeness is full."""
    chances = dict.fromkeys(CAST, 1.0)
    assert next_speaker("addressed", CAST, heard=["Yoda", "Homer"], chances=chances) == "Leia"
    assert next_speaker("addressed", CAST, heard=["Leia", "Yoda", "Homer", "Yoda"], chances=chances) == "Leia"
    assert next_speaker("addressed", CAST, heard=["Homer", "Leia", "Yoda"], chances=chances) == "Homer"


def test_talkativeness_weights_who_takes_the_turn() -> None:
    """A silent card (0) lets the next in line speak; over many turns a chatty card speaks far more often."""
    silent = {"Yoda": 0.0, "Homer": 1.0, "Leia": 1.0}
    assert next_speaker("addressed", CAST, chances=silent) == "Homer"
    rng = random.Random(7)
    chances = {"Yoda": 0.9, "Homer": 0.1, "Leia": 0.1}
    picks = [
        next_speaker("addressed", CAST, heard=["Leia", "Homer", "Yoda"], chances=chances, rng=rng) for _ in range(400)
    ]
    assert picks.count("Yoda") > picks.count("Homer") * 3
    assert next_speaker("addressed", CAST, chances=dict.fromkeys(CAST, 0.0)) == "Yoda"  # nobody rolls: first in line


@pytest.mark.parametrize(
    ("raw", "chance"), [("0.8", 0.8), (0.2, 0.2), ("7", 1.0), ("-1", 0.0), ("lots", 0.5), (None, 0.5)]
)
def test_a_cards_talkativeness_is_read_as_a_chance(raw: object, chance: float) -> None:
    """Cards store talkativeness as a string; anything unreadable is SillyTavern's default 0.5."""
    extensions = {} if raw is None else {"talkativeness": raw}
    assert talkativeness(extensions) == chance
