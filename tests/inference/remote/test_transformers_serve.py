"""End to end against a real OpenAI-compatible server: ``transformers serve`` with the embedded model.

It needs the ``serving`` extra of transformers (FastAPI, uvicorn); it runs on the CPU with no
network. Quirks it shows: the prompt must be a string (so ``send_token_ids=False``), and stop
strings come back inside the text (the backend cuts them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.config import ModelConfig
from bot.errors import GenerationError
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import FinishReason, Prompt, SamplingParams
from tests.inference.remote._util import collect, free_port, text_of
from tests.inference.remote.conftest import MakeBackend

_SERVING = "transformers serve needs the serving extra: pip install 'transformers[serving]'"
pytest.importorskip("fastapi", reason=_SERVING)
pytest.importorskip("uvicorn", reason=_SERVING)

STARTUP_SECONDS = 120
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
"""Offline; one thread, since OpenMP threads fighting the test process for a few cores slow it down 10 to 100 times."""
GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def served(embedded_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``transformers serve <embedded folder>`` on a free loopback port; its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(embedded_folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=os.environ | SERVER_ENV)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(port):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def served_variant(served: str, embedded_folder: Path) -> Callable[..., ModelConfig]:
    def make(**fields: object) -> ModelConfig:
        values = {
            "name": "served",
            "backend": "openai",
            "base_url": served,
            "model": str(embedded_folder),
            "tokenizer": str(embedded_folder),
        }
        return ModelConfig.model_validate(values | fields)

    return make


@pytest.fixture
def question(tokenizer: HFTokenizer) -> Callable[..., Prompt]:
    def make(stop: tuple[str, ...] = ()) -> Prompt:
        text = "The capital of France is"
        return Prompt(text, tuple(tokenizer.encode_plain(text)), stop)

    return make


async def test_streams_a_reply(
    make_backend: MakeBackend, served_variant: Callable[..., ModelConfig], question: Callable[..., Prompt]
) -> None:
    """A greedy reply streams from the real server, ends at ``max_tokens`` and counts its tokens."""
    remote = await make_backend(served_variant(), send_token_ids=False, tokenizer=None)
    chunks = await collect(remote.generate(question(), GREEDY))
    assert "Paris" in text_of(chunks)
    assert (chunks[-1].finish_reason, chunks[-1].completion_tokens) == (FinishReason.LENGTH, 8)


async def test_stop_string_cut_from_the_text(
    make_backend: MakeBackend, served_variant: Callable[..., ModelConfig], question: Callable[..., Prompt]
) -> None:
    """The server stops at a stop string but leaves it in the text; the backend cuts it."""
    remote = await make_backend(served_variant(), send_token_ids=False)
    chunks = await collect(remote.generate(question(stop=("answer",)), GREEDY))
    assert "answer" not in text_of(chunks)
    assert chunks[-1].finish_reason is FinishReason.STOP


async def test_token_ids_refused_with_the_server_message(
    make_backend: MakeBackend, served_variant: Callable[..., ModelConfig], question: Callable[..., Prompt]
) -> None:
    """``transformers serve`` only takes text prompts; its 400 reaches the caller as a GenerationError."""
    remote = await make_backend(served_variant())
    with pytest.raises(GenerationError, match="prompt must be a string"):
        await collect(remote.generate(question(), GREEDY))


async def test_serves_again_after_a_closed_stream(
    make_backend: MakeBackend, served_variant: Callable[..., ModelConfig], question: Callable[..., Prompt]
) -> None:
    """Dropping a stream after its first chunk leaves the server and the backend ready for the next one."""
    remote = await make_backend(served_variant(), send_token_ids=False)
    chunks = remote.generate(question(), SamplingParams(max_new_tokens=16, temperature=0.0))
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    again = await collect(remote.generate(question(), GREEDY))
    assert again[-1].finish_reason is FinishReason.LENGTH
