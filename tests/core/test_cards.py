"""Character cards: V1/V2 JSON, PNG ``chara`` chunks, the placeholder image, and each malformed file."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.cards import (
    AVATAR_MAX_BYTES,
    CARD_MAX_BYTES,
    CARD_MAX_DEPTH,
    CardData,
    CardError,
    card_json,
    card_png,
    check_name,
    image_type,
    json_depth,
    parse_card,
    placeholder_png,
    read_png_text_chunks,
)
from tests.core._cards import card_file, card_object, long_card, png_card

V2: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Aria",
        "description": "A ship's navigator.",
        "personality": "calm, curious",
        "scenario": "On the bridge.",
        "first_mes": "Course laid in.",
        "mes_example": "<START>\n{{char}}: Steady as she goes.",
        "creator_notes": "",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": ["Hello."],
        "tags": ["space"],
        "creator": "someone",
        "character_version": "1",
        "extensions": {"depth_prompt": {"depth": 4}},
    },
}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(*extra_chunks: bytes) -> bytes:
    """A 1x1 grey PNG built by hand, with ``extra_chunks`` before its end."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\x00\x80"))
    return b"\x89PNG\r\n\x1a\n" + header + pixels + b"".join(extra_chunks) + chunk(b"IEND", b"")


def chara(text: bytes) -> bytes:
    return chunk(b"tEXt", b"chara\x00" + text)


def test_v2_json_maps_our_fields_and_keeps_the_rest() -> None:
    """A V2 card's name, description and personality map to ours; mes_example stays example dialogue; rest is kept."""
    card = parse_card(json.dumps(V2).encode(), "aria.json")
    assert (card.name, card.description, card.personality) == ("Aria", "A ship's navigator.", "calm, curious")
    assert card.speaking_style == ""
    assert card.extra["mes_example"] == "<START>\n{{char}}: Steady as she goes."
    assert card.extra["scenario"] == "On the bridge." and card.extra["tags"] == ["space"]
    assert card.avatar is None


def test_v2_json_round_trip_gives_back_every_field() -> None:
    """Exporting an imported V2 card gives back its fields, plus our speaking style under extensions."""
    card = parse_card(json.dumps(V2).encode(), "aria.json")
    exported = json.loads(card_json(card))
    assert exported["spec"] == "chara_card_v2" and exported["spec_version"] == "2.0"
    expected = dict(V2["data"])
    expected["extensions"] = {
        "depth_prompt": {"depth": 4},
        "airoboros_bot": {"speaking_style": ""},
    }
    assert exported["data"] == expected
    assert parse_card(card_json(card), "again.json").speaking_style == card.speaking_style


def test_an_edited_speaking_style_survives_export_and_import() -> None:
    """Our speaking style wins over mes_example when the card carries it in extensions."""
    card = CardData(name="Bo", description="d", personality="p", speaking_style="Short sentences.")
    again = parse_card(card_json(card), "bo.json")
    assert (again.name, again.description, again.personality, again.speaking_style) == (
        "Bo",
        "d",
        "p",
        "Short sentences.",
    )
    assert json.loads(card_json(card))["data"]["mes_example"] == "Short sentences."


def test_v1_flat_card_is_read() -> None:
    """A V1 card (flat object, no spec) is read the same way."""
    v1 = {"name": "Old", "description": "From before.", "personality": "gruff", "mes_example": "Hmph."}
    card = parse_card(json.dumps(v1).encode(), "old.json")
    assert (card.name, card.description, card.personality, card.speaking_style) == ("Old", "From before.", "gruff", "")
    assert card.extra["mes_example"] == "Hmph."


def test_png_card_is_read_and_its_image_becomes_the_avatar() -> None:
    """A PNG's base64 ``chara`` chunk is the card; the image, without that chunk, is the avatar."""
    image = png(chara(base64.b64encode(json.dumps(V2).encode())))
    card = parse_card(image, "aria.png")
    assert card.name == "Aria"
    assert card.avatar == png()


