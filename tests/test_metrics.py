"""Prometheus metrics: the figures, the /metrics endpoint, and a real bot run against the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Config, DiscordConfig, MetricsConfig, parse_config
from bot.core.chat import ChatService
from bot.errors import ConfigError
from bot.frontends.discord.app.client import AiroborosBot
from bot.frontends.discord.app.endpoints import configure_endpoints
from bot.inference.telemetry import Outcome, RequestRecord
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Prompt, SamplingParams
from bot.metrics import Metrics, serve_metrics
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import chat, final_reply, first_thread
from tests.frontends.discord.conftest import restore_endpoints as _restore_endpoints

pytestmark = pytest.mark.timeout(60)

PROMPT = Prompt("p", (1, 2, 3), ())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by its name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics.exposition().decode())[(name, tuple(sorted(labels.items())))]


restore_endpoints = _restore_endpoints  # the Discord tests' fixture, used by ``fake`` here too


@pytest.fixture
async def fake(restore_endpoints: None) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with discord.py pointed at it."""
    async with FakeDiscord() as server:
        configure_endpoints(server.api_base, server.gateway_url)
        yield server


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: "one two three", max_batch_size=1, delay=0.02)


def test_observe_counts_outcomes_tokens_and_timings() -> None:
    """A finished request moves the outcome counter, the reply tokens and the three histograms."""
    metrics = Metrics()
    metrics.observe(
        RequestRecord("qlora", "1", Outcome.OK, queue_wait_s=0.1, reply_tokens=12, ttft_s=0.4, tokens_per_s=20.0)
    )
    metrics.observe(RequestRecord("qlora", "1", Outcome.BUSY))
    assert value(metrics, "airoboros_requests_total", variant="qlora", outcome="ok") == 1
    assert value(metrics, "airoboros_requests_total", variant="qlora", outcome="busy") == 1
    assert value(metrics, "airoboros_reply_tokens_total", variant="qlora") == 12
    assert value(metrics, "airoboros_time_to_first_token_seconds_count", variant="qlora") == 1
    assert value(metrics, "airoboros_time_to_first_token_seconds_bucket", variant="qlora", le="0.5") == 1
    assert value(metrics, "airoboros_time_to_first_token_seconds_bucket", variant="qlora", le="0.25") == 0
    assert value(metrics, "airoboros_queue_wait_seconds_sum", variant="qlora") == pytest.approx(0.1)
    assert value(metrics, "airoboros_tokens_per_second_sum", variant="qlora") == 20


def test_rate_limits_are_counted_by_known_scope_only() -> None:
    """A 429's scope becomes a label; a missing or odd scope is ``unknown`` (no unbounded labels)."""
    metrics = Metrics()
    for scope in ("global", "user", "", "weird"):
        metrics.rate_limited(scope)
    assert value(metrics, "airoboros_discord_rate_limited_total", scope="global") == 1
    assert value(metrics, "airoboros_discord_rate_limited_total", scope="user") == 1
    assert value(metrics, "airoboros_discord_rate_limited_total", scope="unknown") == 2


def test_each_metrics_object_has_its_own_registry() -> None:
    """Two runs in one process never share a figure (nothing goes to the global default registry)."""
    first, second = Metrics(), Metrics()
    first.rate_limited("user")
    assert value(first, "airoboros_discord_rate_limited_total", scope="user") == 1
    assert ("airoboros_discord_rate_limited_total", (("scope", "user"),)) not in samples(second.exposition().decode())


async def test_queue_gauges_follow_the_scheduler(backend: ScriptedBackend) -> None:
    """Waiting and running are read from the scheduler at each scrape, and every outcome series starts at 0."""
    engine = scripted_engine(Config(), backend)
    metrics = Metrics()
    metrics.watch(engine)
    scheduler = engine.variant().scheduler
    assert value(metrics, "airoboros_requests_total", variant="smollm2", outcome="too_long") == 0
    first = scheduler.submit("1", PROMPT, SamplingParams())
    second = scheduler.submit("2", PROMPT, SamplingParams())
    assert value(metrics, "airoboros_queue_running", variant="smollm2") == 1
    assert value(metrics, "airoboros_queue_waiting", variant="smollm2") == 1
    first.release()
    second.release()
    assert value(metrics, "airoboros_queue_running", variant="smollm2") == 0
    assert value(metrics, "airoboros_queue_waiting", variant="smollm2") == 0
    assert value(metrics, "airoboros_requests_total", variant="smollm2", outcome="stopped") == 2


