"""The servers behind one remote variant: the least-loaded healthy one takes each request.

A remote variant may list several base URLs (several vLLM servers serving the same model). Each request goes to a
healthy server with the fewest requests in flight; ties go to the one chosen longest ago, so requests one after
another take turns. A server that fails (a refused connection, a 5xx, a stream that breaks off) is marked down and
skipped for ``retry_after`` seconds; after that one request at a time tries it again (a half-open circuit, so a
server still down costs one request rather than a burst), and the first answer brings it back. When every server
is down a request still goes to the one whose pause ends first: the user gets the real error, not a guess.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

_log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 5.0
"""Seconds a failed server is skipped before a request tries it again."""


@dataclass(eq=False, slots=True)
class Server:
    """One OpenAI-compatible server: its completions URL and what the pool knows about it."""

    base_url: str
    in_flight: int = 0
    """Requests sent to it that have not ended yet."""
    down_until: float | None = None
    """While set, the server failed and is skipped until this time (the pool's clock); ``None``: healthy."""
    chosen: int = 0
    """When it was last chosen (the pool's counter), to break ties in turn."""

    @property
    def url(self) -> str:
        """The completions endpoint."""
        return self.base_url.rstrip("/") + "/completions"


class ServerPool:
    """Chooses the server for each request and keeps each one's health; see the module docstring."""

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_urls:
            raise ValueError("a server pool needs at least one base URL")
        self.servers = [Server(url) for url in base_urls]
        self.retry_after = retry_after
        self._clock = clock
        self._turn = 0

    def choose(self, exclude: Collection[Server] = ()) -> Server | None:
        """The server for the next request, not one of ``exclude``; ``None`` when every server is excluded."""
        candidates = [server for server in self.servers if server not in exclude]
        if not candidates:
            return None
        ready = [server for server in candidates if self._ready(server)]
        if ready:
            chosen = min(ready, key=lambda server: (server.in_flight, server.chosen))
        else:
            chosen = min(candidates, key=lambda server: server.down_until or 0.0)
        self._turn += 1
        chosen.chosen = self._turn
        return chosen

    def _ready(self, server: Server) -> bool:
        if server.down_until is None:
            return True
        # Past its pause a down server takes one request at a time until it has answered again.
        return server.down_until <= self._clock() and server.in_flight == 0

    def up(self) -> bool:
        """Whether some server is not marked down (the last request to it reached it)."""
        return any(server.down_until is None for server in self.servers)

    def failed(self, server: Server) -> None:
        """``server`` failed a request: skip it for ``retry_after`` seconds."""
        if server.down_until is None and len(self.servers) > 1:
            _log.warning("Model server %s failed; skipping it for %g s", server.base_url, self.retry_after)
        server.down_until = self._clock() + self.retry_after

    def answered(self, server: Server) -> None:
        """``server`` answered a request: it is healthy."""
        if server.down_until is not None and len(self.servers) > 1:
            _log.info("Model server %s answers again", server.base_url)
        server.down_until = None
