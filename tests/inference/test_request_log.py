"""One ``bot.requests`` log line per request: its fields and its outcome, from the scheduler's side."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.errors import BusyError, GenerationError
from bot.inference.scheduler import Scheduler
from bot.inference.telemetry import Outcome, RequestRecord
from bot.inference.types import Prompt, SamplingParams
from tests.doubles import ScriptedBackend

PROMPT = Prompt("p", (1, 2, 3, 4), ())
PARAMS = SamplingParams(max_new_tokens=10)


def scheduler(script: str = "a b c", *, running: int = 1, per_user: int = 10) -> Scheduler:
    backend: Any = ScriptedBackend(tokenizer=None, script=lambda p: script, max_batch_size=running, delay=0.01)  # type: ignore[arg-type]
    return Scheduler(backend, max_per_user=per_user, max_total=100)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.requests"]


def fields(line: str) -> dict[str, str]:
    head, *pairs = line.split(" ")
    assert head == "request"
    return dict(pair.split("=", 1) for pair in pairs)


async def run(s: Scheduler, user: str = "456", conversation: str | None = "thread:123") -> None:
    async with s.submit(user, PROMPT, PARAMS, conversation=conversation) as ticket:
        async for _ in ticket.stream():
            pass


def test_record_line_is_key_value_in_a_fixed_order() -> None:
    """The line format is exactly ``request key=value ...`` with ``-`` for what never happened."""
    record = RequestRecord(
        "qlora", "456", Outcome.OK, conversation="thread:123", queue_wait_s=0.123, prompt_tokens=812,
        reply_tokens=120, ttft_s=0.414, tokens_per_s=23.46,
    )  # fmt: skip
    assert record.line() == (
        "request variant=qlora conversation=thread:123 user=456 queue_wait_s=0.12 prompt_tokens=812 "
        "reply_tokens=120 ttft_s=0.41 tokens_per_s=23.5 outcome=ok"
    )
    refused = RequestRecord("qlora", "456", Outcome.TOO_LONG)
    assert refused.line() == (
        "request variant=qlora conversation=- user=456 queue_wait_s=- prompt_tokens=- reply_tokens=0 ttft_s=- "
        "tokens_per_s=- outcome=too_long"
    )


def test_record_line_stays_one_line_of_pairs() -> None:
    """Spaces, newlines and ``=`` inside a value cannot break the key=value layout."""
    line = RequestRecord("v", "a b\nc=d", Outcome.OK).line()
    assert "\n" not in line
    assert fields(line)["user"] == "a_b_c_d"


async def test_finished_request_logs_one_ok_line(caplog: pytest.LogCaptureFixture) -> None:
    """A request the model finished logs once, at INFO, with its tokens and timings."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    await run(scheduler("a b c"))
    (line,) = lines(caplog)
    got = fields(line)
    assert got["outcome"] == "ok"
    assert (got["variant"], got["conversation"], got["user"]) == ("smollm2", "thread:123", "456")
    assert (got["prompt_tokens"], got["reply_tokens"]) == ("4", "3")
    assert float(got["ttft_s"]) >= 0.01  # the first word comes after one scripted delay
    assert float(got["tokens_per_s"]) > 0
    assert float(got["queue_wait_s"]) >= 0


async def test_failed_request_logs_failed_with_the_error(caplog: pytest.LogCaptureFixture) -> None:
    """A model failure logs ``outcome=failed`` and the error's class."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    with pytest.raises(GenerationError):
        await run(scheduler("FAIL now"))
    got = fields(lines(caplog)[0])
    assert (got["outcome"], got["error"]) == ("failed", "GenerationError")


async def test_reader_stopping_early_logs_stopped(caplog: pytest.LogCaptureFixture) -> None:
    """A reply whose reader stops after one word (the Stop button) logs ``outcome=stopped``."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    s = scheduler("a b c d e f")
    async with s.submit("456", PROMPT, PARAMS) as ticket:
        async for _ in ticket.stream():
            break
    got = fields(lines(caplog)[0])
    assert (got["outcome"], got["reply_tokens"], got["conversation"]) == ("stopped", "1", "-")


async def test_queue_wait_counts_the_time_behind_another_request(caplog: pytest.LogCaptureFixture) -> None:
    """With one slot the second request's queue wait is about the first one's run time."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    s = scheduler("a b c d e", running=1)
    await asyncio.gather(run(s, "1"), run(s, "2"))
    waits = {fields(line)["user"]: float(fields(line)["queue_wait_s"]) for line in lines(caplog)}
    assert waits["1"] < 0.03 <= waits["2"]


async def test_busy_refusal_logs_busy(caplog: pytest.LogCaptureFixture) -> None:
    """A request refused at admission logs ``outcome=busy`` at once, with nothing generated."""
    caplog.set_level(logging.INFO, logger="bot.requests")
    s = scheduler(per_user=1)
    s.submit("456", PROMPT, PARAMS)
    with pytest.raises(BusyError):
        s.submit("456", PROMPT, PARAMS, conversation="thread:9")
    got = fields(lines(caplog)[0])
    assert (got["outcome"], got["conversation"], got["reply_tokens"], got["ttft_s"]) == ("busy", "thread:9", "0", "-")


async def test_observers_see_every_record_and_a_failing_one_is_contained() -> None:
    """Observers get each record; one that raises does not break the request."""
    s = scheduler()
    seen: list[RequestRecord] = []

    def broken(record: RequestRecord) -> None:
        raise RuntimeError("observer bug")

    s.log.observers += [broken, seen.append]
    await run(s)
    assert [r.outcome for r in seen] == [Outcome.OK]