async def scrape(url: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return response.headers["Content-Type"], await response.text()


async def test_endpoint_serves_the_registry_and_stops_cleanly() -> None:
    """``/metrics`` answers in Prometheus' text format while served, and nothing listens afterwards."""
    metrics = Metrics()
    metrics.rate_limited("global")
    async with metrics.serving("127.0.0.1", 0) as url:
        content_type, text = await scrape(url)
    assert content_type.startswith("text/plain; version=")
    assert samples(text)[("airoboros_discord_rate_limited_total", (("scope", "global"),))] == 1
    assert samples(text)[("airoboros_bot_info", (("version", "0.1.0"),))] == 1
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(url)


async def test_port_in_use_is_a_config_error() -> None:
    """A port something else holds gets a one-line error naming ``[metrics]`` and the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"\[metrics\] cannot listen on 127.0.0.1:{port}"):
            async with Metrics().serving("127.0.0.1", port):
                pass


async def test_port_zero_serves_nothing(backend: ScriptedBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """``[metrics] port = 0`` (the default) measures but opens no endpoint."""

    def refuse(*args: Any) -> None:
        raise AssertionError("no endpoint should be served")

    monkeypatch.setattr(Metrics, "serving", refuse)
    async with serve_metrics(scripted_engine(Config(), backend), MetricsConfig()) as metrics:
        assert value(metrics, "airoboros_queue_running", variant="smollm2") == 0


def test_metrics_config_defaults_and_range() -> None:
    """``[metrics]`` is off on 127.0.0.1 by default; a port above 65535 is refused naming the key."""
    assert (Config().metrics.port, Config().metrics.host) == (0, "127.0.0.1")
    assert parse_config({"metrics": {"port": 9100, "host": "0.0.0.0"}}, Path("c.toml")).metrics.port == 9100
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        parse_config({"metrics": {"port": 70000}}, Path("c.toml"))


@contextlib.asynccontextmanager
async def bot_with_metrics(fake: FakeDiscord, backend: ScriptedBackend, db: Path) -> AsyncIterator[str]:
    """The real bot on the scripted model against ``fake``, its metrics served as in ``python -m bot run``."""
    engine = scripted_engine(Config(), backend)
    async with (
        await Store.open(db) as store,
        serve_metrics(engine, MetricsConfig(port=0)) as metrics,
        metrics.serving("127.0.0.1", 0) as url,
    ):
        service = ChatService(store, engine, engine.config.generation)
        settings = DiscordConfig(guild_ids=[fake.guild.id])
        async with AiroborosBot(chat=service, settings=settings, metrics=metrics, guild_ready_timeout=0.05) as bot:
            task = asyncio.create_task(bot.start(fake.token))
            try:
                await fake.wait_until_ready(timeout=10)
                yield url
            finally:
                await bot.close()
                await task


async def test_a_bot_run_moves_the_figures(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """After a /chat reply the scrape shows an empty queue, one ok request, a TTFT observation and a counted 429."""
    async with bot_with_metrics(fake, backend, tmp_path / "bot.sqlite3") as url:
        _, before = await scrape(url)
        assert samples(before)[("airoboros_requests_total", (("outcome", "ok"), ("variant", "smollm2")))] == 0
        fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.05)  # the first streaming edit
        await chat(fake, "Tell me a joke.")
        thread = await first_thread(fake)
        await final_reply(fake, thread.id)
        got = samples((await scrape(url))[1])
    smollm2 = (("variant", "smollm2"),)
    assert got[("airoboros_queue_waiting", smollm2)] == 0
    assert got[("airoboros_queue_running", smollm2)] == 0
    assert got[("airoboros_requests_total", (("outcome", "ok"), *smollm2))] == 1
    assert got[("airoboros_time_to_first_token_seconds_count", smollm2)] == 1
    assert got[("airoboros_reply_tokens_total", smollm2)] == 3
    assert got[("airoboros_discord_rate_limited_total", (("scope", "user"),))] == 1
