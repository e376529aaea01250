"""Percentiles, as both sides of a load test report them."""

from __future__ import annotations

from collections.abc import Sequence


def percentiles(values: Sequence[float], digits: int = 3) -> dict[str, float | None]:
    """p50, p99 and max of ``values``, rounded (all None when there are none)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)

    return {"p50": rank(0.5), "p99": rank(0.99), "max": round(ordered[-1], digits)}
