"""Discord's per-route buckets in the fake: message sends and edits, 5 per 5 seconds per channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakediscord import FakeDiscord

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def limited() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(route_rate_limits=True) as server:
        yield server


async def test_a_sixth_message_within_five_seconds_gets_a_route_429(limited: FakeDiscord) -> None:
    """Five sends to a channel count down X-RateLimit-Remaining; the sixth is a route 429, another channel is free."""
    headers = {"Authorization": f"Bot {limited.token}"}
    other = limited.add_text_channel(limited.guild, "other")
    url = f"{limited.api_base}/channels/{limited.channel.id}/messages"
    remaining = []
    async with aiohttp.ClientSession() as session:
        for i in range(5):
            async with session.post(url, headers=headers, json={"content": f"m{i}"}) as response:
                assert response.status == 200
                remaining.append(response.headers["X-RateLimit-Remaining"])
                assert 0 < float(response.headers["X-RateLimit-Reset-After"]) <= 5
        async with session.post(url, headers=headers, json={"content": "one too many"}) as response:
            body = await response.json()
            assert response.status == 429
            assert response.headers["X-RateLimit-Scope"] == "user"
            assert response.headers["Via"]  # discord.py retries a 429 only with it
        async with session.post(
            f"{limited.api_base}/channels/{other.id}/messages", headers=headers, json={"content": "elsewhere"}
        ) as response:
            assert response.status == 200
    assert remaining == ["4", "3", "2", "1", "0"]
    assert body["global"] is False
    assert 0 < body["retry_after"] <= 5
    assert (limited.route_limit_hits, limited.global_limit_hits) == (1, 0)


async def test_edits_have_their_own_bucket(limited: FakeDiscord) -> None:
    """Edits in a channel whose send bucket is empty still go through, five of them."""
    headers = {"Authorization": f"Bot {limited.token}"}
    url = f"{limited.api_base}/channels/{limited.channel.id}/messages"
    async with aiohttp.ClientSession() as session:
        for i in range(5):
            async with session.post(url, headers=headers, json={"content": f"m{i}"}) as response:
                message_id = (await response.json())["id"]
        statuses = []
        for i in range(6):
            async with session.patch(f"{url}/{message_id}", headers=headers, json={"content": f"e{i}"}) as response:
                statuses.append(response.status)
    assert statuses == [200] * 5 + [429]


async def test_routes_are_unlimited_by_default(fake: FakeDiscord) -> None:
    """Without route_rate_limits the fake sends no bucket headers and never answers a route 429."""
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as session:
        for i in range(7):
            async with session.post(
                f"{fake.api_base}/channels/{fake.channel.id}/messages", headers=headers, json={"content": f"m{i}"}
            ) as response:
                assert response.status == 200
                assert "X-RateLimit-Remaining" not in response.headers
    assert fake.route_limit_hits == 0
