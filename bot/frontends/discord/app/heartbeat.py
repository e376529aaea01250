"""The running bot's heartbeat: the gateway connection and the model workers, written to a file on a timer.

``python -m bot healthcheck`` (the container's HEALTHCHECK) reads the file; see :mod:`bot.health`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path

from discord.ext import commands

from bot.core.engine import Engine
from bot.health import Heartbeat, write_heartbeat

_log = logging.getLogger(__name__)


def observe(bot: commands.AutoShardedBot, engine: Engine) -> Heartbeat:
    """What the bot knows about itself now."""
    shards = list(bot.shards.values())
    connected = not bot.is_closed() and bot.is_ready() and bool(shards) and not any(s.is_closed() for s in shards)
    latency = bot.latency
    variants = {name: engine.variant(name).backend.healthy() for name in engine.names}
    return Heartbeat(
        time=time.time(),
        gateway_connected=connected,
        worker_alive=bool(variants) and all(variants.values()),
        latency_seconds=None if math.isnan(latency) or math.isinf(latency) else round(latency, 3),
        variants=variants,
    )


async def beat(bot: commands.AutoShardedBot, engine: Engine, path: Path, *, interval: float) -> None:
    """Write a heartbeat to ``path`` every ``interval`` seconds until cancelled; a failed write is logged, not fatal."""
    while True:
        try:
            await asyncio.to_thread(write_heartbeat, path, observe(bot, engine))
        except OSError as error:
            # The health check then reports a stale heartbeat, which is the truth: nobody can see us.
            _log.warning("Cannot write the heartbeat to %s: %s", path, error)
        except Exception:  # the heartbeat must outlive any surprise; a stale file then tells the operator
            _log.exception("The heartbeat failed")
        await asyncio.sleep(interval)
