"""Community-style Character Cards for the tests: the JSON files in ``cards/``, PNGs built around them, stored forms."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from bot.core.cards import CardData, placeholder_png
from bot.store import StoredCharacter

CARDS = Path(__file__).parent / "cards"


def card_file(name: str) -> bytes:
    """The bytes of ``cards/{name}``."""
    return (CARDS / name).read_bytes()


def card_object(name: str) -> dict[str, Any]:
    """``cards/{name}`` as a JSON object."""
    loaded: dict[str, Any] = json.loads(card_file(name))
    return loaded


def long_card(characters: int = 6000) -> dict[str, Any]:
    """A V2 card whose description is ``characters`` long, as some card sites' are."""
    words = ("The archivist remembers every name ever spoken in the Hollow Library, " * 200)[:characters]
    data = {"name": "Archivist", "description": words, "personality": "patient", "first_mes": "Shh."}
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_card(**cards: dict[str, Any]) -> bytes:
    """The placeholder image with a ``tEXt`` chunk per keyword (``ccv3=``, ``chara=``) holding that card."""
    image = placeholder_png(8)
    chunks = b"".join(
        _chunk(b"tEXt", keyword.encode() + b"\x00" + base64.b64encode(json.dumps(card).encode()))
        for keyword, card in cards.items()
    )
    return image[:-12] + chunks + image[-12:]  # before the IEND chunk (always 12 bytes)


def stored(card: CardData, *, character_id: int = 1) -> StoredCharacter:
    """The character as the store would give it back after ``/character import``."""
    return StoredCharacter(
        character_id,
        1,
        card.name,
        card.description,
        card.personality,
        card.speaking_style,
        None,
        None,
        card.extra,
        7,
        0.0,
        0.0,
        False,
    )
