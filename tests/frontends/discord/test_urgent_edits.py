"""A reply's placeholder and its last edit go ahead of streaming edits under the global pace."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from asyncio_throttle import Throttler

from bot.frontends.discord.app import ratelimit
from bot.frontends.discord.ui.rendering import ReplyRenderer


class Screen:
    """A channel and its one message, noting for each request whether it was made as urgent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bool]] = []
        self.id = 1

    async def send(self, content: str, **options: Any) -> Screen:
        self.requests.append(("send", ratelimit._urgent.get()))
        return self

    async def edit(self, **options: Any) -> None:
        self.requests.append(("edit", ratelimit._urgent.get()))


async def test_the_placeholder_and_the_last_edit_are_urgent_a_streaming_edit_is_not() -> None:
    """start() posts the placeholder and finish() makes the last edit as urgent requests; edits in between are not."""
    screen = Screen()
    renderer = ReplyRenderer(screen, Throttler(rate_limit=5, period=5.0), lambda streaming: None, edit_period=0.001)
    reply: Any = SimpleNamespace(position=0, text="")
    await renderer.start(reply)
    reply.text = "Hello"
    await renderer._sync("Hello")  # what the pump does while the reply streams
    reply.text = "Hello there."
    renderer._reply = reply  # as stream() leaves it
    await renderer.finish()
    assert screen.requests == [("send", True), ("edit", False), ("edit", True)]
