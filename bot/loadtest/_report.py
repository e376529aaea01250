"""The load test's options, its report (one JSON object), the checks it must pass and the targets it aims at."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

EDITS_PER_CHANNEL = 5
"""Discord's message bucket per channel: 5 edits in any 5 seconds."""
LAG_P99_TARGET_MS = 100.0
RSS_TARGET_KB = 200.0
"""Issue 19's targets at 300 conversations: event-loop lag p99, resident memory per active conversation."""
MAX_REPLY_CHARS = 1900
"""Replies fit one Discord message (2000 characters), so "answered once" means one message showing the text."""


@dataclass(frozen=True)
class LoadOptions:
    """One load: ``conversations`` people write at once, each reply ``reply_chars`` long over ``reply_seconds``."""

    conversations: int = 100
    reply_chars: int = 1500
    reply_seconds: float = 20.0
    timeout: float | None = None
    """Seconds the replies may take in all after the messages were sent (default: see :attr:`deadline`)."""
    database_dir: str | None = None
    """Where the bot's SQLite file goes (a new temporary folder inside it); default: the system's temporary folder.
    On a tmpfs (``/dev/shm``) the store costs no disk syncs."""
    idle_seconds: float = 3.0
    """Before the load: how long the loop lag is sampled with the bot connected and idle (``loop_lag_ms_idle``):
    what the machine alone costs the loop, to read the lag under load against."""

    @property
    def deadline(self) -> float:
        """The timeout, by default generous: the reply time, plus two requests per conversation at 45/s, twice."""
        if self.timeout is not None:
            return self.timeout
        return 60.0 + 2 * self.reply_seconds + self.conversations * 0.1


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """What must hold at any load: every message answered exactly once, and Discord's limits kept."""
    from bot.frontends.discord.app.ratelimit import DISCORD_GLOBAL_LIMIT  # discord.py: not for the fakes' process

    discord, replies = report["discord"], report["replies"]
    return {
        "every_message_answered_once": replies["answered_once"] == report["options"]["conversations"],
        "no_global_429": discord["global_429"] == 0,
        "requests_per_second_within_global_limit": discord["requests_per_second_max"] <= DISCORD_GLOBAL_LIMIT,
        "edits_within_channel_limit": discord["edits_per_message_max_in_5s"] <= EDITS_PER_CHANNEL
        and discord["route_429"] == 0,
    }


def targets(report: dict[str, Any]) -> dict[str, bool]:
    """Issue 19's targets (set for 300 conversations): loop lag p99 under 100 ms, RSS under 200 KB a conversation."""
    bot = report["bot"]
    lag = bot["loop_lag_ms"]["p99"]
    return {
        "loop_lag_p99_under_100ms": lag is not None and lag < LAG_P99_TARGET_MS,
        "rss_under_200kb_per_conversation": bot["rss_kb_per_conversation"] < RSS_TARGET_KB,
    }


def assemble(
    options: LoadOptions,
    machine: dict[str, Any],
    bot: dict[str, Any],
    seen: dict[str, Any],
    *,
    lag: dict[str, Any],
    idle_lag: dict[str, Any],
) -> dict[str, Any]:
    """The report from the bot's side (``bot``, the loop ``lag`` and ``idle_lag``) and the fakes' (``seen``)."""
    conversations = options.conversations
    report: dict[str, Any] = {
        "options": asdict(options) | {"timeout": options.deadline},
        "machine": machine,
        "seconds": seen["seconds"],
        "bot": {
            "loop_lag_ms": lag,
            "loop_lag_ms_idle": idle_lag,
            **bot,
            "cpu_ms_per_conversation": round(bot["cpu_s"] * 1000 / conversations, 1),
            "rss_kb_per_conversation": round((bot["rss_mb_peak"] - bot["rss_mb_before"]) * 1024 / conversations, 1),
        },
        "replies": seen["replies"],
        "discord": seen["discord"],
        "model_server": seen["server"],
        "fakes_cpu_s": seen["fake_cpu_s"],
    }
    report["checks"] = checks(report)
    report["targets"] = targets(report)
    report["ok"] = all(report["checks"].values()) and all(report["targets"].values())
    return report


def print_report(report: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object on stdout (``--json``), or first a short summary on stderr."""
    if not as_json:
        bot, discord, replies = report["bot"], report["discord"], report["replies"]
        lag = bot["loop_lag_ms"]
        missed = [name for group in ("checks", "targets") for name, held in report[group].items() if not held]
        print(
            f"{report['options']['conversations']} conversations in {report['seconds']} s: "
            f"{replies['answered_once']} answered once ({replies['lost']} lost, {replies['duplicated']} duplicated, "
            f"{replies['cut_short']} cut short); loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms "
            f"(idle: p99 {bot['loop_lag_ms_idle']['p99']} ms); "
            f"bot CPU {bot['cpu_ms_per_conversation']} ms and RSS {bot['rss_kb_per_conversation']} KB a conversation; "
            f"Discord {discord['requests_per_second_mean']} requests/s (max {discord['requests_per_second_max']} "
            f"in a second), {discord['global_429']} global 429s; "
            + ("all checks and targets hold" if not missed else "missed: " + ", ".join(missed)),
            file=sys.stderr,
        )
    print(json.dumps(report, indent=None if as_json else 2))
