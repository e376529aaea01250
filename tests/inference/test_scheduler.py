"""The fair scheduler: caps, round-robin across users, queue positions, release."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.errors import BusyError
from bot.inference.scheduler import Admission, Scheduler, Ticket
from bot.inference.types import Prompt, SamplingParams
from tests.doubles import RecordingMeter, ScriptedBackend

PROMPT = Prompt("p", (1, 2, 3), ())
PARAMS = SamplingParams(max_new_tokens=3)


def scheduler(
    *, running: int = 1, per_user: int = 10, total: int = 100, delay: float = 0.01, admission: Admission | None = None
) -> Scheduler:
    backend: Any = ScriptedBackend(tokenizer=None, script=lambda p: "a b c", max_batch_size=running, delay=delay)  # type: ignore[arg-type]
    made = Scheduler(backend, max_per_user=per_user, max_total=total)
    if admission is not None:
        made.admission = admission
    return made


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


def test_schedulers_sharing_an_admission_cap_a_user_across_them() -> None:
    """The per-user cap counts a user's requests on every variant: one on each of two fills a cap of two."""
    shared = Admission()
    first, second = scheduler(per_user=2, admission=shared), scheduler(per_user=2, admission=shared)
    first.submit("alice", PROMPT, PARAMS)
    second.submit("alice", PROMPT, PARAMS)
    with pytest.raises(BusyError, match="already have 2"):
        first.submit("alice", PROMPT, PARAMS)
    second.submit("bob", PROMPT, PARAMS)


def test_every_admitted_request_is_metered_once() -> None:
    """Each request a scheduler admits counts once on the meter, whichever scheduler sharing it takes it."""
    meter = RecordingMeter()
    shared = Admission(meter)
    first, second = scheduler(admission=shared), scheduler(admission=shared)
    first.submit("alice", PROMPT, PARAMS)
    second.submit("alice", PROMPT, PARAMS)
    second.submit("bob", PROMPT, PARAMS)
    assert meter.counted == {"alice": 2, "bob": 1}


def test_a_request_the_meter_refuses_is_not_admitted() -> None:
    """Past the meter's limit the request is refused as busy and holds no place in the queue."""
    s = scheduler(per_user=10, admission=Admission(RecordingMeter(limit=1)))
    s.submit("alice", PROMPT, PARAMS)
    with pytest.raises(BusyError, match="too fast"):
        s.submit("alice", PROMPT, PARAMS)
    assert s.admission.held("alice") == 1 and s.waiting == 0


def test_a_request_refused_by_a_cap_is_not_metered() -> None:
    """A request the per-user or global cap refuses never reaches the meter."""
    meter = RecordingMeter()
    s = scheduler(per_user=1, total=2, admission=Admission(meter))
    s.submit("alice", PROMPT, PARAMS)
    with pytest.raises(BusyError):
        s.submit("alice", PROMPT, PARAMS)
    s.submit("bob", PROMPT, PARAMS)
    with pytest.raises(BusyError):
        s.submit("carol", PROMPT, PARAMS)
    assert meter.counted == {"alice": 1, "bob": 1}


def test_a_request_released_before_reaching_the_model_is_refunded() -> None:
    """A ticket given back before its stream began (refused later, stopped in the queue) counts nothing."""
    meter = RecordingMeter()
    s = scheduler(admission=Admission(meter))
    s.submit("alice", PROMPT, PARAMS).release()
    assert meter.refunds == ["alice"] and meter.counted == {"alice": 0}
    assert s.admission.held("alice") == 0


async def test_a_request_that_reached_the_model_stays_counted() -> None:
    """A ticket whose stream ran is not refunded when it is released."""
    meter = RecordingMeter()
    s = scheduler(admission=Admission(meter))
    await consume(s.submit("alice", PROMPT, PARAMS), [], "alice")
    assert meter.refunds == [] and meter.counted == {"alice": 1}
