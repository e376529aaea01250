"""The fair scheduler: caps, round-robin across users, queue positions, release."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.errors import BusyError
from bot.inference.scheduler import Scheduler, Ticket
from bot.inference.types import Prompt, SamplingParams
from tests.doubles import ScriptedBackend

PROMPT = Prompt("p", (1, 2, 3), ())
PARAMS = SamplingParams(max_new_tokens=3)


def scheduler(*, running: int = 1, per_user: int = 10, total: int = 100, delay: float = 0.01) -> Scheduler:
    backend: Any = ScriptedBackend(tokenizer=None, script=lambda p: "a b c", max_batch_size=running, delay=delay)  # type: ignore[arg-type]
    return Scheduler(backend, max_per_user=per_user, max_total=total)


async def consume(ticket: Ticket, starts: list[str], label: str) -> None:
    async with ticket:
        async for _ in ticket.stream():
            if label not in starts:
                starts.append(label)


def test_per_user_cap_answers_busy() -> None:
    """A user past the per-user cap is told to wait, others are not."""
    s = scheduler(per_user=2)
    s.submit("alice", PROMPT, PARAMS)
    s.submit("alice", PROMPT, PARAMS)
    with pytest.raises(BusyError, match="already have 2"):
        s.submit("alice", PROMPT, PARAMS)
    s.submit("bob", PROMPT, PARAMS)


def test_global_cap_answers_busy() -> None:
    """Past the global cap everyone is told the bot is busy."""
    s = scheduler(total=3)
    for user in ("a", "b", "c"):
        s.submit(user, PROMPT, PARAMS)
    with pytest.raises(BusyError, match="busy"):
        s.submit("d", PROMPT, PARAMS)


async def test_one_users_burst_does_not_delay_anothers_first() -> None:
    """Bob's first request starts right after the request running when he arrived, not after Alice's ten."""
    s = scheduler(running=1)
    starts: list[str] = []
    tasks = [asyncio.create_task(consume(s.submit("alice", PROMPT, PARAMS), starts, f"alice{i}")) for i in range(10)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(consume(s.submit("bob", PROMPT, PARAMS), starts, "bob")))
    await asyncio.gather(*tasks)
    assert starts.index("bob") == 1


def test_queue_positions_follow_round_robin() -> None:
    """Waiting tickets report the place they will start in."""
    s = scheduler(running=1)
    running = s.submit("alice", PROMPT, PARAMS)
    a2 = s.submit("alice", PROMPT, PARAMS)
    a3 = s.submit("alice", PROMPT, PARAMS)
    b1 = s.submit("bob", PROMPT, PARAMS)
    assert running.position == 0
    assert [b1.position, a2.position, a3.position] == [1, 2, 3]


async def test_position_changes_are_announced() -> None:
    """A waiting ticket wakes up when the one ahead of it leaves."""
    s = scheduler(running=1)
    first = s.submit("alice", PROMPT, PARAMS)
    second = s.submit("bob", PROMPT, PARAMS)
    waiter = asyncio.create_task(second.wait_changed())
    await asyncio.sleep(0)
    first.release()
    assert await asyncio.wait_for(waiter, 1) == 0
    assert second.started


def test_leaving_the_queue_frees_the_place() -> None:
    """A ticket released while waiting is gone and counts against no cap."""
    s = scheduler(running=1, per_user=2)
    s.submit("alice", PROMPT, PARAMS)
    waiting = s.submit("alice", PROMPT, PARAMS)
    waiting.release()
    assert waiting.position == -1
    assert s.waiting == 0
    s.submit("alice", PROMPT, PARAMS)


async def test_finished_requests_free_their_slot() -> None:
    """When a running request ends the next waiting one starts."""
    s = scheduler(running=2)
    starts: list[str] = []
    await asyncio.gather(*(consume(s.submit(f"u{i}", PROMPT, PARAMS), starts, f"u{i}") for i in range(5)))
    assert sorted(starts) == [f"u{i}" for i in range(5)]
    assert s.running == 0
    assert s.waiting == 0
    assert s.backend.peak == 2  # type: ignore[attr-defined]


async def test_cancelled_consumer_releases_its_slot() -> None:
    """Cancelling the task that streams a ticket gives its slot to the next one."""
    s = scheduler(running=1, delay=0.5)
    starts: list[str] = []
    slow = asyncio.create_task(consume(s.submit("alice", PROMPT, PARAMS), starts, "alice"))
    nxt = s.submit("bob", PROMPT, PARAMS)
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert nxt.started
