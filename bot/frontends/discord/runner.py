"""``python -m bot run``: check the token, load the models, open the database, connect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import aiohttp
import discord

from bot.config import Config
from bot.core.chat import ChatService
from bot.core.engine import Engine
from bot.frontends.discord.client import AiroborosBot
from bot.frontends.discord.endpoints import configure_endpoints
from bot.store import Store

_log = logging.getLogger(__name__)
TOKEN_VARIABLE = "DISCORD_TOKEN"


class TokenError(Exception):
    """The Discord token is missing or was rejected."""


async def check_token(token: str) -> None:
    """Ask Discord who this token belongs to, before the slow model load; :class:`TokenError` if nobody."""
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        await http.static_login(token)
    except discord.LoginFailure:
        raise TokenError(
            f"Discord rejected the token in {TOKEN_VARIABLE}; copy it again from the Developer Portal"
        ) from None
    except (aiohttp.ClientError, discord.HTTPException, OSError) as error:
        raise TokenError(f"cannot reach Discord to check the token: {error}") from None
    finally:
        await http.close()


async def run_bot(config: Config, *, stop: asyncio.Event | None = None, **client_options: Any) -> int:
    """Run the bot until ``stop`` is set (SIGINT/SIGTERM set it); returns the exit code."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        print(f"error: set the {TOKEN_VARIABLE} environment variable to your bot's token", file=sys.stderr)
        return 2
    configure_endpoints(config.discord.api_base, config.discord.gateway_url)
    try:
        await check_token(token)
    except TokenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    engine = await Engine.start(config)
    try:
        async with await Store.open(config.storage.path) as store:
            chat = ChatService(store, engine, config.generation, history_limit=config.storage.history_messages)
            async with AiroborosBot(chat=chat, settings=config.discord, **client_options) as bot:
                stop = stop or _stop_on_signals()
                closer = asyncio.create_task(_close_when(stop, bot))
                try:
                    await bot.start(token)
                except discord.LoginFailure:
                    print(f"error: Discord rejected the token in {TOKEN_VARIABLE}", file=sys.stderr)
                    return 2
                finally:
                    if stop.is_set():
                        await closer  # a close is under way: let it finish
                    else:
                        closer.cancel()
    finally:
        await engine.close()
    return 0


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGINT and SIGTERM (``docker stop``) set."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def _close_when(stop: asyncio.Event, bot: AiroborosBot) -> None:
    await stop.wait()
    _log.info("Shutting down: finishing replies in flight")
    await bot.close()
