"""Character cards: reading and writing the community's Character Card formats, with no Discord in sight.

Three shapes are read:

- **V3** (``{"spec": "chara_card_v3", "spec_version": "3.0", "data": {...}}``): V2's fields and a few more
  (``nickname``, ``group_only_greetings``, ...), all kept; a PNG holds it in a ``ccv3`` chunk, which wins over a
  ``chara`` chunk beside it (the V3 spec);
- **V2** (``{"spec": "chara_card_v2", "spec_version": "2.0", "data": {...}}``), the format most card sites and
  front-ends (SillyTavern, ...) exchange;
- **V1**: the older flat object (``{"name": ..., "description": ..., "personality": ..., ...}``).

Either arrives as a ``.json`` file or inside a PNG image: a ``tEXt`` chunk with the keyword ``chara`` holds the
card's JSON, base64-encoded, and the image itself is the character's avatar. PNG chunks are read and written here
with :mod:`struct` and :mod:`zlib` (the format is small and fixed; no image library is needed).

Card fields map onto ours: ``name``, ``description`` and ``personality`` as they are; the speaking style comes from
``extensions.airoboros_bot.speaking_style`` (where our own exports put it), else it is empty: ``mes_example`` is
example dialogue, which scenes use as such (:mod:`bot.core.card_prompt`). Everything else (``scenario``,
``first_mes``, ``mes_example``, ``character_book``, ``tags``, ...) is kept in :attr:`CardData.extra`, so scenes use
it and an export gives it back. A description, personality or speaking style over :data:`FIELD_MAX_CHARS` is cut at
a word boundary, not refused: :attr:`CardData.trimmed` (kept as ``extensions.airoboros_bot.trimmed``) says how long
each such field was.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import BotError

__all__ = [
    "AVATAR_MAX_BYTES",
    "CARD_MAX_BYTES",
    "CARD_MAX_DEPTH",
    "FIELD_MAX_CHARS",
    "IMAGE_TYPES",
    "NAME_MAX_CHARS",
    "CardData",
    "CardError",
    "card_json",
    "card_png",
    "check_name",
    "image_type",
    "json_depth",
    "parse_card",
    "placeholder_png",
    "read_png_text_chunks",
]

AVATAR_MAX_BYTES = 2 * 1024 * 1024
"""The largest avatar image (and so the largest PNG card) accepted, in bytes."""
CARD_MAX_BYTES = 1024 * 1024
"""The largest card JSON accepted, in bytes: a ``.json`` file, or the JSON a PNG's ``chara`` chunk decodes to."""
CARD_MAX_DEPTH = 32
"""The deepest nesting of objects and lists a card's fields may have, the card's own object included (real cards use
about six levels; a V2 card's outer object is not counted, so a V1 card at the limit can be exported as V2). Deeper
JSON would exhaust Python's recursion limit while it is decoded or written back."""
NAME_MAX_CHARS = 80
"""Discord's limit for a webhook's name, which is how a character speaks."""
FIELD_MAX_CHARS = 4000
"""The longest description, personality or speaking style: what a Discord form field can show for editing."""
FORBIDDEN_IN_NAMES = ("discord", "clyde")
"""Discord refuses webhook names containing these (in any case)."""
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
"""The avatar types accepted, with the file extension each is shown under."""
EXTENSION_KEY = "airoboros_bot"
"""Our key under the card's ``extensions``; other keys there belong to other tools and are kept as they are."""
MAPPED_FIELDS = ("name", "description", "personality")
V2_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "alternate_greetings",
    "tags",
    "creator",
    "character_version",
    "extensions",
)
"""Every field of a V2 card's ``data``, in the spec's order."""
_LIST_FIELDS = ("alternate_greetings", "tags")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARA = "chara"
CCV3 = "ccv3"
TRIMMED_KEY = "trimmed"
"""Under our extension: ``{field: its length before the cut}`` for each field cut at import."""


class CardError(BotError):
    """A character card (or a character's name or avatar) is not usable; the text says what is wrong."""


@dataclass(frozen=True, slots=True)
class CardData:
    """A character as a card holds it: our four fields, the card's other fields, and the PNG's image if any."""

    name: str
    description: str = ""
    personality: str = ""
    speaking_style: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """The card's other ``data`` fields (``scenario``, ``first_mes``, ``tags``, ``extensions``, ...)."""
    avatar: bytes | None = None
    """The PNG the card came in (without its ``chara`` chunk), or None for a JSON card."""
    trimmed: Mapping[str, int] = field(default_factory=dict)
    """The fields cut to :data:`FIELD_MAX_CHARS` at import, each with its length before the cut."""


def check_name(name: str) -> str:
    """The name stripped, or :class:`CardError` if Discord would refuse it as a webhook's name."""
    name = " ".join(name.split())
    if not name:
        raise CardError("The character needs a name.")
    if len(name) > NAME_MAX_CHARS:
        raise CardError(f"The name is {len(name)} characters long; Discord allows at most {NAME_MAX_CHARS}.")
    lowered = name.casefold()
    for word in FORBIDDEN_IN_NAMES:
        if word in lowered:
            raise CardError(f"The name can't contain “{word}”: Discord refuses it as a webhook name.")
    return name


