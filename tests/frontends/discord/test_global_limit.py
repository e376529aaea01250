"""Discord's global rate limit (50 requests a second): the fake enforces it, the bot stays under it by itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from multidict import CIMultiDict

from bot.config import Config, DiscordConfig, parse_config
from bot.core.chat import ChatService
from bot.errors import ConfigError
from bot.frontends.discord.app.client import AiroborosBot
from bot.frontends.discord.app.ratelimit import counts_against_global_limit
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def connected(
    fake: FakeDiscord, backend: ScriptedBackend, db: Path, **settings: Any
) -> AsyncIterator[AiroborosBot]:
    """The project's bot with these ``[discord]`` settings, connected to ``fake`` and ready; closed on exit."""
    engine = scripted_engine(Config(), backend)
    async with await Store.open(db) as store:
        chat = ChatService(store, engine, engine.config.generation)
        config = DiscordConfig(guild_ids=[fake.guild.id], **settings)
        async with AiroborosBot(chat=chat, settings=config, guild_ready_timeout=0.05) as bot:
            task = asyncio.create_task(bot.start(fake.token))
            try:
                await fake.wait_until_ready(timeout=10)
                await asyncio.wait_for(bot.wait_until_ready(), 10)
                yield bot
            finally:
                await bot.close()
                await task


async def send_at_once(bot: AiroborosBot, channel_id: int, count: int) -> None:
    """``count`` messages sent concurrently through the bot's own HTTP client."""
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    await asyncio.gather(*(channel.send(f"message {i}") for i in range(count)))


async def test_fake_answers_a_global_429_past_its_limit(fake: FakeDiscord) -> None:
    """One bot-token request too many within a second gets a global 429 that discord.py will honour."""
    fake.global_rate_limit = 3
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"{fake.api_base}/users/@me", headers=headers) as response:
                assert response.status == 200
        async with session.get(f"{fake.api_base}/users/@me", headers=headers) as response:
            body = await response.json()
            assert response.status == 429
            assert response.headers["Via"]  # without it discord.py takes a 429 for a Cloudflare ban
            assert response.headers["X-RateLimit-Global"] == "true"
            assert response.headers["X-RateLimit-Scope"] == "global"
            assert response.headers["Retry-After"] == "1"
    assert body["global"] is True
    assert 0 < body["retry_after"] <= 1
    assert fake.global_limit_hits == 1


async def test_fake_exempts_interaction_endpoints(fake: FakeDiscord) -> None:
    """With the bot-token budget spent, interaction callbacks and follow-ups are still served, as on Discord."""
    fake.global_rate_limit = 1
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_base}/users/@me", headers=headers) as response:
            assert response.status == 200
        exempt = ("/interactions/1/token/callback", f"/webhooks/{fake.application_id}/token")
        for path in exempt:
            async with session.post(f"{fake.api_base}{path}", headers=headers, json={"type": 1}) as response:
                assert response.status == 404  # unknown interaction: served, not rate limited
    assert fake.global_limit_hits == 0


async def test_bot_stays_under_the_global_limit(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """Sixty messages sent at once all arrive without one global 429: the bot paces itself below 50 a second."""
    async with connected(fake, backend, tmp_path / "bot.sqlite3") as bot:
        await send_at_once(bot, fake.channel.id, 60)
    assert fake.global_limit_hits == 0
    assert [m["content"] for m in fake.messages_in(fake.channel.id)] == [f"message {i}" for i in range(60)]


async def test_requests_per_second_sets_the_pace(fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path) -> None:
    """With [discord] requests_per_second = 8 the bot stays under a server that allows only 10 a second."""
    fake.global_rate_limit = 10
    async with connected(fake, backend, tmp_path / "bot.sqlite3", requests_per_second=8) as bot:
        await send_at_once(bot, fake.channel.id, 12)
    assert fake.global_limit_hits == 0
    assert len(fake.messages_in(fake.channel.id)) == 12


def test_only_bot_token_requests_outside_interactions_count() -> None:
    """Interaction callbacks and requests without the bot token (webhooks by token, the gateway) are not paced."""
    bot = CIMultiDict({"authorization": "Bot abc"})
    assert counts_against_global_limit("/api/v10/channels/1/messages", bot)
    assert not counts_against_global_limit("/api/v10/interactions/1/tok/callback", bot)
    assert not counts_against_global_limit("/api/v10/webhooks/1/tok", CIMultiDict())


def test_requests_per_second_above_discords_limit_is_refused(tmp_path: Path) -> None:
    """requests_per_second over Discord's 50 is a config error naming the key."""
    with pytest.raises(ConfigError, match=r"discord\.requests_per_second"):
        parse_config({"discord": {"requests_per_second": 51}}, tmp_path / "config.toml")
