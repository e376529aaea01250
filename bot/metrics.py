"""Prometheus metrics for ``python -m bot run``, served at ``/metrics`` when ``[metrics] port`` is set.

One :class:`Metrics` per bot run owns its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide default one), so two bots in one process, or one test after
another, never share a figure. What it measures:

- ``airoboros_queue_waiting`` / ``airoboros_queue_running`` (gauges, per variant): requests
  waiting for a slot and sequences on the model, read from the schedulers at each scrape;
- ``airoboros_requests_total`` (counter, per variant and outcome ``ok``/``stopped``/``failed``/
  ``busy``/``too_long``): how requests ended, so the errors by kind;
- ``airoboros_time_to_first_token_seconds``, ``airoboros_queue_wait_seconds`` and
  ``airoboros_tokens_per_second`` (histograms, per variant), ``airoboros_reply_tokens_total``;
- ``airoboros_discord_rate_limited_total`` (counter, per scope ``global``/``user``/``shared``/
  ``unknown``): Discord REST answers with status 429;
- ``airoboros_bot_info{version}``.

The per-request figures come from the same :class:`~bot.inference.telemetry.RequestRecord`
as the ``bot.requests`` log line. The endpoint is an aiohttp server on the bot's own event
loop: a scrape reads the schedulers in the loop that changes them, and stopping it is one
``await``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

import bot
from bot.config import MetricsConfig
from bot.errors import ConfigError
from bot.inference.scheduler import Scheduler
from bot.inference.telemetry import Outcome, RequestRecord

if TYPE_CHECKING:
    from bot.core.engine import Engine

_log = logging.getLogger(__name__)

RATE_LIMIT_SCOPES = frozenset({"global", "user", "shared"})
"""The values of Discord's ``X-RateLimit-Scope`` header; anything else is counted as ``unknown``."""

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
_SPEED_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0)


class Metrics:
    """The metric objects of one bot run, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["variant"]
        self.requests = Counter(
            "airoboros_requests", "Model requests by how they ended", [*labels, "outcome"], registry=self.registry
        )
        self.time_to_first_token = Histogram(
            "airoboros_time_to_first_token_seconds",
            "From admission to the first token (queue wait included)",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "airoboros_queue_wait_seconds",
            "From admission to a free slot on the model",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "airoboros_tokens_per_second",
            "Reply tokens a second, per request (prefill included)",
            labels,
            buckets=_SPEED_BUCKETS,
            registry=self.registry,
        )
        self.reply_tokens = Counter(
            "airoboros_reply_tokens", "Tokens generated in replies", labels, registry=self.registry
        )
        self.discord_rate_limited = Counter(
            "airoboros_discord_rate_limited",
            "Discord REST answers with status 429, by X-RateLimit-Scope",
            ["scope"],
            registry=self.registry,
        )
        Info("airoboros_bot", "The running bot", registry=self.registry).info({"version": bot.__version__})
        self._queues = _Queues()
        self.registry.register(self._queues)

    def watch(self, engine: Engine) -> None:
        """Measure every variant of ``engine``: its queue at each scrape, and each request as it ends."""
        for name in engine.names:
            scheduler = engine.variant(name).scheduler
            self._queues.variants[name] = scheduler
            scheduler.log.observers.append(self.observe)
            for outcome in Outcome:  # every series exists from the start, so rate() sees the first request
                self.requests.labels(name, outcome.value)

    def observe(self, record: RequestRecord) -> None:
        """Count one finished (or refused) request; a :data:`~bot.inference.telemetry.RequestObserver`."""
        self.requests.labels(record.variant, record.outcome.value).inc()
        if record.reply_tokens:
            self.reply_tokens.labels(record.variant).inc(record.reply_tokens)
        if record.queue_wait_s is not None:
            self.queue_wait.labels(record.variant).observe(record.queue_wait_s)
        if record.ttft_s is not None:
            self.time_to_first_token.labels(record.variant).observe(record.ttft_s)
        if record.tokens_per_s is not None:
            self.tokens_per_second.labels(record.variant).observe(record.tokens_per_s)

    def rate_limited(self, scope: str) -> None:
        """Count one 429 from Discord; ``scope`` is its ``X-RateLimit-Scope`` header (``""`` if absent)."""
        self.discord_rate_limited.labels(scope if scope in RATE_LIMIT_SCOPES else "unknown").inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    @asynccontextmanager
    async def serving(self, host: str, port: int) -> AsyncIterator[str]:
        """Serve ``/metrics`` on ``host:port`` (0: a free port) while the block runs; yields the URL.

        :class:`ConfigError` if the address cannot be used (a port in use, say).
        """

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", scrape)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as error:
                raise ConfigError(f"[metrics] cannot listen on {host}:{port}: {error.strerror or error}") from None
            bound = runner.addresses[0][1] if runner.addresses else port
            url = f"http://{host}:{bound}/metrics"
            _log.info("Serving Prometheus metrics at %s", url)
            yield url
        finally:
            await runner.cleanup()


@asynccontextmanager
async def serve_metrics(engine: Engine, config: MetricsConfig) -> AsyncIterator[Metrics]:
    """The metrics of a bot run on ``engine``, served at ``[metrics] host:port`` unless ``port`` is 0."""
    metrics = Metrics()
    metrics.watch(engine)
    if not config.port:
        yield metrics
        return
    async with metrics.serving(config.host, config.port):
        yield metrics


class _Queues:
    """The queue gauges, read from the schedulers at each scrape (so they can never drift from the truth)."""

    def __init__(self) -> None:
        self.variants: dict[str, Scheduler] = {}

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily("airoboros_queue_waiting", "Requests waiting for a slot", labels=["variant"])
        running = GaugeMetricFamily(
            "airoboros_queue_running", "Requests generating on the model (active sequences)", labels=["variant"]
        )
        for name, scheduler in self.variants.items():
            waiting.add_metric([name], scheduler.waiting)
            running.add_metric([name], scheduler.running)
        return [waiting, running]
