"""The pacer behind the global rate limit: evenly spaced, in order, no burst after a stall, no polling."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.frontends.discord.app.ratelimit import Pacer

pytestmark = pytest.mark.timeout(10)

EPSILON = 0.002
"""Timer resolution slack: the loop may fire a timer this much before its time."""


async def through(pacer: Pacer, count: int) -> list[tuple[int, float]]:
    """``count`` callers asking at once; (caller, when it was let through), in the order they went."""
    went: list[tuple[int, float]] = []

    async def caller(number: int) -> None:
        await pacer.acquire()
        went.append((number, time.monotonic()))

    await asyncio.gather(*(caller(n) for n in range(count)))
    return went


def gaps(went: list[tuple[int, float]]) -> list[float]:
    return [b - a for (_, a), (_, b) in itertools.pairwise(went)]


async def test_callers_go_one_at_a_time_in_the_order_they_came() -> None:
    """Twenty callers at once go first come, first served, each at least period / rate after the one before."""
    pacer = Pacer(200)
    went = await through(pacer, 20)
    assert [number for number, _ in went] == list(range(20))
    assert min(gaps(went)) >= pacer.interval - EPSILON


async def test_a_stalled_loop_does_not_release_a_burst() -> None:
    """After the event loop was held up for 10 intervals, the callers who waited still go one interval apart."""
    pacer = Pacer(100)
    went: list[tuple[int, float]] = []
    first = asyncio.Event()

    async def caller(number: int) -> None:
        await pacer.acquire()
        went.append((number, time.monotonic()))
        first.set()

    callers = [asyncio.create_task(caller(n)) for n in range(20)]
    await first.wait()
    time.sleep(10 * pacer.interval)  # noqa: ASYNC251  (the point: a long callback holds the loop)
    stall_ended = time.monotonic()
    await asyncio.gather(*callers)
    after_stall = [at for at in went if at[1] >= stall_ended]
    assert len(after_stall) >= 10
    assert min(gaps(after_stall)) >= pacer.interval - EPSILON


async def test_a_cancelled_caller_gives_up_its_place() -> None:
    """A caller cancelled while waiting leaves; the next one takes its turn, not a turn later."""
    pacer = Pacer(50)
    await pacer.acquire()  # the first goes at once; the next turn is one interval away
    started = time.monotonic()
    leaving = asyncio.create_task(pacer.acquire())
    staying = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    leaving.cancel()
    await staying
    assert time.monotonic() - started < 2 * pacer.interval
    assert leaving.cancelled()
