"""The pacer behind the global rate limit: an even stream, in order, small bursts, lateness made up, urgent first."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace

import pytest
from yarl import URL

from bot.frontends.discord.app.ratelimit import GlobalRateLimit, Pacer, urgent_requests
from tests.fakediscord import most_within

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


def ahead_of_pace(went: list[tuple[int, float]], pacer: Pacer) -> float:
    """How far any caller went before an even stream with a burst of two allows (at most 0 with timer slack).

    Callers i and j (j after i) must be at least ``j - i - 1`` intervals apart.
    """
    times = [at for _, at in went]
    return max(
        ((j - i - 1) * pacer.interval - (times[j] - times[i]) for i, j in itertools.combinations(range(len(times)), 2)),
        default=0.0,
    )


async def test_callers_go_in_an_even_stream_in_the_order_they_came() -> None:
    """Twenty callers at once go first come, first served: two at once (the burst), then one per interval."""
    pacer = Pacer(200)
    went = await through(pacer, 20)
    assert [number for number, _ in went] == list(range(20))
    assert ahead_of_pace(went, pacer) <= EPSILON
    assert went[-1][1] - went[0][1] >= 18 * pacer.interval - EPSILON


async def test_a_stalled_loop_releases_two_at_most() -> None:
    """After the event loop was held up for 10 intervals, two waiters go at once at most, then one per interval."""
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
    assert ahead_of_pace(after_stall, pacer) <= EPSILON


async def test_late_turns_do_not_slow_the_stream() -> None:
    """With the loop busy 15 ms at a stretch, 60 callers at 100 a second still take about 0.6 s, not 60 x 25 ms."""
    pacer = Pacer(100)
    hogging = True

    async def hog() -> None:
        while hogging:
            time.sleep(0.015)  # noqa: ASYNC251  (a busy loop: every turn comes up to 15 ms late)
            await asyncio.sleep(0)

    busy = asyncio.create_task(hog())
    started = time.monotonic()
    await through(pacer, 60)
    elapsed = time.monotonic() - started
    hogging = False
    await busy
    assert elapsed < 1.2  # one interval after each late turn, instead of catching up, would take 1.5 s


async def test_no_period_holds_more_than_the_rate_however_late_the_turns() -> None:
    """With the loop held up again and again, catching up (a burst of five here) never puts ``rate + 1`` in a period."""
    pacer = Pacer(10, period=0.2, burst=4)
    hogging = True

    async def hog() -> None:
        while hogging:
            time.sleep(0.06)  # noqa: ASYNC251  (every turn comes up to three intervals late)
            await asyncio.sleep(0.005)

    busy = asyncio.create_task(hog())
    went = await through(pacer, 40)
    hogging = False
    await busy
    assert most_within([at for _, at in went], pacer.period - EPSILON) <= pacer.rate


async def test_a_cancelled_caller_gives_up_its_place() -> None:
    """A caller cancelled while waiting leaves; the next one takes its turn, not a turn later."""
    pacer = Pacer(50)
    for _ in range(2):
        await pacer.acquire()  # the first two go at once (the burst); the next turn is one interval away
    started = time.monotonic()
    leaving = asyncio.create_task(pacer.acquire())
    staying = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    leaving.cancel()
    await staying
    assert time.monotonic() - started < 2 * pacer.interval
    assert leaving.cancelled()


async def test_an_urgent_caller_goes_before_those_already_waiting() -> None:
    """Ten callers wait; one asking urgently afterwards goes next, and the ten keep their order after it."""
    pacer = Pacer(100)
    for _ in range(2):
        await pacer.acquire()  # the burst: from now on everyone waits
    order: list[str] = []

    async def caller(name: str, *, urgent: bool = False) -> None:
        await pacer.acquire(urgent=urgent)
        order.append(name)

    waiting = [asyncio.create_task(caller(f"normal {n}")) for n in range(10)]
    await asyncio.sleep(0)
    await asyncio.gather(caller("urgent", urgent=True), *waiting)
    assert order == ["urgent"] + [f"normal {n}" for n in range(10)]


async def test_requests_made_inside_urgent_requests_take_the_urgent_lane() -> None:
    """The trace hook reads urgent_requests(): a request made inside it overtakes the requests already waiting."""
    limit = GlobalRateLimit(20)
    hook = limit.trace_config().on_request_start[0]
    params = SimpleNamespace(
        url=URL("http://discord.test/api/v10/channels/1/messages"), headers={"Authorization": "Bot x"}
    )
    for _ in range(2):
        await limit.pacer.acquire()
    order: list[str] = []

    async def request(name: str) -> None:
        await hook(None, SimpleNamespace(), params)
        order.append(name)

    async def urgent_request() -> None:
        with urgent_requests():
            await request("urgent")

    waiting = [asyncio.create_task(request(f"normal {n}")) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.gather(urgent_request(), *waiting)
    assert order == ["urgent", "normal 0", "normal 1", "normal 2"]