def test_png_round_trip_replaces_the_chara_chunk() -> None:
    """card_png writes one chara chunk into the avatar (replacing an old one) that parse_card reads back."""
    old = png(chara(base64.b64encode(b'{"name": "Old"}')))
    card = CardData(name="New", description="fresh")
    written = card_png(old, card)
    assert written.count(b"chara\x00") == 1
    assert parse_card(written, "new.png").description == "fresh"
    assert parse_card(written, "new.png").avatar == png()


def test_card_png_without_a_png_avatar_uses_the_placeholder() -> None:
    """A missing or non-PNG avatar gives a generated PNG that still carries the card."""
    for avatar in (None, b"\xff\xd8\xff\xe0 jpeg"):
        written = card_png(avatar, CardData(name="Bo"))
        assert image_type(written) == "image/png"
        assert "chara" in read_png_text_chunks(written)
        assert parse_card(written, "bo.png").avatar == placeholder_png()


def test_placeholder_png_is_a_valid_image() -> None:
    """The placeholder's IDAT decompresses to height rows of (filter byte + width RGB pixels)."""
    image = placeholder_png(size=4)
    width, height = struct.unpack(">II", image[16:24])
    idat_length = struct.unpack(">I", image[33:37])[0]
    assert image[37:41] == b"IDAT"
    assert (width, height) == (4, 4)
    assert len(zlib.decompress(image[41 : 41 + idat_length])) == 4 * (1 + 4 * 3)


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"{not json", "x.json", "not valid JSON"),
        (b"[1, 2]", "x.json", "must be a JSON object"),
        (json.dumps({"spec": "chara_card_v4", "data": {}}).encode(), "x.json", "Unsupported card spec"),
        (json.dumps({"spec": "chara_card_v3", "spec_version": "3.0"}).encode(), "x.json", "V3 card has no `data`"),
        (json.dumps({"spec": "chara_card_v2", "spec_version": "2.0"}).encode(), "x.json", "no `data`"),
        (json.dumps({"description": "nameless"}).encode(), "x.json", "has no `name`"),
        (json.dumps({"name": ""}).encode(), "x.json", "needs a name"),
        (json.dumps({"name": "x" * 81}).encode(), "x.json", "at most 80"),
        (json.dumps({"name": "My Discord Pal"}).encode(), "x.json", "“discord”"),
        (json.dumps({"name": "CLYDE"}).encode(), "x.json", "“clyde”"),
        (json.dumps({"name": "A", "description": 5}).encode(), "x.json", "`description` must be text"),
        (b" " * (CARD_MAX_BYTES + 1), "big.json", "at most 1.0 MB"),
        (png(), "plain.png", "without a character card"),
        (png(chara(b"not base64!!")), "bad.png", "not valid base64"),
        (png(chara(base64.b64encode(b"nope"))), "bad.png", "not valid JSON"),
        (png()[:-6], "cut.png", "cut short"),
        (b"GIF89a....", "card.png", "not a PNG"),
    ],
)
def test_malformed_cards_are_refused_clearly(data: bytes, filename: str, message: str) -> None:
    """Each malformed file raises CardError naming what is wrong."""
    with pytest.raises(CardError) as raised:
        parse_card(data, filename)
    assert message in str(raised.value)


def nested(depth: int) -> bytes:
    """A V1 card whose ``character_book`` nests lists ``depth`` levels deep in all (the card itself is one)."""
    inner = "[" * (depth - 2) + "{}" + "]" * (depth - 2)
    return ('{"name": "Deep", "character_book": ' + inner + "}").encode()


def png_of(raw: bytes) -> bytes:
    return png(chara(base64.b64encode(raw)))


@pytest.mark.parametrize("wrap", [lambda raw: raw, png_of], ids=["json", "png"])
def test_deeply_nested_json_is_refused_clearly(wrap: Any) -> None:
    """JSON nested 100,000 deep (a JSON file, or inside a PNG) is a CardError naming the limit, not a RecursionError."""
    with pytest.raises(CardError, match=f"nested 100000 levels deep; a card may nest at most {CARD_MAX_DEPTH}"):
        parse_card(wrap(nested(100_000)), "deep.png" if wrap is png_card else "deep.json")


