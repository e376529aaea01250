"""Small helpers shared by the remote backend's tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

from bot.inference.types import Chunk


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    """Every chunk of one generation."""
    return [chunk async for chunk in chunks]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(chunk.text for chunk in chunks)


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
