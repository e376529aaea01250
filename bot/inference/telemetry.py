"""What happened to each model request, reported once when it ends.

Every request a :class:`~bot.inference.scheduler.Scheduler` sees ends as one
:class:`RequestRecord`: one ``key=value`` line on the ``bot.requests`` logger, and a call to
each observer (the Prometheus metrics). The scheduler reports what it sees itself (queue
wait, time to first token, tokens, ``ok``/``stopped``/``failed``/``busy``); the caller that
builds prompts reports a prompt that cannot fit (``too_long``) through the same
:meth:`RequestLog.report`, so the line and the figures come from one place.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

_log = logging.getLogger("bot.requests")


class Outcome(enum.StrEnum):
    """How a request ended."""

    OK = "ok"
    """The model finished (EOS, a stop sequence or ``max_new_tokens``)."""
    STOPPED = "stopped"
    """Its reader stopped early (the Stop button, a shutdown, someone gave up waiting in the queue)."""
    FAILED = "failed"
    """The model failed while answering (OOM included), or the backend closed under it."""
    BUSY = "busy"
    """Refused at admission: the per-user or global cap was reached, or the user's rate limit."""
    TOO_LONG = "too_long"
    """Refused before admission: the message cannot fit the context window."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request, as it ended. Times are seconds; ``None`` where the request never got that far."""

    variant: str
    user: str
    outcome: Outcome
    conversation: str | None = None
    """The conversation's key (``thread:123``), or ``None`` for a one-off answer."""
    queue_wait_s: float | None = None
    """From admission to a free slot on the model."""
    prompt_tokens: int | None = None
    reply_tokens: int = 0
    ttft_s: float | None = None
    """From admission to the first token: what the person waited, queue included."""
    tokens_per_s: float | None = None
    """Reply tokens over the time from a free slot to the last token (prefill included)."""
    error: str | None = None
    """The exception's class name when the outcome is ``failed``."""

    def line(self) -> str:
        """The log line: ``request variant=... outcome=...``; absent values are ``-``."""
        fields: list[tuple[str, object]] = [
            ("variant", self.variant),
            ("conversation", self.conversation),
            ("user", self.user),
            ("queue_wait_s", _seconds(self.queue_wait_s)),
            ("prompt_tokens", self.prompt_tokens),
            ("reply_tokens", self.reply_tokens),
            ("ttft_s", _seconds(self.ttft_s)),
            ("tokens_per_s", None if self.tokens_per_s is None else f"{self.tokens_per_s:.1f}"),
            ("outcome", self.outcome.value),
        ]
        if self.error is not None:
            fields.append(("error", self.error))
        return "request " + " ".join(f"{key}={'-' if value is None else _plain(str(value))}" for key, value in fields)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _plain(value: str) -> str:
    # Values are ids and names, but a line must stay one line of key=value pairs whatever they hold.
    return "".join("_" if ch.isspace() or ch == "=" else ch for ch in value) or "-"


RequestObserver = Callable[[RequestRecord], None]
"""Something told about every request that ends (e.g. :meth:`bot.metrics.Metrics.observe`)."""


class RequestLog:
    """Where one variant's requests are reported: a log line each, then every observer."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.observers: list[RequestObserver] = []

    def report(self, record: RequestRecord) -> None:
        """Log ``record`` and pass it to the observers; an observer that fails is logged, never raised."""
        _log.info("%s", record.line())
        for observer in self.observers:
            try:
                observer(record)
            except Exception:
                _log.exception("A request observer failed")

    def refused(self, user: str, outcome: Outcome, *, conversation: str | None = None) -> None:
        """Report a request refused before it reached the queue (``too_long``)."""
        self.report(RequestRecord(self.variant, user, outcome, conversation=conversation))
