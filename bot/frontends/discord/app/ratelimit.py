"""Stay under Discord's global rate limit by ourselves instead of meeting its 429s.

Discord lets a bot send at most 50 REST requests a second in all (interaction endpoints
aside). discord.py only reacts to that limit: after a global 429 it holds every request
for ``retry_after``. Too many 429s get the bot's IP banned by Cloudflare for a while, so the bot
paces itself: every request that counts against the limit first takes a slot from one
shared :class:`asyncio_throttle.Throttler`.

The slot is taken in aiohttp's ``on_request_start`` trace hook, which aiohttp awaits just
before it sends a request, through discord.py's own ``http_trace`` option. That is the
moment the request leaves, so waits inside discord.py (per-route buckets, a global 429
lock) cannot bunch requests up behind the throttle, and its retries are paced too.

The 429s Discord still sends are counted in ``on_request_end`` (for the metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace

import aiohttp
from asyncio_throttle import Throttler

DISCORD_GLOBAL_LIMIT = 50
"""Requests per second Discord allows one bot across all routes."""


def counts_against_global_limit(path: str, headers: Mapping[str, str]) -> bool:
    """Whether Discord counts a request (its URL path, its case-insensitive headers) against the global limit.

    Only requests made with the bot token count, and interaction endpoints are exempt: the
    callback lives under ``/interactions/``; follow-ups use the interaction token in the URL
    instead of the bot token. The gateway connection and the CDN send no bot token either.
    """
    return headers.get("Authorization", "").startswith("Bot ") and "/interactions/" not in path


class GlobalRateLimit:
    """Paces one bot's REST requests to ``requests_per_second`` (across every shard: they share one HTTP client)."""

    def __init__(
        self,
        requests_per_second: int,
        *,
        period: float = 1.0,
        on_rate_limited: Callable[[str], None] | None = None,
    ) -> None:
        """``on_rate_limited`` is called with the ``X-RateLimit-Scope`` header (``""`` if none) of each 429."""
        if not 0 < requests_per_second <= DISCORD_GLOBAL_LIMIT:
            raise ValueError(f"requests_per_second must be between 1 and {DISCORD_GLOBAL_LIMIT}")
        self.throttler = Throttler(rate_limit=requests_per_second, period=period)
        self.on_rate_limited = on_rate_limited

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp trace config to pass as discord.py's ``http_trace`` client option."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_request_start)
        config.on_request_end.append(self._on_request_end)
        return config

    async def _on_request_start(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if counts_against_global_limit(params.url.path, params.headers):
            await self.throttler.acquire()

    async def _on_request_end(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429 and self.on_rate_limited is not None:
            self.on_rate_limited(params.response.headers.get("X-RateLimit-Scope", ""))
