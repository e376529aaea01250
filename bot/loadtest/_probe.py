"""What a load costs the bot's own process: event-loop lag, CPU time, resident memory; and the machine's load.

:class:`LagSampler` sleeps 10 ms at a time on the bot's event loop and records by how much each sleep
overshot: a callback that holds the loop for 80 ms shows as one sample near 80 ms. :class:`Probe` reads
the process's CPU time (``time.process_time``: every thread, user and system) and samples its RSS
(``VmRSS`` in ``/proc/self/status``) every quarter second; the machine's busy time comes from
``/proc/stat``, so what other processes used meanwhile can be told apart from the bot's, and Linux's
pressure stall information says for what share of the time some task was kept waiting for a CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Any

from bot.loadtest._stats import percentiles

LAG_INTERVAL = 0.01
RSS_INTERVAL = 0.25


class LagSampler:
    """Samples the event loop's lag while started."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - before - self.interval))

    def summary(self) -> dict[str, Any]:
        """Lag p50/p99/max in milliseconds, and how many samples."""
        return {"samples": len(self.lags)} | percentiles([lag * 1000 for lag in self.lags], digits=1)


def rss_bytes() -> int:
    """The process's resident memory now (its peak so far where ``/proc`` is missing)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_busy_seconds() -> float | None:
    """CPU-seconds every process on the machine has used since boot (``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and iowait
    busy = sum(ticks[:8]) - idle  # guest time is already counted in user
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_stall_seconds() -> float | None:
    """Seconds in which some runnable task waited for a CPU since boot (Linux's ``/proc/pressure/cpu``), or None."""
    try:
        line = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    except OSError:
        return None
    total = dict(field.split("=", 1) for field in line.split()[1:]).get("total")
    return None if total is None else int(total) / 1e6


def cpu_kind() -> str:
    """What the CPU offers beyond AVX2 for bf16 work (``avx512_bf16``, ``amx_tile``), as docs/performance.md notes."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    found = [flag for flag in ("avx512_bf16", "amx_tile") if flag in flags]
    return " ".join(found) if found else "AVX2 only"


class Probe:
    """The process's CPU and RSS, and the machine's load, from :meth:`start` to :meth:`stop`."""

    def __init__(self) -> None:
        self.rss_before = 0
        self.rss_peak = 0
        self._cpu = 0.0
        self._wall = 0.0
        self._machine: float | None = None
        self._stalled: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.rss_before = self.rss_peak = rss_bytes()
        self._cpu, self._wall = time.process_time(), time.monotonic()
        self._machine, self._stalled = machine_busy_seconds(), cpu_stall_seconds()
        self._task = asyncio.create_task(self._sample_rss())

    async def _sample_rss(self) -> None:
        while True:
            await asyncio.sleep(RSS_INTERVAL)
            self.rss_peak = max(self.rss_peak, rss_bytes())

    async def stop(self) -> dict[str, Any]:
        """The figures: CPU seconds and cores, RSS before and at peak, the whole machine's busy cores."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.rss_peak = max(self.rss_peak, rss_bytes())
        cpu = time.process_time() - self._cpu
        wall = max(time.monotonic() - self._wall, 1e-9)
        machine_now, stalled_now = machine_busy_seconds(), cpu_stall_seconds()
        busy = None if self._machine is None or machine_now is None else machine_now - self._machine
        stalled = None if self._stalled is None or stalled_now is None else stalled_now - self._stalled
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_cores": round(cpu / wall, 2),
            "rss_mb_before": round(self.rss_before / 2**20, 1),
            "rss_mb_peak": round(self.rss_peak / 2**20, 1),
            "machine_busy_cores": None if busy is None else round(busy / wall, 2),
            "machine_cpu_pressure_pct": None if stalled is None else round(100 * stalled / wall, 1),
        }
