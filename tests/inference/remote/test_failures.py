"""Every failure is a GenerationError with a short message, and the next request still works."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from bot.config import ModelConfig
from bot.errors import GenerationError
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Prompt, SamplingParams
from tests.inference.remote._fake_vllm import DONE, FakeVLLM, Reply, event, stream, token
from tests.inference.remote._util import collect, free_port, text_of
from tests.inference.remote.conftest import MakeBackend

VLLM_500 = {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "param": None, "code": 500}}
VLLM_404 = {
    "error": {"message": "The model `nope` does not exist.", "type": "NotFoundError", "param": None, "code": 404}
}
SHORT_READ = aiohttp.ClientTimeout(sock_connect=2, sock_read=0.3)


async def test_http_500_carries_the_server_message(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A 500 with vLLM's error JSON becomes a GenerationError with the server's message."""
    fake.queue(Reply(status=500, json_body=VLLM_500))
    with pytest.raises(GenerationError, match=r"failed \(500\): CUDA out of memory"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_http_404_says_the_request_was_refused(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A 4xx reads as a refused request, with the server's message."""
    fake.queue(Reply(status=404, json_body=VLLM_404))
    with pytest.raises(GenerationError, match=r"refused the request \(404\): The model `nope` does not exist\."):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_fastapi_detail_is_the_message(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """FastAPI's ``{"detail": ...}`` error body (``transformers serve``) gives the message too."""
    fake.queue(Reply(status=400, json_body={"detail": "prompt must be a string."}))
    with pytest.raises(GenerationError, match=r"\(400\): prompt must be a string\."):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_proxy_html_page_gives_the_status_reason(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """An HTML error page (a reverse proxy's 502) is summed up by the status reason, not dumped."""
    page = b"<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    fake.queue(Reply(status=502, raw_body=page, content_type="text/html"))
    with pytest.raises(GenerationError, match=r"failed \(502\): Bad Gateway$"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_connection_refused(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], prompt: Prompt
) -> None:
    """Nothing listening on the port is a GenerationError saying the server cannot be reached."""
    remote = await make_backend(variant_for(base_url=f"http://127.0.0.1:{free_port()}/v1"))
    with pytest.raises(GenerationError, match="cannot be reached"):
        await collect(remote.generate(prompt, SamplingParams()))


async def test_malformed_event(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """An event whose data is not JSON fails the generation as a malformed stream."""
    fake.queue(Reply([token("Hello"), b"data: {not json\n\n", DONE]))
    with pytest.raises(GenerationError, match="malformed stream"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_error_event_mid_stream(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """vLLM's in-stream error event fails the generation with its message."""
    fake.queue(Reply([token("Hello"), event({"error": {"message": "engine died", "code": 500}}), DONE]))
    with pytest.raises(GenerationError, match="engine died"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_abort_finish_reason(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A reply the server finished as ``abort`` is a failure, not a short answer."""
    fake.queue(Reply([token("Hel"), token("", "abort"), DONE]))
    with pytest.raises(GenerationError, match="aborted"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_stream_ending_without_finish_reason(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A stream that ends before any finish reason is an incomplete reply."""
    fake.queue(Reply([token("Hello"), token(" there")]))
    with pytest.raises(GenerationError, match="ended the reply early"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_answer_that_is_not_a_stream(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A 200 that is plain JSON instead of an event stream is refused with the content type."""
    fake.queue(Reply(content_type="application/json", json_body={"choices": [{"text": "Hi"}]}))
    with pytest.raises(GenerationError, match=r"did not stream its answer \(it sent application/json\)"):
        await collect(backend.generate(prompt, SamplingParams()))


async def test_silent_server_times_out(make_backend: MakeBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A server that stops sending for longer than the read timeout fails the generation."""
    remote = await make_backend(timeout=SHORT_READ)
    fake.queue(Reply([token("Hello")], then="stall"))
    with pytest.raises(GenerationError, match="took too long"):
        await collect(remote.generate(prompt, SamplingParams()))


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=500, json_body=VLLM_500),
        Reply([token("Hello"), b"data: {not json\n\n"]),
        Reply([token("Hello")]),
        Reply([token("Hello")], then="stall"),
        Reply([token("Hello"), event({"error": "boom"})]),
    ],
    ids=["http-500", "malformed", "early-end", "timeout", "error-event"],
)
async def test_serves_again_after_a_failure(
    make_backend: MakeBackend, fake: FakeVLLM, prompt: Prompt, failure: Reply
) -> None:
    """After a failed request the same backend streams the next reply in full."""
    remote = await make_backend(timeout=SHORT_READ)
    fake.queue(failure, Reply(stream(["All", " good"])))
    with pytest.raises(GenerationError):
        await collect(remote.generate(prompt, SamplingParams()))
    assert text_of(await collect(remote.generate(prompt, SamplingParams()))) == "All good"


async def test_serves_again_once_the_server_is_up(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], prompt: Prompt
) -> None:
    """A backend whose server refused connections works as soon as the server listens."""
    port = free_port()
    remote = await make_backend(variant_for(base_url=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(GenerationError, match="cannot be reached"):
        await collect(remote.generate(prompt, SamplingParams()))
    late = FakeVLLM()
    await late.start(port)
    try:
        assert text_of(await collect(remote.generate(prompt, SamplingParams()))) == "Hello!"
    finally:
        await late.close()
