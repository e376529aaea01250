"""What an OpenAI-compatible completions server sends back: server-sent events, their JSON, and error bodies.

:class:`SSEDecoder` follows the SSE framing a completions stream uses, which is small and fully specified (WHATWG
"server-sent events", section 9.2.6); each event's JSON is validated with pydantic (the error shapes of vLLM, old and
new, and ``transformers serve`` included). :class:`StreamedReply` turns the events of one stream into text that can
be shown, the completion token count and the finish reason; it applies the stop strings itself, because not every
server cuts them from the text. :func:`error_message` reads an error response's body (OpenAI, vLLM, TGI, FastAPI).
Nothing here does I/O: :mod:`bot.inference.remote` reads the connection.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.errors import GenerationError
from bot.inference.stops import StopMatcher
from bot.inference.types import Chunk, FinishReason

_log = logging.getLogger(__name__)

_MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type (``message`` unless the server named one) and its data."""

    event: str
    data: str


class SSEDecoder:
    """Server-sent events from a byte stream, by the WHATWG rules.

    Lines end in CRLF, LF or CR (even split across reads); ``data`` lines are joined with
    newlines; a blank line dispatches the event; comments (``:``), ``id`` and ``retry`` are
    ignored (nothing reconnects); an unfinished event at the end of the stream is dropped.
    A line without a colon is a field with an empty value, so a bare ``data`` (like ``data:``)
    adds an empty line; the spec then dispatches an event whose data is the empty string (only
    an event with no ``data`` field at all is not dispatched). Such an event carries no payload:
    the stream reader skips it.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._started = False

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """The events completed by ``data``."""
        self._buffer += data
        lines = self._buffer.splitlines(keepends=True)
        self._buffer = b""
        # An unterminated last line waits for more; so does one ended by CR, which may be half of a CRLF.
        if lines and (lines[-1].endswith(b"\r") or not lines[-1].endswith(b"\n")):
            self._buffer = lines.pop()
        return [event for line in lines if (event := self._line(line)) is not None]

    def end(self) -> list[ServerSentEvent]:
        """The events completed by the end of the stream (a last line ended by a lone CR)."""
        rest, self._buffer = self._buffer, b""
        return [event for event in [self._line(rest)] if event is not None] if rest.endswith(b"\r") else []

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            event = ServerSentEvent(self._event or "message", "\n".join(self._data)) if self._data else None
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ErrorBody(_Lenient):
    message: str = ""


class _Choice(_Lenient):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None


class _Usage(_Lenient):
    completion_tokens: int


class _StreamEvent(_Lenient):
    """A completions stream event; also the error shapes vLLM (old and new) and ``transformers serve`` send."""

    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: _ErrorBody | str | None = None
    object: str | None = None
    message: str | None = None

    def error_text(self) -> str | None:
        if isinstance(self.error, _ErrorBody):
            return self.error.message or "unknown error"
        if self.error is not None:
            return self.error or "unknown error"
        if self.object == "error":
            return self.message or "unknown error"
        return None


@dataclass
class StreamedReply:
    """What one stream has produced so far."""

    stops: StopMatcher
    tokens: int = 0
    finish: FinishReason | None = None
    stopped_here: bool = False
    """A stop string was found here, not by the server, which is still generating."""
    done: bool = False
    """``[DONE]`` arrived."""
    tail: list[str] = field(default_factory=list)
    """Text that arrived with the finish reason; it goes into the last chunk."""

    def apply(self, event: ServerSentEvent) -> str:
        """Take in one event; the text that can be shown now (raises :class:`GenerationError`)."""
        if self.done:
            return ""
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        if event.event == "error":
            raise GenerationError(f"The model server failed: {_shorten(event.data) or 'unknown error'}")
        if not event.data.strip():
            return ""  # a bare `data` line: an event by the SSE rules, but nothing in it to parse
        try:
            parsed = _StreamEvent.model_validate_json(event.data)
        except ValidationError:
            _log.warning("Malformed event from the model server: %r", event.data[:_MAX_MESSAGE_CHARS])
            raise GenerationError("The model server sent a malformed stream; please try again.") from None
        message = parsed.error_text()
        if message is not None:
            raise GenerationError(f"The model server failed: {_shorten(message)}")
        choice = next((c for c in parsed.choices if c.index == 0), None)
        if parsed.usage is not None:
            self.tokens = parsed.usage.completion_tokens
        elif choice is not None:
            self.tokens += 1  # vLLM sends an event per token (text may be empty); a usage event corrects this
        if choice is None or self.finish is not None:
            return ""
        text = self.stops.feed(choice.text or "")
        if self.stops.stopped:
            self.finish, self.stopped_here = FinishReason.STOP, True
        elif choice.finish_reason is not None:
            self.finish = _finish_reason(choice.finish_reason)
        if self.finish is not None:
            self.tail.append(text)
            return ""
        return text

    def last_chunk(self) -> Chunk:
        assert self.finish is not None
        return Chunk("".join(self.tail) + self.stops.flush(), self.tokens, self.finish)


def _finish_reason(value: str) -> FinishReason:
    if value == "length":
        return FinishReason.LENGTH
    if value in {"abort", "error"}:
        raise GenerationError("The model server aborted the reply; please try again.")
    return FinishReason.STOP  # "stop", and what some servers say for it ("eos_token", "stop_sequence")


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


def error_message(body: bytes, reason: str | None) -> str:
    """The message of an error response: ``error.message`` (OpenAI, vLLM), ``error`` (TGI), ``detail`` (FastAPI).

    A body that is not JSON is shown as it is, unless it is a proxy's HTML page: then the status's reason.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        if text.lstrip().startswith("<"):
            return reason or "no details"
        return _shorten(text) or reason or "no details"
    candidates: list[Any] = []
    if isinstance(data, dict):
        error = data.get("error")
        candidates += [error.get("message") if isinstance(error, dict) else error, data.get("message")]
        detail = data.get("detail")
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
        candidates.append(detail)
    message = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
    return _shorten(message if message is not None else text) or "no details"
