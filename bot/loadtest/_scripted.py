"""The scripted model server: every completions request gets the same reply, streamed over a set time.

It speaks vLLM's SSE framing through the fake vLLM's own frame builders (``tests/inference/remote/_fake_vllm``):
one event per word, the last carrying ``finish_reason``, then the usage event and ``[DONE]``. The words are
spread evenly over ``seconds``; a stream that fell behind (a busy loop) sends what is due in one write, so the
server keeps time instead of the bot waiting on it. The frames are built once, not per request.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import dataclass

from aiohttp import web

from tests.inference.remote._fake_vllm import stream

STORY = (
    "the lantern keeper walked along the harbour wall at dusk counting boats that drifted home "
    "while gulls argued over the last of the nets and a bell rang twice from the hill"
)


def reply_text(chars: int) -> str:
    """``chars`` characters of plain words (no markdown, no stop string), the same every time."""
    text = ""
    for word in itertools.cycle(STORY.split()):
        if len(text) + 1 + len(word) > chars:
            break
        text = f"{text} {word}" if text else word
    return text + "." * (chars - len(text))


def pieces(text: str) -> list[str]:
    """``text`` as the tokens a server streams: each word with the space before it."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


@dataclass
class ServerCounts:
    """What the server saw."""

    requests: int = 0
    active: int = 0
    peak_active: int = 0
    """The most streams open at once: every conversation's, if the bot keeps them all going."""
    completed: int = 0
    aborted: int = 0
    """Streams the client closed before their end."""


class ScriptedServer:
    """``POST /v1/completions`` on 127.0.0.1, answering each request with :attr:`text` over ``seconds``."""

    def __init__(self, text: str, seconds: float) -> None:
        self.text = text
        self.seconds = seconds
        frames = stream(pieces(text))
        self._body = frames[:-2]  # the words: paced
        self._tail = b"".join(frames[-2:])  # usage and [DONE]: right after the last word
        self.counts = ServerCounts()
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Serve on a free port; returns the base URL (``http://127.0.0.1:PORT/v1``)."""
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock, backlog=4096).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        counts = self.counts
        counts.requests += 1
        counts.active += 1
        counts.peak_active = max(counts.peak_active, counts.active)
        loop = asyncio.get_running_loop()
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
            await response.prepare(request)
            started, sent, count = loop.time(), 0, len(self._body)
            while sent < count:
                due = min(count, int((loop.time() - started) / self.seconds * count) + 1)
                if due > sent:
                    await response.write(b"".join(self._body[sent:due]))
                    sent = due
                if sent < count:
                    await asyncio.sleep(max(0.0, started + sent / count * self.seconds - loop.time()))
            await response.write(self._tail)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            counts.aborted += 1
            raise
        finally:
            counts.active -= 1
        counts.completed += 1
        return response
