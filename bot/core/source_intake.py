"""Taking a source in: which files qualify, size limits and caps, UTF-8 text, the url and title, its metadata lines."""

from __future__ import annotations

import codecs
import re
from datetime import UTC, datetime
from pathlib import PurePath

from bot.config import SourcesConfig
from bot.errors import BotError
from bot.store import SourceUsage

TITLE_CHARS = 100
TEXT_EXTENSIONS = frozenset(
    {
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".csv",
        ".tsv",
        ".json",
        ".jsonl",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".log",
        ".xml",
        ".html",
        ".htm",
        ".tex",
        ".srt",
        ".py",
        ".js",
        ".ts",
        ".java",
        ".c",
        ".h",
        ".cpp",
        ".hpp",
        ".cs",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".sh",
        ".sql",
        ".kt",
        ".swift",
        ".lua",
        ".r",
    }
)
"""File types taken as sources: text formats and source code."""

_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9\-._~%/?#=&+,;:@!$']*)?$")
"""A plain ``https://host/path``: no markdown (``[]()<>*``), spaces or quotes, so the public footer shows it as it
is and cannot be made into a masked link."""


_REMOVE_ONE = "remove one with `/source remove` first"


class SourceError(BotError):
    """A source cannot be added, found or removed, or there is none to answer from."""


def size_text(size: int) -> str:
    """``1234`` -> ``"1.2 kB"``, ``5_000_000`` -> ``"5.0 MB"``."""
    if size < 1000:
        return f"{size} byte{'' if size == 1 else 's'}"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def is_text_file(filename: str) -> bool:
    """Whether ``filename``'s type is one sources are taken from."""
    return PurePath(filename).suffix.lower() in TEXT_EXTENSIONS


def check_file_type(filename: str) -> None:
    """Refuse a file whose type is not one sources are taken from."""
    if not is_text_file(filename):
        raise SourceError(f"`{filename}` is not a text file; a source can be a .txt, .md, .csv, .json, .py, ... file.")


def check_size(size: int, max_bytes: int, what: str = "That source") -> None:
    """Refuse a source over the configured size."""
    if size > max_bytes:
        raise SourceError(f"{what} is {size_text(size)}; a source can be at most {size_text(max_bytes)}.")


def check_caps(usage: SourceUsage, size: int, limits: SourcesConfig) -> None:
    """Refuse a source of ``size`` bytes that would take its channel or its author past ``[sources]``'s caps."""
    caps = (
        ("This channel has", "This channel's sources hold", "a channel can hold", usage.channel_count,
         usage.channel_bytes, limits.max_per_channel, limits.max_bytes_per_channel),
        ("You have added", "Your sources hold", "one person can keep", usage.person_count,
         usage.person_bytes, limits.max_per_person, limits.max_bytes_per_person),
    )  # fmt: skip
    for has, hold, most, count, held, max_count, max_bytes in caps:
        if count >= max_count:
            raise SourceError(f"{has} {_sources(count)}, the most {most}; {_REMOVE_ONE}.")
        if held + size > max_bytes:
            raise SourceError(
                f"{hold} {size_text(held)}; with this one ({size_text(size)}) they would pass the"
                f" {size_text(max_bytes)} {most}; {_REMOVE_ONE}."
            )


def _sources(count: int) -> str:
    return f"{count} source{'' if count == 1 else 's'}"


def decode_text_file(filename: str, data: bytes, *, max_bytes: int) -> str:
    """The text of an attached file, or a :class:`SourceError` saying why it cannot be a source."""
    name = f"`{filename}`"
    check_file_type(filename)
    check_size(len(data), max_bytes, name)
    if b"\0" in data:
        raise SourceError(f"{name} is not UTF-8 text (it looks binary); save it as plain UTF-8 text.")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        # No Latin-1 fallback: it decodes any bytes at all, so a wrong guess would store mojibake as the source.
        position = bom + error.start
        raise SourceError(
            f"{name} is not UTF-8 text: byte 0x{data[position]:02X} at position {position} is not valid UTF-8 "
            "(Latin-1 or Windows-1252, perhaps); save it as UTF-8 and add it again."
        ) from None
    if not text.strip():
        raise SourceError(f"{name} is empty.")
    return text


def check_url(url: str | None) -> str | None:
    """A source's url, checked: a plain ``https://host/path`` (see :data:`_URL`)."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    if not _URL.match(url):
        raise SourceError(
            "The url must be a plain https:// link: letters, digits and - . _ ~ % / ? # = & + , ; : @ ! $ ' only."
        )
    return url


def default_title(title: str | None, filename: str | None, text: str) -> str:
    """The title given, else the file's name, else the text's first line; one line of at most 100 characters."""
    chosen = " ".join((title or filename or text.strip().split("\n", 1)[0]).split()) or "untitled"
    return chosen if len(chosen) <= TITLE_CHARS else chosen[: TITLE_CHARS - 1].rstrip() + "…"


def metadata_for(title: str, url: str | None, author: str, created_at: float) -> tuple[tuple[str, str], ...]:
    """A source's metadata lines: title, url (when it has one), author, date (``YYYY-MM-DD``, UTC)."""
    date = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%d")
    lines = [("title", title)] + ([("url", url)] if url else []) + [("author", author), ("date", date)]
    return tuple(lines)