def image_type(data: bytes) -> str | None:
    """The image's content type from its first bytes (PNG, JPEG, GIF or WebP), or None for anything else."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# -- PNG chunks --------------------------------------------------------------------------------------------------


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes, int, int]]:
    """Each chunk as (type, data, start, end) with its byte range in ``png``; CardError if the file is broken."""
    if not png.startswith(PNG_SIGNATURE):
        raise CardError("That file is not a PNG image.")
    offset = len(PNG_SIGNATURE)
    while offset < len(png):
        if offset + 8 > len(png):
            raise CardError("That PNG image is cut short (a chunk header is missing).")
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        end = offset + 12 + length
        if end > len(png):
            raise CardError("That PNG image is cut short (a chunk is incomplete).")
        yield kind, png[offset + 8 : offset + 8 + length], offset, end
        offset = end
        if kind == b"IEND":
            return
    raise CardError("That PNG image is cut short (it has no end chunk).")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def read_png_text_chunks(png: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG as {keyword: text} (Latin-1, as the PNG spec says); the first of a keyword wins."""
    texts: dict[str, str] = {}
    for kind, data, _, _ in _chunks(png):
        if kind == b"tEXt" and b"\x00" in data:
            keyword, _, text = data.partition(b"\x00")
            texts.setdefault(keyword.decode("latin-1"), text.decode("latin-1"))
    return texts


def _without_chara(png: bytes) -> tuple[bytes, int]:
    """The PNG without its ``chara`` text chunks, and the offset of its IEND chunk in the result."""
    kept = [PNG_SIGNATURE]
    iend = -1
    size = len(PNG_SIGNATURE)
    for kind, data, start, end in _chunks(png):
        if kind == b"tEXt" and data.partition(b"\x00")[0] in (CHARA.encode(), CCV3.encode()):
            continue
        if kind == b"IEND":
            iend = size
        kept.append(png[start:end])
        size += end - start
    return b"".join(kept), iend


def placeholder_png(size: int = 64, rgb: tuple[int, int, int] = (88, 101, 242)) -> bytes:
    """A small square PNG of one colour, for a card whose character has no PNG avatar."""
    row = b"\x00" + bytes(rgb) * size  # filter type 0 (None), then the pixels
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * size, 9)) + _chunk(b"IEND", b"")
    )


# -- reading cards -----------------------------------------------------------------------------------------------


