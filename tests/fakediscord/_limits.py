"""Discord's per-route rate limits, as the fake answers them (opt-in: ``FakeDiscord(route_rate_limits=True)``).

Discord keeps a bucket per route and major parameter (the channel, for message routes). Every
response says how much of it is left (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``,
``-Reset-After``, ``-Bucket``); a request past it gets a 429 with ``X-RateLimit-Scope: user``
and ``"global": false``. A bucket is a fixed window: its first request starts it, it refills
``period`` seconds later. discord.py reads the headers and waits once a bucket is empty, so a
client that keeps to them meets none of these 429s; they are counted in :attr:`RouteLimits.hits`.

Modelled: sending and editing messages in a channel, 5 each per 5 seconds, as Discord answers a bot.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class RouteLimit:
    """One route's bucket size: ``limit`` requests per ``period`` seconds per channel."""

    method: str
    pattern: re.Pattern[str]
    """Matched in full against the path after the API base; its ``channel`` group is the major parameter."""
    limit: int
    period: float

    @property
    def bucket_hash(self) -> str:
        return f"{zlib.crc32(f'{self.method} {self.pattern.pattern}'.encode()):08x}"


MESSAGE_LIMITS = (
    RouteLimit("POST", re.compile(r"/channels/(?P<channel>\d+)/messages"), 5, 5.0),
    RouteLimit("PATCH", re.compile(r"/channels/(?P<channel>\d+)/messages/\d+"), 5, 5.0),
)


@dataclass
class _Window:
    started: float
    used: int


@dataclass(frozen=True)
class RouteUse:
    """A request's place in its bucket: the headers its response carries, and whether it is refused (a 429)."""

    headers: dict[str, str]
    refused: bool
    retry_after: float

    def too_many(self) -> web.Response:
        """The 429 Discord answers past a route's bucket."""
        from ._rest import json_response  # the one JSON response builder (and _rest imports this module)

        body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": False}
        headers = self.headers | {"Retry-After": str(math.ceil(self.retry_after)), "X-RateLimit-Scope": "user"}
        return json_response(body, status=429, headers=headers)


class RouteLimits:
    """The buckets of the limited routes, and how many requests went past one."""

    def __init__(self, limits: tuple[RouteLimit, ...] = MESSAGE_LIMITS) -> None:
        self.limits = limits
        self.hits = 0
        """Requests answered with a route 429."""
        self._windows: dict[tuple[RouteLimit, str], _Window] = {}

    def take(self, method: str, path: str) -> RouteUse | None:
        """Count the request against its bucket; None for a route without one."""
        for limit in self.limits:
            match = limit.pattern.fullmatch(path) if limit.method == method else None
            if match is not None:
                return self._take(limit, match.group("channel"))
        return None

    def _take(self, limit: RouteLimit, channel: str) -> RouteUse:
        now = time.monotonic()
        window = self._windows.get((limit, channel))
        if window is None or now - window.started >= limit.period:
            window = self._windows[(limit, channel)] = _Window(now, 0)
        reset_after = window.started + limit.period - now
        refused = window.used >= limit.limit
        if refused:
            self.hits += 1
        else:
            window.used += 1
        headers = {
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": str(limit.limit - window.used),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": limit.bucket_hash,
        }
        return RouteUse(headers, refused, math.ceil(reset_after * 1000) / 1000)