def test_a_card_at_the_nesting_limit_is_read_and_written_back() -> None:
    """A V1 card exactly CARD_MAX_DEPTH levels deep imports, exports as V2 (one level more) and imports again."""
    assert json_depth(nested(CARD_MAX_DEPTH).decode()) == CARD_MAX_DEPTH
    card = parse_card(nested(CARD_MAX_DEPTH), "deep.json")
    book = card.extra["character_book"]
    assert parse_card(card_png(None, card), "deep.png").extra["character_book"] == book
    assert parse_card(card_json(card), "deep.json").extra["character_book"] == book


def test_a_card_one_level_past_the_limit_is_refused() -> None:
    """One level more than CARD_MAX_DEPTH (V1) is refused, though the decoder could take it."""
    with pytest.raises(CardError, match=f"nested {CARD_MAX_DEPTH + 1} levels deep"):
        parse_card(nested(CARD_MAX_DEPTH + 1), "deep.json")


def test_json_inside_a_png_has_the_json_cards_size_limit() -> None:
    """A PNG under the image limit whose chara chunk decodes to more than 1 MB of JSON is refused, naming both."""
    raw = json.dumps({"name": "Big", "creator_notes": "n" * CARD_MAX_BYTES}).encode()
    image = png_of(raw)
    assert len(image) < AVATAR_MAX_BYTES
    with pytest.raises(
        CardError, match=r"The card in the `chara` chunk of `big.png` is 1.0 MB of JSON; .* at most 1.0 MB"
    ):
        parse_card(image, "big.png")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('[]{}"\\ab:,')),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=20,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(_JSON)
def test_json_depth_counts_nesting_and_ignores_brackets_in_strings(value: object) -> None:
    """For any JSON value (strings full of brackets, quotes and backslashes) the scan gives the real depth."""
    assert json_depth(json.dumps(value)) == _depth(value)


def test_check_name_tidies_spaces() -> None:
    """Runs of whitespace become one space and the ends are trimmed."""
    assert check_name("  Captain   Aria\n") == "Captain Aria"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n...", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<svg>", None),
    ],
)
def test_image_type_sniffs_the_first_bytes(data: bytes, expected: str | None) -> None:
    """PNG, JPEG, GIF and WebP are known by their signature; anything else is None."""
    assert image_type(data) == expected


def test_v3_json_is_read_with_its_v2_fields_and_keeps_its_own() -> None:
    """A chara_card_v3 card maps like V2; nickname, group greetings and the rest are kept for export."""
    card = parse_card(card_file("vex_v3.json"), "vex.json")
    assert (card.name, card.personality) == ("Vex", "dry, exact")
    assert card.extra["scenario"] == "Docking bay 9 of Ceres Ring."
    assert card.extra["nickname"] == "V" and len(card.extra["group_only_greetings"]) == 1
    assert json.loads(card_json(card))["data"]["source"] == ["https://cards.example/vex"]


def test_a_png_ccv3_chunk_wins_over_its_v2_backfill() -> None:
    """With both chunks, the card is read from ``ccv3``; the avatar keeps neither."""
    backfill = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Vex (V2 backfill)"}}
    image = png_card(chara=backfill, ccv3=card_object("vex_v3.json"))
    card = parse_card(image, "vex.png")
    assert card.name == "Vex"
    assert card.avatar == placeholder_png(8)
    assert read_png_text_chunks(card_png(card.avatar, card)).keys() == {"chara"}


def test_an_over_long_description_is_trimmed_and_marked_not_refused() -> None:
    """A 6,000-character description is cut at a word to at most 4,000; the card says so, and keeps saying it."""
    original = long_card()
    card = parse_card(json.dumps(original).encode(), "archivist.json")
    assert 3800 < len(card.description) <= 4000
    assert original["data"]["description"].startswith(card.description + " ")  # cut between two words
    assert card.trimmed == {"description": 6000}
    assert card.extra["extensions"]["airoboros_bot"]["trimmed"] == {"description": 6000}
    exported = parse_card(card_json(card), "again.json")
    assert exported.extra["extensions"]["airoboros_bot"]["trimmed"] == {"description": 6000}
