"""The fair queue in front of a backend.

Admission is bounded: past ``max_per_user`` (waiting or running) for one user, or
``max_total`` for everyone, :meth:`Scheduler.submit` raises :class:`~bot.errors.BusyError`
at once. A user's requests are counted by an :class:`Admission` that every variant's scheduler
shares (the engine gives them one), so the per-user cap holds across variants, and its
:class:`Meter`, when a frontend sets one, counts every admitted request against the user's rate
limit: each request that reaches the model counts once, whatever asked for it. Slots on the
backend (its ``max_batch_size``) go to the waiting user who was served least recently, so one
user's ten requests do not delay another user's first. A ticket's queue position is observable
and announced on every change.

Every request ends as one report to the scheduler's :class:`~bot.inference.telemetry.RequestLog`
(a log line, the metrics): a refused one when :meth:`Scheduler.submit` says busy, an admitted
one when its ticket is released, with its queue wait, time to first token and tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from types import TracebackType
from typing import Protocol

from bot.errors import BusyError
from bot.inference.telemetry import Outcome, RequestLog, RequestRecord
from bot.inference.types import Backend, Chunk, FinishReason, Prompt, SamplingParams


class Meter(Protocol):
    """Counts the requests each user sends to the model against a rate limit, whichever variant serves them."""

    def count(self, user: str) -> None:
        """Count one request of ``user``; past their limit raise :class:`BusyError` saying when to try again (then
        nothing is counted)."""

    def refund(self, user: str) -> None:
        """Take one count of ``user`` back: a request admitted but released before it reached the model."""


class Admission:
    """Each user's requests waiting or running, whichever variant's scheduler holds them, and the :class:`Meter`.

    The engine gives one to every variant's scheduler, so ``max_per_user`` is one cap across variants (a
    comparison of four variants holds four of a user's places) and each request is metered once.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        self.meter = meter
        """Counts each admitted request against the user's rate limit (set by a frontend that limits it)."""
        self._held: dict[str, int] = {}

    def held(self, user: str) -> int:
        """The requests ``user`` has waiting or running, over every scheduler sharing this admission."""
        return self._held.get(user, 0)

    def take(self, user: str) -> None:
        """Meter one request of ``user`` (which may refuse it: :class:`BusyError`), then hold its place."""
        if self.meter is not None:
            self.meter.count(user)
        self._held[user] = self.held(user) + 1

    def give_back(self, user: str, *, reached_model: bool) -> None:
        """Free a place of ``user``; a request that never reached the model is refunded to the meter."""
        left = self.held(user) - 1
        if left > 0:
            self._held[user] = left
        else:
            self._held.pop(user, None)
        if not reached_model and self.meter is not None:
            self.meter.refund(user)


class Ticket:
    """One admitted request. Use as ``async with scheduler.submit(...) as ticket``; leaving releases its slot."""

    def __init__(
        self, scheduler: Scheduler, user: str, prompt: Prompt, params: SamplingParams, conversation: str | None = None
    ) -> None:
        self.user = user
        self.prompt = prompt
        self.params = params
        self.conversation = conversation
        self._scheduler = scheduler
        self._started = asyncio.Event()
        self._changed = asyncio.Event()
        self._done = False
        self._reached_model = False
        # What the request's report needs, filled in as it goes (monotonic seconds).
        self._admitted_at = time.monotonic()
        self._slot_at: float | None = None
        self._first_token_at: float | None = None
        self._last_token_at: float | None = None
        self._reply_tokens = 0
        self._finish: FinishReason | None = None
        self._error: BaseException | None = None

    @property
    def position(self) -> int:
        """0 once generating; otherwise the 1-based place in the queue."""
        return self._scheduler.position(self)

    @property
    def started(self) -> bool:
        return self._started.is_set()

    async def wait_changed(self) -> int:
        """Wait until the position changes (or generation starts); return the new position."""
        self._changed.clear()
        await self._changed.wait()
        return self.position

    def _notify(self) -> None:
        self._changed.set()

    async def stream(self) -> AsyncIterator[Chunk]:
        """Wait for a slot, then stream the backend's chunks."""
        await self._started.wait()
        self._reached_model = True
        try:
            async with aclosing(self._scheduler.backend.generate(self.prompt, self.params)) as chunks:
                async for chunk in chunks:
                    self._seen(chunk)
                    yield chunk
        except Exception as error:  # a reader that stops early raises GeneratorExit, which is no failure
            self._error = error
            self._last_token_at = time.monotonic()
            raise

    def _seen(self, chunk: Chunk) -> None:
        now = time.monotonic()
        if self._first_token_at is None and (chunk.text or chunk.completion_tokens):
            self._first_token_at = now
        self._reply_tokens = chunk.completion_tokens
        if chunk.finish_reason is not None:
            self._finish = chunk.finish_reason
            self._last_token_at = now

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        """Give the slot (or the queue place) back; idempotent."""
        if not self._done:
            self._done = True
            self._scheduler._release(self)
            self._scheduler.log.report(self._record())

    def _record(self) -> RequestRecord:
        """What happened to this request, now that it is released."""
        now = time.monotonic()
        if self._error is not None or self._finish == FinishReason.ERROR:
            outcome = Outcome.FAILED
        elif self._finish in (FinishReason.STOP, FinishReason.LENGTH):
            outcome = Outcome.OK
        else:
            outcome = Outcome.STOPPED
        slot = self._slot_at
        end = self._last_token_at or now
        speed = self._reply_tokens / (end - slot) if slot is not None and self._reply_tokens and end > slot else None
        return RequestRecord(
            variant=self._scheduler.log.variant,
            user=self.user,
            outcome=outcome,
            conversation=self.conversation,
            queue_wait_s=(slot if slot is not None else now) - self._admitted_at,
            prompt_tokens=len(self.prompt),
            reply_tokens=self._reply_tokens,
            ttft_s=None if self._first_token_at is None else self._first_token_at - self._admitted_at,
            tokens_per_s=speed,
            error=None if self._error is None else type(self._error).__name__,
        )


