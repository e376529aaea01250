"""A fake Discord (REST API + gateway) on loopback for testing the real discord.py client.

Start it with ``async with FakeDiscord() as fake:``, point discord.py at it with
``bot.frontends.discord.app.endpoints.configure_endpoints(fake.api_base, fake.gateway_url)``,
log in with ``fake.token``, then drive users from the test (``send_message``,
``invoke_slash``, ``click_button``...) and read what the bot did (``messages_in``,
``requests``, interaction handles).
"""

from ._errors import ApiError
from ._gateway import GatewaySession
from ._interactions import InteractionHandle
from ._models import (
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    FakeWebhook,
    Intent,
    MessageFlag,
    Permission,
    RecordedRequest,
)
from ._server import FakeDiscord, most_within

__all__ = [
    "ApiError",
    "ChannelType",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "FakeWebhook",
    "GatewaySession",
    "Intent",
    "InteractionHandle",
    "MessageFlag",
    "Permission",
    "RecordedRequest",
    "most_within",
]
