"""The running bot's heartbeat file: written during a fake-Discord run from the gateway's and the worker's state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from bot.config import Config, DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.app.runner import run_bot
from bot.health import check_heartbeat
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord

T = TypeVar("T")


@asynccontextmanager
async def beating(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> AsyncIterator[Path]:
    """The runner serving ``fake`` with a heartbeat every 50 ms into the yielded path."""
    path = tmp_path / "health" / "beat.json"
    engine = scripted_engine(Config(), backend)
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        chat = ChatService(store, engine, engine.config.generation)
        settings = DiscordConfig(guild_ids=[fake.guild.id])
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_bot(
                chat, settings, fake.token, stop=stop, health_file=path, health_interval=0.05, guild_ready_timeout=0.05
            )
        )
        try:
            await fake.wait_until_ready(timeout=20)
            yield path
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 20) == 0


async def poll(predicate: Callable[[], T | None]) -> T:
    """The first truthy ``predicate()`` within 20 s, checked every 20 ms (the file changes outside the fake's state)."""
    for _ in range(1000):
        if result := predicate():
            return result
        await asyncio.sleep(0.02)
    raise AssertionError("the heartbeat never showed it")


def read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


async def test_heartbeat_reports_a_connected_gateway_and_a_live_worker(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """While serving, the heartbeat says the gateway is connected and the worker alive, and healthcheck passes."""
    async with beating(fake, backend, tmp_path) as path:
        beat = await poll(lambda: (b := read(path)) and b["gateway_connected"] and b)
        assert check_heartbeat(path, max_age=60) is None
    assert beat["worker_alive"] is True
    assert beat["variants"] == {"smollm2": True}


async def test_heartbeat_reports_a_worker_that_cannot_serve(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """A backend that stops serving shows in the next heartbeat, and healthcheck fails naming it."""
    async with beating(fake, backend, tmp_path) as path:
        await poll(lambda: (b := read(path)) and b["gateway_connected"] and b)
        backend.closed = True
        await poll(lambda: (b := read(path)) and not b["worker_alive"] and b)
        assert check_heartbeat(path, max_age=60) == "the model worker cannot serve: smollm2"


async def test_heartbeat_stops_with_the_bot(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """Once the bot has stopped no more heartbeats are written, so the file goes stale."""
    async with beating(fake, backend, tmp_path) as path:
        await poll(lambda: read(path))
    last = path.stat().st_mtime_ns
    await asyncio.sleep(0.3)
    assert path.stat().st_mtime_ns == last
