"""The SSE decoder follows the WHATWG event-stream rules the completions stream relies on."""

from __future__ import annotations

from bot.inference.completions import ServerSentEvent, SSEDecoder
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Prompt, SamplingParams
from tests.inference.remote._fake_vllm import DONE, FakeVLLM, Reply, token, usage
from tests.inference.remote._util import collect, text_of


def decode(*pieces: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.end()


def test_line_endings_split_across_reads() -> None:
    """LF, CRLF (even with CR and LF in different reads) and a lone CR all end lines."""
    assert [e.data for e in decode(b"data: a\n\ndata: b\r", b"\n\r\ndata: c\r\r")] == ["a", "b", "c"]


def test_data_lines_joined_with_newlines() -> None:
    """Several ``data`` lines make one event, joined with newlines."""
    assert decode(b"data: one\ndata:two\n\n") == [ServerSentEvent("message", "one\ntwo")]


def test_comments_and_other_fields_ignored() -> None:
    """Comment lines, ``id`` and ``retry`` do not end up in the data."""
    assert decode(b": keep-alive\nid: 7\nretry: 10\ndata: x\n\n") == [ServerSentEvent("message", "x")]


def test_event_type_kept() -> None:
    """An ``event`` field names the event's type."""
    assert decode(b"event: error\ndata: boom\n\n") == [ServerSentEvent("error", "boom")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    """A blank line with no data before it is not an event."""
    assert decode(b"\n\nevent: ping\n\n") == []


def test_unfinished_event_dropped_at_end() -> None:
    """An event not ended by a blank line when the stream ends is dropped."""
    assert decode(b"data: done\n\ndata: cut") == [ServerSentEvent("message", "done")]


def test_multibyte_text_split_across_reads() -> None:
    """A UTF-8 character cut between two reads comes out whole."""
    raw = "data: café ☕\n\n".encode()
    assert decode(raw[:10], raw[10:]) == [ServerSentEvent("message", "café ☕")]


def test_bare_data_field_is_an_empty_line() -> None:
    """``data`` with no colon and ``data:`` with nothing after it are fields with an empty value."""
    assert decode(b"data\n\ndata:\n\n") == [ServerSentEvent("message", ""), ServerSentEvent("message", "")]


def test_empty_data_lines_kept_between_others() -> None:
    """Empty ``data`` fields add empty lines; only the buffer's last newline is removed."""
    assert decode(b"data\ndata: x\ndata:\n\n") == [ServerSentEvent("message", "\nx\n")]


async def test_stream_with_bare_data_lines_completes(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Bare ``data`` and ``data:`` events inside a completions stream are skipped, not a malformed stream."""
    fake.queue(Reply([token("Hel"), b"data:\n\n", b"data\r\n\r\n", token("lo", "stop"), usage(2), DONE]))
    assert text_of(await collect(backend.generate(prompt, SamplingParams()))) == "Hello"