def _text(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CardError(f"The card's `{key}` must be text.")
    return value


def _card_from_fields(fields: Mapping[str, Any], avatar: bytes | None) -> CardData:
    name = check_name(_text(fields, "name"))
    extensions = fields.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise CardError("The card's `extensions` must be an object.")
    ours = extensions.get(EXTENSION_KEY)
    style = ours.get("speaking_style") if isinstance(ours, dict) else None
    texts = {
        "description": _text(fields, "description"),
        "personality": _text(fields, "personality"),
        "speaking_style": style if isinstance(style, str) else "",
    }
    trimmed = {key: len(value) for key, value in texts.items() if len(value) > FIELD_MAX_CHARS}
    extra = {key: value for key, value in fields.items() if key not in MAPPED_FIELDS}
    if trimmed:
        marked = {**(ours if isinstance(ours, dict) else {}), TRIMMED_KEY: trimmed}
        extra["extensions"] = {**extensions, EXTENSION_KEY: marked}
    description, personality, speaking_style = (_cut(value, FIELD_MAX_CHARS) for value in texts.values())
    return CardData(name, description, personality, speaking_style, extra=extra, avatar=avatar, trimmed=trimmed)


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last space or line break of its last 200."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    boundary = max(head.rfind(" "), head.rfind("\n"))
    return (head[:boundary] if boundary > limit - 200 else head).rstrip()


_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
"""A string literal; one never closed runs to the end (so every match succeeds and the scan stays linear)."""
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply ``text``'s objects and lists nest, counted without decoding it (brackets inside strings don't count).

    Linear in the text and recursion-free, so it can run on any input before :func:`json.loads` does. For text that
    is not valid JSON it counts at least as deep as a decoder gets before it fails.
    """
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))


def _too_deep(depth: int) -> CardError:
    return CardError(
        f"The card's JSON is nested {depth} levels deep; a card may nest at most {CARD_MAX_DEPTH} levels "
        "(a V2 card's outer object not counted)."
    )


def _card_from_json(raw: bytes, avatar: bytes | None, where: str) -> CardData:
    if len(raw) > CARD_MAX_BYTES:
        raise CardError(f"The card in {where} is {_mb(len(raw))} of JSON; a card can be at most {_mb(CARD_MAX_BYTES)}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CardError(f"The card is not valid JSON ({error}).") from None
    depth = json_depth(text)
    if depth > CARD_MAX_DEPTH + 1:  # decoding stays far from the recursion limit (+1: a V2 card's wrapper)
        raise _too_deep(depth)
    try:
        card = json.loads(text)
    except json.JSONDecodeError as error:
        raise CardError(f"The card is not valid JSON ({error}).") from None
    if not isinstance(card, dict):
        raise CardError("The card must be a JSON object.")
    if "spec" not in card and depth > CARD_MAX_DEPTH:  # exported as V2, it would gain the wrapper's level
        raise _too_deep(depth)
    if "spec" in card:
        spec = card.get("spec")
        if spec not in ("chara_card_v2", "chara_card_v3"):
            raise CardError(
                f"Unsupported card spec {spec!r}: expected 'chara_card_v2' or 'chara_card_v3' (or a V1 card)."
            )
        # A V3 card of another version is still read (the V3 spec: "SHOULD NOT reject"); V2 has only 2.0.
        if spec == "chara_card_v2" and not str(card.get("spec_version", "")).startswith("2."):
            raise CardError(f"Unsupported chara_card_v2 version {card.get('spec_version')!r}: expected '2.0'.")
        data = card.get("data")
        if not isinstance(data, dict):
            raise CardError(f"The {spec[-2:].upper()} card has no `data` object.")
        return _card_from_fields(data, avatar)
    if "name" not in card:
        raise CardError("The card has no `name` (neither a V2 card's `data.name` nor a V1 card's `name`).")
    return _card_from_fields(card, avatar)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def parse_card(data: bytes, filename: str) -> CardData:
    """Read a V1, V2 or V3 card from a ``.json`` file or a PNG with a ``chara`` or ``ccv3`` chunk; CardError says
    what is wrong.

    The limits hold for what is decoded too: the JSON inside a PNG may be no larger than a ``.json`` card
    (:data:`CARD_MAX_BYTES`), and no card's JSON may nest deeper than :data:`CARD_MAX_DEPTH`.
    """
    is_png = data.startswith(PNG_SIGNATURE) or filename.lower().endswith(".png")
    limit = AVATAR_MAX_BYTES if is_png else CARD_MAX_BYTES
    if len(data) > limit:
        raise CardError(f"`{filename}` is {_mb(len(data))}; a card can be at most {_mb(limit)}.")
    if not is_png:
        return _card_from_json(data, None, f"`{filename}`")
    texts = read_png_text_chunks(data)
    if CCV3 in texts:  # a V3 card's own chunk; a `chara` chunk beside it is its V2 backfill (the V3 spec)
        texts[CHARA] = texts[CCV3]
    if CHARA not in texts:
        raise CardError(f"`{filename}` is a PNG without a character card (it has no `chara` text chunk).")
    try:
        raw = base64.b64decode(texts[CHARA].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"The `chara` chunk of `{filename}` is not valid base64.") from None
    avatar, _ = _without_chara(data)
    return _card_from_json(raw, avatar, f"the `chara` chunk of `{filename}`")


# -- writing cards -----------------------------------------------------------------------------------------------


def card_dict(card: CardData) -> dict[str, Any]:
    """The card as a V2 object: the kept fields given back, ours mapped, every V2 field present."""
    extra = dict(card.extra)
    extensions = dict(extra.get("extensions") or {})
    ours = extensions.get(EXTENSION_KEY)
    extensions[EXTENSION_KEY] = {**(ours if isinstance(ours, dict) else {}), "speaking_style": card.speaking_style}
    data: dict[str, Any] = {
        key: ([] if key in _LIST_FIELDS else "") for key in V2_FIELDS
    }  # a V2 card has every field, empty when unknown
    data.update(extra)
    data.update(
        name=card.name,
        description=card.description,
        personality=card.personality,
        extensions=extensions,
    )
    if not data["mes_example"]:
        data["mes_example"] = card.speaking_style
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}


def card_json(card: CardData) -> bytes:
    """The card as a V2 ``.json`` file (UTF-8, indented)."""
    return json.dumps(card_dict(card), ensure_ascii=False, indent=2).encode()


def card_png(avatar_png: bytes | None, card: CardData) -> bytes:
    """``avatar_png`` (or, if it is None or not a readable PNG, :func:`placeholder_png`) with the card inside.

    An existing ``chara`` chunk is replaced; the new one goes just before the image's end chunk.
    """
    try:
        stripped, iend = _without_chara(avatar_png if avatar_png is not None else placeholder_png())
    except CardError:  # not a PNG, or a broken one: the card still gets an image
        stripped, iend = _without_chara(placeholder_png())
    encoded = base64.b64encode(json.dumps(card_dict(card), ensure_ascii=False).encode())
    chunk = _chunk(b"tEXt", CHARA.encode() + b"\x00" + encoded)
    return stripped[:iend] + chunk + stripped[iend:]
