"""Fixtures for Discord tests: the fake Discord on loopback and the project's bot connected to it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from bot.config import Config, DiscordConfig
from bot.core.chat import ChatService
from bot.core.engine import Engine
from bot.frontends.discord.app.client import AiroborosBot
from bot.frontends.discord.app.endpoints import configure_endpoints
from bot.frontends.discord.ui.rendering import ChannelThrottles
from bot.inference.tokenizer import HFTokenizer
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord

PACE = 0.05
"""Seconds that stand for Discord's one second of edit pacing in these tests: the same budget, 20 times faster."""


MESSAGE_WINDOW = PACE - 0.01
"""Just under the pace of one message's edits (by 10 ms of loopback timing noise): no two of its edits land in it."""


def fast_throttles(pace: float = PACE) -> ChannelThrottles:
    """Discord's edit budget with ``pace`` seconds for each second: 5 edits per 5 s per channel, one per second per
    message, a queue position every 3 s (a fresh budget for each bot, as after a real restart)."""
    return ChannelThrottles(5, 5 * pace, message_period=pace, queue_period=3 * pace)


def pace_identify(client: discord.Client, pace: float = PACE) -> None:
    """Make ``client`` wait ``5 * pace`` s before a new IDENTIFY (after a session ends), where discord.py waits 5 s.

    discord.py's :meth:`~discord.Client.before_identify_hook` keeps a client under Discord's identify limit; the fake
    has no such limit, and the tests check what happens after the new session, not the wait before it.
    """

    async def before_identify_hook(shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(5 * pace)

    client.before_identify_hook = before_identify_hook  # type: ignore[method-assign]


@pytest.fixture
def restore_endpoints() -> Iterator[None]:
    """Restore the discord.py class attributes that configure_endpoints changes."""
    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, HTTPClient.get_bot_gateway)
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, HTTPClient.get_bot_gateway = saved


@pytest.fixture
async def fake(restore_endpoints: None) -> AsyncIterator[FakeDiscord]:
    """A started fake Discord with discord.py pointed at it."""
    async with FakeDiscord() as server:
        configure_endpoints(server.api_base, server.gateway_url)
        yield server


@dataclass
class Running:
    """The project's bot, connected to the fake, with what it was built from."""

    bot: AiroborosBot
    chat: ChatService
    store: Store


@contextlib.asynccontextmanager
async def run_bot(fake: FakeDiscord, engine: Engine, db: Path, *, pace: float = PACE) -> AsyncIterator[Running]:
    """Start the real bot (store, chat service, discord.py client) against ``fake``; stop it on exit.

    The bot paces its edits, and a new IDENTIFY, with ``pace`` seconds for each of Discord's (:func:`fast_throttles`,
    :func:`pace_identify`).
    """
    async with await Store.open(db) as store:
        chat = ChatService(store, engine, engine.config.generation)
        settings = DiscordConfig(guild_ids=[fake.guild.id])
        async with AiroborosBot(
            chat=chat, settings=settings, throttles=fast_throttles(pace), guild_ready_timeout=0.05
        ) as bot:
            pace_identify(bot, pace)
            ready = asyncio.Event()

            async def on_ready() -> None:
                ready.set()

            bot.add_listener(on_ready)
            task = asyncio.create_task(bot.start(fake.token))
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task in done:
                task.result()
            assert ready.is_set(), "the bot did not become ready"
            try:
                yield Running(bot, chat, store)
            finally:
                await bot.close()
                await task


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    """A scripted model: answers "Hello there, friend." word by word."""
    return ScriptedBackend(embedded_tokenizer[0], delay=0.01)


@pytest.fixture
async def running(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> AsyncIterator[Running]:
    """The bot on the scripted model, connected to the fake and ready."""
    async with run_bot(fake, scripted_engine(Config(), backend), tmp_path / "bot.sqlite3") as running:
        yield running
