"""The bench's figures: each phase's summary, their median and spread over repeated runs, and the printed result."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, cast


@dataclass
class Timing:
    """One request as a Discord user sees it."""

    submitted: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0

    @property
    def ttft(self) -> float:
        assert self.first is not None
        return self.first - self.submitted

    @property
    def stream_rate(self) -> float:
        """Tokens per second after the first one (what the reader sees scroll)."""
        assert self.first is not None and self.last is not None
        return (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 and self.last > self.first else 0.0


@dataclass
class Phase:
    timings: list[Timing] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict[str, float]:
        ttfts = sorted(t.ttft for t in self.timings)
        tokens = sum(t.tokens for t in self.timings)
        return {
            "requests": len(self.timings),
            "ttft_p50_s": round(_percentile(ttfts, 50), 4),
            "ttft_p95_s": round(_percentile(ttfts, 95), 4),
            "stream_tokens_per_s_p50": round(statistics.median(t.stream_rate for t in self.timings), 2),
            "aggregate_tokens_per_s": round(tokens / self.wall, 2) if self.wall else 0.0,
            "tokens": tokens,
            "wall_s": round(self.wall, 3),
        }


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    rank = (len(values) - 1) * percent / 100
    low, high = int(rank), min(int(rank) + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _numbers(values: list[Any]) -> list[float] | None:
    """``values`` if every one is a number (a figure), else ``None``."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' figures in the shape of one run, each the median over the runs."""

    def median(values: list[Any]) -> Any:
        if all(isinstance(v, dict) for v in values):
            return {key: median([v.get(key) for v in values]) for key in values[0]}
        numbers = _numbers(values)
        if numbers is None or not numbers:
            return values[0]  # not a figure (or missing in a run, like a ratio with no lone TTFT)
        if min(numbers) == max(numbers):
            return values[0]  # counts stay integers
        return round(statistics.median(numbers), 4)

    return cast(dict[str, Any], median(runs))


def spread_of(runs: list[dict[str, Any]], prefix: str = "") -> dict[str, dict[str, float]]:
    """``{figure: {"min": .., "max": ..}}`` over the runs, each figure named by its dotted path."""
    spread: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        if all(isinstance(v, dict) for v in values):
            spread.update(spread_of(cast(list[dict[str, Any]], values), f"{prefix}{key}."))
        elif (numbers := _numbers(values)) is not None:
            spread[prefix + key] = {"min": min(numbers), "max": max(numbers)}
    return spread


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object (``--json``), or a short human summary followed by it."""
    if not as_json:

        def figure(name: str) -> str:
            """The median of a dotted-path figure, and with ``--repeat`` the runs' range after it."""
            value: Any = result
            for key in name.split("."):
                value = value[key]
            low_high = result["spread"].get(name)
            if result["repeat"] == 1 or low_high is None:
                return str(value)
            return f"{value} ({low_high['min']}-{low_high['max']})"

        print(
            f"{result['environment']['device']}, median of {result['repeat']}: "
            f"{figure('concurrent.aggregate_tokens_per_s')} tok/s aggregate at "
            f"{result['options']['concurrency']} concurrent vs {figure('baseline.aggregate_tokens_per_s')} one at "
            f"a time (speed-up {figure('speedup')}); TTFT p50 {figure('concurrent.ttft_p50_s')} s, "
            f"p95 {figure('concurrent.ttft_p95_s')} s; late joiner {figure('late_joiner.ttft_s')} s vs lone "
            f"{figure('lone.ttft_p50_s')} s; peak RSS {result['memory']['peak_rss_mb']} MB",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=None if as_json else 2))
