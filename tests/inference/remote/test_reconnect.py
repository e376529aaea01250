"""A server that goes away: stale keep-alive connections are sent again once, a stream that breaks is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from yarl import URL

from bot.config import Config
from bot.core.chat import ChatService
from bot.core.chat_prompts import Author
from bot.core.engine import Engine
from bot.errors import GenerationError
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Prompt, SamplingParams
from bot.store import MessageStatus, Role, Store
from tests.inference.remote._fake_vllm import FakeVLLM, Reply, stream, token
from tests.inference.remote._util import collect, text_of

pytestmark = pytest.mark.timeout(60)

BROKE_OFF = "connection to the model server broke off"


async def test_closed_keepalive_connection_is_sent_again(
    backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt
) -> None:
    """Two requests back to back on a server that closes each kept-alive connection both succeed."""
    fake.drop = "reused"
    fake.queue(Reply(stream(["One"])), Reply(stream(["Two"])))
    first = text_of(await collect(backend.generate(prompt, SamplingParams())))
    second = text_of(await collect(backend.generate(prompt, SamplingParams())))
    assert (first, second, fake.dropped) == ("One", "Two", 1)


async def test_second_attempt_takes_a_fresh_connection(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """With two closed connections in the pool, the request sent again opens a new one instead of the other."""
    fake.drop = "reused"
    params = SamplingParams()
    await asyncio.gather(collect(backend.generate(prompt, params)), collect(backend.generate(prompt, params)))
    assert text_of(await collect(backend.generate(prompt, params))) == "Hello!"
    assert fake.dropped == 1


async def test_server_dropping_every_request_fails_after_two_attempts(
    backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt
) -> None:
    """A server that closes every connection unanswered gets the request twice, then a clear error."""
    fake.drop = "all"
    with pytest.raises(GenerationError, match=BROKE_OFF):
        await collect(backend.generate(prompt, SamplingParams()))
    assert len(fake.requests) == 2


@pytest.mark.parametrize("frames", [[], [token("Hel")]], ids=["after-the-head", "mid-stream"])
async def test_no_second_attempt_once_the_answer_began(
    backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt, frames: list[bytes]
) -> None:
    """A connection closed after the status line (or some text) fails the request without sending it again."""
    fake.queue(Reply(frames, then="cut"))
    with pytest.raises(GenerationError, match=BROKE_OFF):
        await collect(backend.generate(prompt, SamplingParams()))
    assert len(fake.requests) == 1


async def test_server_stopped_mid_stream_then_back(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A server stopped mid-stream fails that reply clearly; started again on its port, it serves the next one."""
    fake.queue(Reply([token("Hello")], then="drip"))
    chunks = backend.generate(prompt, SamplingParams())
    await anext(chunks)
    closing = asyncio.create_task(fake.close())
    with pytest.raises(GenerationError, match=BROKE_OFF):
        async for _ in chunks:
            pass
    await closing
    again = FakeVLLM()
    await again.start(URL(fake.base_url).port or 0)
    try:
        assert text_of(await collect(backend.generate(prompt, SamplingParams()))) == "Hello!"
    finally:
        await again.close()


async def test_reply_broken_off_keeps_its_text_marked_failed(
    backend: OpenAIBackend, fake: FakeVLLM, tmp_path: Path
) -> None:
    """Through ChatService, the text streamed before the server went away is stored with the reply, marked failed."""
    config = Config(models=[backend.variant])
    engine = Engine(config, {"remote": Engine._wrap(backend.variant, backend, config)})
    fake.queue(Reply([token("Half"), token(" a")], then="drip"))
    shown, stopping = "", []
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        chat = ChatService(store, engine, config.generation)
        with pytest.raises(GenerationError, match=BROKE_OFF):
            async with chat.respond("thread:1", Author(1, "Alice"), "Tell me") as reply:
                assert reply is not None
                async for delta in reply.deltas():
                    shown += delta
                    if shown == "Half a":
                        stopping.append(asyncio.create_task(fake.close()))
        conversation = await store.get_conversation("thread:1")
        assert conversation is not None
        last = await store.last_message(conversation.id)
    await asyncio.gather(*stopping)
    assert last is not None
    assert shown.startswith("Half a")
    assert (last.role, last.status, last.content) == (Role.ASSISTANT, MessageStatus.FAILED, shown.strip())
