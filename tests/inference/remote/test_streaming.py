"""Text deltas, finish reasons and token counts from a vLLM-framed stream."""

from __future__ import annotations

from bot.inference.remote import OpenAIBackend
from bot.inference.types import FinishReason, Prompt, SamplingParams
from tests.inference.remote._fake_vllm import DONE, FakeVLLM, Reply, stream, token, usage
from tests.inference.remote._util import collect, text_of


async def test_deltas_arrive_in_order(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """The streamed deltas join up to the server's text."""
    fake.queue(Reply(stream(["Hello", ",", " world", "!"])))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert text_of(chunks) == "Hello, world!"


async def test_only_the_last_chunk_finishes(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Every chunk but the last has no finish reason; the last says ``stop``."""
    fake.queue(Reply(stream(["Hello", ",", " world", "!"])))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert [c.finish_reason for c in chunks] == [None] * (len(chunks) - 1) + [FinishReason.STOP]


async def test_length_finish_reason(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """``finish_reason: "length"`` ends the reply with ``FinishReason.LENGTH``."""
    fake.queue(Reply(stream(["one", " two"], "length")))
    chunks = await collect(backend.generate(prompt, SamplingParams(max_new_tokens=2)))
    assert chunks[-1].finish_reason is FinishReason.LENGTH


async def test_last_chunk_counts_tokens_from_usage(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """The usage event after the finish reason gives the exact completion token count."""
    fake.queue(Reply([token("Hel"), token("lo", "stop"), usage(completion_tokens=7), DONE]))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert chunks[-1].completion_tokens == 7


async def test_tokens_counted_per_event_without_usage(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Without a usage event, each streamed event counts as one token (an empty delta included)."""
    fake.queue(Reply([token("a"), token(""), token("b"), token("c", "stop"), DONE]))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert [c.completion_tokens for c in chunks] == [1, 3, 4]


async def test_stop_string_left_in_by_the_server_is_cut(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A stop string the server does not cut (``transformers serve``) ends the reply here, without it."""
    fake.queue(Reply([token("Hi"), token(" USER"), token(":"), token(" again")], then="drip"))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert (text_of(chunks), chunks[-1].finish_reason) == ("Hi ", FinishReason.STOP)


async def test_held_back_stop_prefix_is_flushed(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Text that only looked like the start of a stop string is shown when the reply ends."""
    fake.queue(Reply(stream(["I am a", " USER"])))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert text_of(chunks) == "I am a USER"


async def test_events_split_across_reads(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """Events cut into small writes (mid-JSON, mid-line-ending) are put back together."""
    whole = b"".join(stream(["Hello", " there"])).replace(b"\n", b"\r\n")
    fake.queue(Reply([whole[i : i + 7] for i in range(0, len(whole), 7)]))
    chunks = await collect(backend.generate(prompt, SamplingParams()))
    assert text_of(chunks) == "Hello there"
