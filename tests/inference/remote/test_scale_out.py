"""Several servers behind one variant: least-loaded choice, failed servers skipped until they answer again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from yarl import URL

from bot.config import ModelConfig
from bot.errors import GenerationError
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Chunk, Prompt, SamplingParams
from tests.inference.remote._fake_vllm import FakeVLLM, Reply, stream, token
from tests.inference.remote._util import collect, free_port, text_of
from tests.inference.remote.conftest import MakeBackend

pytestmark = pytest.mark.timeout(60)

RETRY_AFTER = 0.3


@pytest.fixture
async def other() -> AsyncIterator[FakeVLLM]:
    """A second fake vLLM on its own port."""
    server = FakeVLLM()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def pair(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], fake: FakeVLLM, other: FakeVLLM
) -> OpenAIBackend:
    """A backend whose variant lists both fake servers (``fake`` first)."""
    return await make_backend(variant_for(base_url=[fake.base_url, other.base_url]), retry_after=RETRY_AFTER)


async def answer(backend: OpenAIBackend, prompt: Prompt) -> str:
    return text_of(await collect(backend.generate(prompt, SamplingParams())))


async def test_requests_one_after_another_take_turns(
    pair: OpenAIBackend, fake: FakeVLLM, other: FakeVLLM, prompt: Prompt
) -> None:
    """With both servers idle, four requests in a row go two to each."""
    for _ in range(4):
        assert await answer(pair, prompt) == "Hello!"
    assert (len(fake.requests), len(other.requests)) == (2, 2)


async def test_busy_server_is_passed_over(pair: OpenAIBackend, fake: FakeVLLM, other: FakeVLLM, prompt: Prompt) -> None:
    """While one server streams a reply, new requests go to the idle one."""
    fake.queue(Reply([token("Long")], then="drip"))
    long = pair.generate(prompt, SamplingParams())
    await anext(long)
    for _ in range(3):
        await answer(pair, prompt)
    await long.aclose()  # type: ignore[attr-defined]
    assert (len(fake.requests), len(other.requests)) == (1, 3)


async def test_server_killed_mid_stream_is_skipped_until_back(
    pair: OpenAIBackend, fake: FakeVLLM, other: FakeVLLM, prompt: Prompt
) -> None:
    """The request on a killed server fails clearly, the next go to the other, and the first serves again once up."""
    fake.queue(Reply([token("Hello")], then="drip"))
    chunks = pair.generate(prompt, SamplingParams())
    await anext(chunks)
    closing = asyncio.create_task(fake.close())
    with pytest.raises(GenerationError, match="connection to the model server broke off"):
        async for _ in chunks:
            pass
    await closing
    killed = pair.servers.servers[0]
    assert killed.down_until is not None
    assert [await answer(pair, prompt) for _ in range(3)] == ["Hello!"] * 3
    assert len(other.requests) == 3
    back = FakeVLLM()
    await back.start(URL(fake.base_url).port or 0)
    try:
        await asyncio.sleep(RETRY_AFTER)
        back.queue(Reply(stream(["Back"])))
        assert await answer(pair, prompt) == "Back"
        assert killed.down_until is None
    finally:
        await back.close()


async def test_unreachable_server_hands_the_request_on(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], fake: FakeVLLM, prompt: Prompt
) -> None:
    """A refused connection sends the request to the next server; the refusing one is then skipped."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    remote = await make_backend(variant_for(base_url=[dead, fake.base_url]), retry_after=60)
    assert [await answer(remote, prompt) for _ in range(2)] == ["Hello!", "Hello!"]
    assert len(fake.requests) == 2
    assert remote.servers.servers[0].down_until is not None


async def test_server_error_marks_the_server_down(
    pair: OpenAIBackend, fake: FakeVLLM, other: FakeVLLM, prompt: Prompt
) -> None:
    """A 5xx fails that request with the server's message; the following requests go to the other server."""
    fake.queue(Reply(status=503, json_body={"error": {"message": "overloaded"}}))
    with pytest.raises(GenerationError, match=r"\(503\): overloaded"):
        await answer(pair, prompt)
    await answer(pair, prompt)
    await answer(pair, prompt)
    assert (len(fake.requests), len(other.requests)) == (1, 2)


async def test_cancelling_closes_the_stream_on_its_server(
    pair: OpenAIBackend, fake: FakeVLLM, other: FakeVLLM, prompt: Prompt
) -> None:
    """Closing the stream that runs on the second server disconnects there; the first server's stream flows on."""
    fake.queue(Reply([token("A")], then="drip"))
    other.queue(Reply([token("B")], then="drip"))
    first, second = pair.generate(prompt, SamplingParams()), pair.generate(prompt, SamplingParams())
    assert [(await anext(first)).text, (await anext(second)).text] == ["A", "B"]
    await second.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(other.disconnected.wait(), timeout=5)
    more: Chunk = await anext(first)
    assert (more.text, fake.disconnected.is_set()) == (" more", False)
    await first.aclose()  # type: ignore[attr-defined]


async def test_healthy_while_one_server_is_up(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], fake: FakeVLLM, prompt: Prompt
) -> None:
    """With one of two servers refusing, the backend is healthy; with both refusing, it is not."""
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    half = await make_backend(variant_for(base_url=[dead[0], fake.base_url]))
    await answer(half, prompt)
    down = await make_backend(variant_for(base_url=dead))
    with pytest.raises(GenerationError, match="cannot be reached"):
        await answer(down, prompt)
    assert (half.healthy(), down.healthy()) == (True, False)


def test_config_takes_a_list_of_servers() -> None:
    """``base_url`` may list several servers; a single string stays valid."""
    fields = {"name": "r", "backend": "openai", "model": "m", "tokenizer": "/t"}
    several = ModelConfig.model_validate(fields | {"base_url": ["http://a:8000/v1", "http://b:8000/v1"]})
    one = ModelConfig.model_validate(fields | {"base_url": "http://a:8000/v1"})
    assert (several.base_urls, one.base_urls) == (("http://a:8000/v1", "http://b:8000/v1"), ("http://a:8000/v1",))


@pytest.mark.parametrize(
    ("urls", "message"),
    [([], "needs both base_url and model"), (["http://a/v1", "http://a/v1"], "same server twice")],
    ids=["empty", "twice"],
)
def test_config_refuses_a_bad_server_list(urls: list[str], message: str) -> None:
    """An empty list or one naming a server twice is refused with a clear message."""
    with pytest.raises(ValueError, match=message):
        ModelConfig.model_validate(
            {"name": "r", "backend": "openai", "model": "m", "tokenizer": "/t", "base_url": urls}
        )