class Scheduler:
    """Round-robin by least recent service across users, with per-user and global caps."""

    def __init__(self, backend: Backend, *, max_per_user: int, max_total: int, max_running: int | None = None) -> None:
        self.backend = backend
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.max_running = max_running or backend.max_batch_size
        self._waiting: dict[str, deque[Ticket]] = {}
        self._running: set[Ticket] = set()
        self.admission = Admission()
        """Each user's requests and the rate meter; the engine replaces it with one all its variants share."""
        self._last_served: dict[str, int] = {}
        self._clock = itertools.count(1)
        self.log = RequestLog(backend.name)
        """Where every request's end is reported (a log line; observers such as the metrics subscribe here)."""

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def submit(self, user: str, prompt: Prompt, params: SamplingParams, *, conversation: str | None = None) -> Ticket:
        """Admit a request or raise :class:`BusyError`; the ticket starts when a slot is free.

        ``conversation`` (its key) labels the request's report and goes on the prompt, so the backend may keep the
        reply's KV cache for the conversation's next turn.
        """
        if conversation is not None and prompt.conversation is None:
            prompt = dataclasses.replace(prompt, conversation=conversation)
        try:
            if self.admission.held(user) >= self.max_per_user:
                raise BusyError(
                    f"You already have {self.max_per_user} requests waiting or running; wait for one to finish."
                )
            if self.running + self.waiting >= self.max_total:
                raise BusyError("The bot is busy right now; please try again in a minute.")
            self.admission.take(user)  # last: a request refused above is not metered
        except BusyError:
            self._refuse(user, prompt, conversation)
            raise
        ticket = Ticket(self, user, prompt, params, conversation)
        self._waiting.setdefault(user, deque()).append(ticket)
        self._dispatch()
        self._announce()
        return ticket

    def _refuse(self, user: str, prompt: Prompt, conversation: str | None) -> None:
        record = RequestRecord(
            self.log.variant, user, Outcome.BUSY, conversation=conversation, prompt_tokens=len(prompt)
        )
        self.log.report(record)

    def position(self, ticket: Ticket) -> int:
        """Where ``ticket`` stands: 0 running, n waiting, -1 gone."""
        if ticket in self._running:
            return 0
        for place, candidate in enumerate(self._order(), start=1):
            if candidate is ticket:
                return place
        return -1

    def _order(self) -> list[Ticket]:
        """The order waiting tickets would start in, if nothing else arrived."""
        queues = {user: list(q) for user, q in self._waiting.items() if q}
        served = dict(self._last_served)
        order: list[Ticket] = []
        clock = max(served.values(), default=0)
        while queues:
            user = min(queues, key=lambda u: served.get(u, 0))
            order.append(queues[user].pop(0))
            clock += 1
            served[user] = clock
            if not queues[user]:
                del queues[user]
        return order

    def _dispatch(self) -> None:
        while self.running < self.max_running:
            users = [u for u, q in self._waiting.items() if q]
            if not users:
                return
            user = min(users, key=lambda u: self._last_served.get(u, 0))
            ticket = self._waiting[user].popleft()
            self._last_served[user] = next(self._clock)
            self._running.add(ticket)
            ticket._slot_at = time.monotonic()
            ticket._started.set()

    def _release(self, ticket: Ticket) -> None:
        if ticket in self._running:
            self._running.discard(ticket)
        elif ticket in self._waiting.get(ticket.user, ()):
            self._waiting[ticket.user].remove(ticket)
        else:
            return
        self.admission.give_back(ticket.user, reached_model=ticket._reached_model)
        if not self._waiting.get(ticket.user):
            self._waiting.pop(ticket.user, None)
        self._dispatch()
        self._announce()

    def _announce(self) -> None:
        for queue in self._waiting.values():
            for ticket in queue:
                ticket._notify()
        for ticket in self._running:
            ticket._notify()
