"""``python -m bot run``: the token, and serving Discord with resources opened by the caller.

``bot.__main__`` opens the engine and the store, as discord.py's ``advanced_startup``
example does, and hands the chat service built on them to :func:`run_bot`. The token is read
and checked here, before that: a bad token fails in a second, not after a model load.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord

from bot.config import DiscordConfig
from bot.core.chat import ChatService
from bot.errors import TokenError
from bot.frontends.discord.app.client import AiroborosBot
from bot.frontends.discord.app.heartbeat import beat
from bot.redaction import redacting

_log = logging.getLogger(__name__)
TOKEN_VARIABLE = "DISCORD_TOKEN"
MESSAGE_CONTENT_REFUSED = (
    "error: Discord refused the Message Content intent: enable it in the Developer Portal "
    "(your application > Bot > Privileged Gateway Intents), or set [discord] message_content = false"
)


class DiscordUnreachable(TokenError):
    """Discord could not be asked about the token (network, DNS, a 5xx): the token may still be good."""


def read_token() -> str:
    """The bot token from :data:`TOKEN_VARIABLE`; :class:`TokenError` if it is not set."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise TokenError(f"set the {TOKEN_VARIABLE} environment variable to your bot's token")
    return token


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
        raise DiscordUnreachable(f"cannot reach Discord to check the token: {error}") from None
    finally:
        await http.close()


def freeze_startup_objects() -> int:
    """Move every object alive now into the garbage collector's permanent generation; returns how many.

    For the moment start-up is done (the model and its tokenizer loaded, the store open): what it built
    lives as long as the process, so a full collection need not walk it again. With the embedded
    tokenizer loaded that is some 330,000 objects, whose walk paused the event loop for up to a second
    per full collection under the load test, a third of that once frozen (docs/performance.md, *Load
    test*). Objects made later are collected as before; a cycle among the frozen ones is never freed,
    so this runs once, after a collection.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def run_bot(
    chat: ChatService,
    settings: DiscordConfig,
    token: str,
    *,
    stop: asyncio.Event | None = None,
    health_file: Path | None = None,
    health_interval: float = 15.0,
    **client_options: Any,
) -> int:
    """Serve Discord until ``stop`` is set (by default SIGINT/SIGTERM set it); returns the exit code.

    The bot is closed before this returns (its cogs unload first and finish the replies in
    flight), so the caller can then close the store and the engine it opened. What Discord
    refuses at connect time (the token, a privileged intent) is one line on stderr and code 2.
    With ``health_file`` a heartbeat is written there every ``health_interval`` seconds.
    """
    signals = _stop_on_signals() if stop is None else contextlib.nullcontext(stop)
    with signals as stopping, redacting(token):  # no log line shows the token, whoever writes it
        async with AiroborosBot(chat=chat, settings=settings, **client_options) as bot:
            closer = asyncio.create_task(_close_when(stopping, bot))
            beating = (
                asyncio.create_task(beat(bot, chat.engine, health_file, interval=health_interval))
                if health_file is not None
                else None
            )
            try:
                await bot.start(token)
            except discord.LoginFailure:
                print(f"error: Discord rejected the token in {TOKEN_VARIABLE}", file=sys.stderr)
                return 2
            except discord.PrivilegedIntentsRequired:
                print(MESSAGE_CONTENT_REFUSED, file=sys.stderr)  # the only privileged intent the bot asks for
                return 2
            finally:
                if beating is not None:
                    beating.cancel()
                if not stopping.is_set():
                    closer.cancel()
                await asyncio.wait({closer})  # a close under way finishes before the store and the engine close
                if not closer.cancelled():
                    closer.result()  # a failed close is not silent
    return 0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT and SIGTERM (``docker stop``) set, while the block runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        yield stop
    finally:
        # Afterwards Ctrl-C interrupts again, e.g. a slow engine shutdown.
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _close_when(stop: asyncio.Event, bot: AiroborosBot) -> None:
    await stop.wait()
    _log.info("Shutting down: finishing replies in flight, then closing the store and the model")
    await bot.close()
