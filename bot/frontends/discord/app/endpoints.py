"""Point discord.py at a Discord-compatible server instead of discord.com.

discord.py keeps its endpoints in class attributes, so this is process-wide and meant to be
called once, at start-up, before any client logs in. The tests call it to reach the fake
Discord on loopback and restore the attributes afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

if TYPE_CHECKING:
    from discord.types.gateway import SessionStartLimit

_discord_get_bot_gateway = HTTPClient.get_bot_gateway


def configure_endpoints(api_base: str, gateway_url: str) -> None:
    """Send REST, webhook, interaction and gateway traffic to ``api_base`` and ``gateway_url``.

    ``api_base`` is the versioned REST root (``https://discord.com/api/v10``); every REST call,
    interaction callback, followup and webhook execution is built from it (discord.py's
    ``Route.BASE``, which its webhook adapter shares). ``gateway_url`` is used for the first
    gateway connect of a plain ``Client`` (``DiscordWebSocket.DEFAULT_GATEWAY``) and of an
    ``AutoShardedClient``, which otherwise takes the URL that ``GET /gateway/bot`` answers.
    Resumes go to the ``resume_gateway_url`` the gateway itself hands out in READY.
    """
    Route.BASE = api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    async def get_bot_gateway(self: HTTPClient) -> tuple[int, str, SessionStartLimit]:
        shards, _, session_start_limit = await _discord_get_bot_gateway(self)
        return shards, gateway_url, session_start_limit

    HTTPClient.get_bot_gateway = get_bot_gateway  # type: ignore[method-assign]
