"""The heartbeat file: ``run`` writes it, ``python -m bot healthcheck`` (the container's HEALTHCHECK) reads it.

A process that is alive says little: the gateway may have been down for minutes, or the
worker thread dead. So the running bot writes, every ``[health] interval_seconds``, what it
knows (is the gateway connected, is every model variant able to serve) with a timestamp, and
the health check passes only for a fresh file in which both are true. The file is replaced
atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.config import Config

HEALTH_FILE_NAME = "bot-health.json"
"""The heartbeat's file name when ``[health] file`` is not set: it lives beside the database."""


def health_path(config: Config) -> Path:
    """``[health] file``, else :data:`HEALTH_FILE_NAME` in the database's folder (the data volume in a container)."""
    if config.health.file is not None:
        return Path(config.health.file).expanduser()
    database = config.storage.path
    folder = Path.cwd() if database == ":memory:" else Path(database).expanduser().parent
    return folder / HEALTH_FILE_NAME


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One observation of the running bot."""

    time: float
    """Unix time the observation was made."""
    gateway_connected: bool
    """Every shard's gateway connection is open and the bot is ready."""
    worker_alive: bool
    """Every model variant's backend can serve (see ``Backend.healthy``)."""
    latency_seconds: float | None = None
    """The gateway heartbeat's round trip, when known."""
    variants: dict[str, bool] = field(default_factory=dict)
    """Each variant's own health."""


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Replace ``path`` with ``beat`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(beat)), encoding="utf-8")
    os.replace(partial, path)


def check_heartbeat(path: Path, *, max_age: float, now: float | None = None) -> str | None:
    """None when the heartbeat at ``path`` is fresh and healthy; otherwise why not, in one line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        beat = Heartbeat(
            time=float(data["time"]),
            gateway_connected=bool(data["gateway_connected"]),
            worker_alive=bool(data["worker_alive"]),
            variants={str(k): bool(v) for k, v in dict(data.get("variants") or {}).items()},
        )
    except FileNotFoundError:
        return f"no heartbeat at {path}: the bot is not running (or is still loading the model)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable heartbeat at {path}: {error}"
    age = (time.time() if now is None else now) - beat.time
    if age > max_age:
        return f"stale heartbeat: the last one is {age:.0f} s old (limit {max_age:.0f} s); the bot is hung or stopped"
    if not beat.gateway_connected:
        return "the gateway is not connected to Discord"
    if not beat.worker_alive:
        down = ", ".join(name for name, ok in beat.variants.items() if not ok) or "a model variant"
        return f"the model worker cannot serve: {down}"
    return None
