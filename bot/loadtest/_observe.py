"""What the fake Discord saw of the bot during a load test, read from its request log and its state.

The log is read as it grows (each request once), so watching costs little while replies stream. A reply
is *final* once an edit of its thread's message carried the whole scripted text with the finished
reply's buttons (Regenerate enabled). At the end the fake's messages are the authority: each thread must
hold exactly one message from the bot, showing the whole text.
"""

from __future__ import annotations

import re
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.loadtest._stats import percentiles
from tests.fakediscord import FakeDiscord, RecordedRequest, most_within

EDIT_WINDOW = 5.0
"""Discord's per-channel message bucket: 5 edits per 5 seconds."""

_SEND = re.compile(r"/channels/(\d+)/messages")
_EDIT = re.compile(r"/channels/(\d+)/messages/\d+")
_SHOWING_QUEUE = ("⏳", "*thinking")


@dataclass
class _Thread:
    """One conversation as the fake saw it (times are ``time.monotonic()``)."""

    sends: int = 0
    placeholder_at: float | None = None
    first_text_at: float | None = None
    final_at: float | None = None
    edits: list[float] = field(default_factory=list)


def _finished_buttons(body: Any) -> bool:
    """Whether an edit's body carries the buttons of a finished reply (Regenerate enabled)."""
    rows = (body.get("components") or []) if isinstance(body, dict) else []
    buttons = [button for row in rows for button in row.get("components", [])]
    return any(b.get("custom_id", "").startswith("airoboros:regenerate:") and not b.get("disabled") for b in buttons)


class Observer:
    """Follows the fake's request log for the conversations' threads."""

    def __init__(self, fake: FakeDiscord, thread_ids: Sequence[int], text: str) -> None:
        self.fake = fake
        self.text = text
        self.threads = {thread_id: _Thread() for thread_id in thread_ids}
        self._read = len(fake.requests)
        self._sent_at = 0.0
        self._bot_requests: list[float] = []
        self._errors: deque[str] = deque(maxlen=5)
        self._error_count = 0
        self._finals = 0

    def sent(self, at: float) -> None:
        """Every person's message was dispatched, starting at ``at``."""
        self._sent_at = at

    def all_final(self) -> bool:
        return self._finals == len(self.threads)

    def read(self) -> None:
        """Take in the requests logged since the last call."""
        requests = self.fake.requests
        for request in requests[self._read :]:
            self._take(request)
        self._read = len(requests)

    def _take(self, request: RecordedRequest) -> None:
        if request.headers.get("Authorization", "").startswith("Bot "):
            self._bot_requests.append(request.at)
        if request.status >= 400:
            self._error_count += 1
            self._errors.append(f"{request.method} {request.path} -> {request.status}")
            return
        if request.method == "POST" and (match := _SEND.fullmatch(request.path)):
            thread = self.threads.get(int(match.group(1)))
            if thread is not None:
                thread.sends += 1
                thread.placeholder_at = thread.placeholder_at or request.at
        elif request.method == "PATCH" and (match := _EDIT.fullmatch(request.path)):
            thread = self.threads.get(int(match.group(1)))
            if thread is None:
                return
            thread.edits.append(request.at)
            body = request.json if isinstance(request.json, dict) else {}
            content = body.get("content") or ""
            if thread.first_text_at is None and content and not content.startswith(_SHOWING_QUEUE):
                thread.first_text_at = request.at
            if thread.final_at is None and content == self.text and _finished_buttons(body):
                thread.final_at = request.at
                self._finals += 1

    def _shown(self) -> dict[str, int]:
        """From the fake's messages: threads answered exactly once, with nothing, twice or more, or cut short."""
        bot_id = self.fake.bot_user.id
        shown: dict[int, list[str]] = {thread_id: [] for thread_id in self.threads}
        for thread_id in self.threads:
            for message in self.fake.messages_in(thread_id):
                if int(message["author"]["id"]) == bot_id:
                    shown[thread_id].append(message["content"])
        counts = {"answered_once": 0, "lost": 0, "duplicated": 0, "cut_short": 0}
        for contents in shown.values():
            if not contents:
                counts["lost"] += 1
            elif len(contents) > 1:
                counts["duplicated"] += 1
            elif contents[0] != self.text:
                counts["cut_short"] += 1
            else:
                counts["answered_once"] += 1
        return counts

    def report(self, started: float) -> dict[str, Any]:
        """The figures of the run that began at ``started`` (when the first person wrote)."""
        threads = self.threads.values()
        placeholders = [t.placeholder_at - started for t in threads if t.placeholder_at is not None]
        finals = [t.final_at for t in threads if t.final_at is not None]
        ended = max(finals, default=max(self._bot_requests, default=started))
        busy = sorted(at for at in self._bot_requests if at >= started)
        span = max(ended - started, 1e-9)
        edit_counts = [len(t.edits) for t in threads]
        return {
            "seconds": round(ended - started, 2),
            "send_seconds": round(self._sent_at - started, 3),
            "replies": self._shown()
            | {
                "seconds_to_placeholder": percentiles(placeholders),
                "seconds_to_text": percentiles([t.first_text_at - started for t in threads if t.first_text_at]),
                "seconds_to_final": percentiles([at - started for at in finals]),
                "messages_posted": sum(t.sends for t in threads),
            },
            "discord": {
                "requests": len(busy),
                "requests_per_second_mean": round(len(busy) / span, 1),
                "requests_per_second_max": most_within(busy, 1.0),
                "global_429": self.fake.global_limit_hits,
                "route_429": self.fake.route_limit_hits,
                "errors": self._error_count,
                "last_errors": list(self._errors),
                "edits_per_message_mean": round(statistics.fmean(edit_counts), 1) if edit_counts else 0,
                "edits_per_message_max_in_5s": max(
                    (most_within(sorted(t.edits), EDIT_WINDOW) for t in threads), default=0
                ),
            },
        }
