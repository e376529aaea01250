"""Stay under Discord's global rate limit by ourselves instead of meeting its 429s.

Discord lets a bot send at most 50 REST requests a second in all (interaction endpoints
aside). discord.py only reacts to that limit: after a global 429 it holds every request
for ``retry_after``. Too many 429s get the bot's IP banned by Cloudflare for a while, so the bot
paces itself: every request that counts against the limit first takes a slot from one
shared :class:`Pacer`, which lets them go in an even stream, in the order they came.

Why an even stream and not "N per second": a sliding log (asyncio-throttle's ``Throttler``) lets a
whole second's worth go at once whenever the log has room, and a burst that went out together frees
its slots together one second later, so bursts repeat; if one reaches Discord a little late (a busy
event loop, the network), two of them fall into one of Discord's seconds. Under the load test's 100
streaming replies that was up to 81 requests within a second and dozens of global 429s. The even
stream leaves Discord's margin (50 against the default 45) for lateness on the way. It makes up its
own lateness, two requests at once at most (spacing every request from the one before, late or not,
had cut the rate to 17 a second with 300 replies on a busy machine; five at once let 57 reach the
fake Discord within one second there), never past ``requests_per_second`` in any second. And nobody
polls, where the sliding log woke every waiter every 10 ms.

The slot is taken in aiohttp's ``on_request_start`` trace hook, which aiohttp awaits just
before it sends a request, through discord.py's own ``http_trace`` option. That is the
moment the request leaves, so waits inside discord.py (per-route buckets, a global 429
lock) cannot bunch requests up behind the throttle, and its retries are paced too.

Requests made inside :func:`urgent_requests` (a reply's placeholder and its final edit: what a person
waits for) go ahead of the others waiting for a slot (streaming edits, which only show progress). With
hundreds of replies streaming, a finished reply's last edit otherwise queued behind one streaming edit
of every other reply: at 1,000 replies the load test saw finals land a minute after their text ended.

The 429s Discord still sends are counted in ``on_request_end`` (for the metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import SimpleNamespace

import aiohttp

DISCORD_GLOBAL_LIMIT = 50
"""Requests per second Discord allows one bot across all routes."""

_urgent: ContextVar[bool] = ContextVar("urgent_discord_requests", default=False)


@contextlib.contextmanager
def urgent_requests() -> Iterator[None]:
    """The Discord requests made inside the block (in this task) go ahead of the others waiting for the pace."""
    token = _urgent.set(True)
    try:
        yield
    finally:
        _urgent.reset(token)


def counts_against_global_limit(path: str, headers: Mapping[str, str]) -> bool:
    """Whether Discord counts a request (its URL path, its case-insensitive headers) against the global limit.

    Only requests made with the bot token count, and interaction endpoints are exempt: the
    callback lives under ``/interactions/``; follow-ups use the interaction token in the URL
    instead of the bot token. The gateway connection and the CDN send no bot token either.
    """
    return headers.get("Authorization", "").startswith("Bot ") and "/interactions/" not in path


class Pacer:
    """Lets callers through ``rate`` per ``period`` in an even stream, first come, first served.

    The generic cell rate algorithm: each caller goes ``period / rate`` seconds after the one before,
    but one running late (the event loop held up, the process not scheduled) lets the next ones catch
    up by up to ``burst`` intervals, so lateness costs little throughput; and whatever the catching up,
    no ``period`` ever holds more than ``rate`` of them (the times of the last ``rate`` are kept). Never
    more than ``burst + 1`` go at once. One timer lets waiters through; nobody polls, however many wait.
    A waiter cancelled before its turn gives its place up. An ``urgent`` caller goes before every other
    one still waiting.
    """

    def __init__(self, rate: int, period: float = 1.0, *, burst: int = 1) -> None:
        self.rate = rate
        self.period = period
        self.interval = period / rate
        self.tolerance = burst * self.interval
        self._due = -math.inf
        """The theoretical time of the next caller (``time.monotonic()``); it may go ``tolerance`` earlier."""
        self._went: deque[float] = deque(maxlen=rate)
        """When the last ``rate`` callers went."""
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for this caller's turn."""
        if not self._urgent and not self._waiting and self._may_go(time.monotonic()):
            return
        turn = asyncio.get_running_loop().create_future()
        lane = self._urgent if urgent else self._waiting
        lane.append(turn)
        self._arm()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                with contextlib.suppress(ValueError):
                    lane.remove(turn)
            raise

    def _next_turn(self) -> float:
        """The earliest time the next caller may go: the stream's, and never the ``rate + 1``-th within a period."""
        turn = self._due - self.tolerance
        if len(self._went) == self.rate:
            turn = max(turn, self._went[0] + self.period)
        return turn

    def _may_go(self, now: float) -> bool:
        """Whether a caller may go at ``now``; if so its turn is taken."""
        if now < self._next_turn():
            return False
        self._due = max(self._due, now) + self.interval
        self._went.append(now)
        return True

    def _arm(self) -> None:
        if self._timer is None and (self._urgent or self._waiting):
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._next_turn() - time.monotonic())
            self._timer = loop.call_at(loop.time() + wait, self._let_through)

    def _next_lane(self) -> deque[asyncio.Future[None]] | None:
        """The lane whose first waiter goes next, the urgent one first; cancelled waiters are dropped on the way."""
        for lane in (self._urgent, self._waiting):
            while lane and lane[0].done():
                lane.popleft()
            if lane:
                return lane
        return None

    def _let_through(self) -> None:
        self._timer = None
        now = time.monotonic()
        while (lane := self._next_lane()) is not None and self._may_go(now):
            lane.popleft().set_result(None)
        self._arm()


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
        self.pacer = Pacer(requests_per_second, period)
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
            await self.pacer.acquire(urgent=_urgent.get())

    async def _on_request_end(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429 and self.on_rate_limited is not None:
            self.on_rate_limited(params.response.headers.get("X-RateLimit-Scope", ""))
