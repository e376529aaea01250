"""A fake vLLM on 127.0.0.1: ``POST /v1/completions`` answered in vLLM's exact SSE framing.

vLLM's ``completion_stream_generator`` writes ``data: {json}\\n\\n`` per engine step (compact
JSON, every field present, ``usage: null``), the last token's event carrying
``finish_reason``, then with ``stream_options.include_usage`` an event with ``choices: []``
and the usage, then ``data: [DONE]\\n\\n``. A test queues the :class:`Reply` the next request
gets; the server records each request and notices when a client goes away mid-stream.

``drop`` makes it close connections unanswered, as a server does that closes a kept-alive
connection while the client is already sending on it (llama.cpp's server after a streamed reply):
``"reused"`` drops a request that arrives on a connection which already carried a reply, ``"all"``
drops every request.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

MODEL = "airoboros"
DONE = b"data: [DONE]\n\n"


def event(payload: object) -> bytes:
    """One SSE event the way vLLM writes it."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def token(text: str, finish_reason: str | None = None, stop_reason: str | None = None) -> bytes:
    """A ``CompletionStreamResponse`` with one choice (``model_dump_json(exclude_unset=False)``)."""
    choice = {
        "index": 0,
        "text": text,
        "logprobs": None,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
        "prompt_token_ids": None,
        "token_ids": None,
    }
    return event(
        {
            "id": "cmpl-0123456789abcdef",
            "object": "text_completion",
            "created": 1767225600,
            "model": MODEL,
            "choices": [choice],
            "usage": None,
        }
    )


def usage(completion_tokens: int, prompt_tokens: int = 12) -> bytes:
    """The final usage event (``exclude_none=True``, so no ``logprobs``)."""
    return event(
        {
            "id": "cmpl-0123456789abcdef",
            "object": "text_completion",
            "created": 1767225600,
            "model": MODEL,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
            },
        }
    )


def stream(texts: Sequence[str], finish_reason: str = "stop", *, with_usage: bool = True) -> list[bytes]:
    """A whole vLLM stream: one event per text, the last with ``finish_reason``, usage, ``[DONE]``."""
    frames = [token(text) for text in texts[:-1]]
    frames.append(token(texts[-1] if texts else "", finish_reason))
    if with_usage:
        frames.append(usage(len(texts)))
    return [*frames, DONE]


@dataclass
class Reply:
    """What the next request gets."""

    frames: Sequence[bytes] = ()
    status: int = 200
    json_body: Any = None
    """For an error status: the JSON body."""
    raw_body: bytes | None = None
    """For an error status: a body that is not JSON (sent as ``content_type``)."""
    content_type: str = "text/event-stream"
    then: Literal["end", "stall", "drip", "cut"] = "end"
    """After the frames: end the body, send nothing more, keep sending tokens every 10 ms, or close the connection."""


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeVLLM:
    """The server; ``base_url`` is set once :meth:`start` returns."""

    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""
    drop: Literal["never", "reused", "all"] = "never"
    dropped: int = 0
    """Requests closed unanswered."""
    _runner: web.AppRunner | None = None
    _used: set[object] = field(default_factory=set)

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, bound = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{bound}/v1"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded(await request.json(), dict(request.headers)))
        transport = request.transport
        assert transport is not None
        if self.drop == "all" or (self.drop == "reused" and transport in self._used):
            self.dropped += 1
            transport.close()  # no byte of a response: the client sees the server disconnect
            return web.Response()
        self._used.add(transport)
        reply = self.replies.popleft() if self.replies else Reply(stream(["Hello", "!"]))
        if reply.raw_body is not None:
            return web.Response(body=reply.raw_body, status=reply.status, content_type=reply.content_type)
        if reply.status != 200 or reply.content_type != "text/event-stream":
            return web.json_response(reply.json_body, status=reply.status, content_type=reply.content_type)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        try:
            for frame in reply.frames:
                await response.write(frame)
            if reply.then == "stall":
                await asyncio.Event().wait()
            if reply.then == "cut":
                transport.close()
                return response
            while reply.then == "drip":
                await asyncio.sleep(0.01)
                await response.write(token(" more"))
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await response.write_eof()
        return response
