"""What the backend sends: the body vLLM gets and the Authorization header."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from bot.config import ModelConfig
from bot.errors import GenerationError
from bot.inference.remote import OpenAIBackend
from bot.inference.types import Prompt, SamplingParams
from tests.inference.remote._fake_vllm import MODEL, FakeVLLM
from tests.inference.remote._util import collect
from tests.inference.remote.conftest import MakeBackend


async def test_sends_token_ids_and_stop_strings(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """The body carries the sanitized token ids, the prompt's stop strings and the sampling settings."""
    await collect(backend.generate(prompt, SamplingParams(max_new_tokens=64, temperature=0.7, top_p=0.9)))
    assert fake.requests[0].body == {
        "model": MODEL,
        "prompt": list(prompt.token_ids),
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["USER:"],
    }


async def test_sends_text_when_token_ids_are_off(make_backend: MakeBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """With ``send_token_ids=False`` the prompt goes as its text."""
    remote = await make_backend(send_token_ids=False)
    await collect(remote.generate(prompt, SamplingParams()))
    assert fake.requests[0].body["prompt"] == prompt.text


async def test_no_stop_field_without_stop_strings(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """A prompt with no stop strings sends no ``stop``."""
    await collect(backend.generate(dataclasses.replace(prompt, stop=()), SamplingParams()))
    assert "stop" not in fake.requests[0].body


async def test_max_tokens_capped_by_the_window(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], fake: FakeVLLM, prompt: Prompt
) -> None:
    """``max_tokens`` never asks for more than the context window leaves (vLLM would refuse)."""
    remote = await make_backend(variant_for(context_length=len(prompt) + 10))
    await collect(remote.generate(prompt, SamplingParams(max_new_tokens=512)))
    assert fake.requests[0].body["max_tokens"] == 10


async def test_defaults_send_no_seed_or_penalty(backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt) -> None:
    """No seed and a repetition penalty of 1.0 leave ``seed`` and every penalty field out."""
    await collect(backend.generate(prompt, SamplingParams()))
    assert not {"seed", "repetition_penalty", "frequency_penalty"} & fake.requests[0].body.keys()


async def test_seed_and_repetition_penalty_sent_when_set(
    backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt
) -> None:
    """A seed and a repetition penalty other than 1.0 are sent under vLLM's names."""
    await collect(backend.generate(prompt, SamplingParams(seed=1234, repetition_penalty=1.15)))
    body = fake.requests[0].body
    assert (body["seed"], body["repetition_penalty"]) == (1234, 1.15)


async def test_prompt_filling_the_window_is_not_sent(
    make_backend: MakeBackend, variant_for: Callable[..., ModelConfig], fake: FakeVLLM, prompt: Prompt
) -> None:
    """A prompt as long as the window fails here, as it does in the local worker, and sends nothing."""
    remote = await make_backend(variant_for(context_length=len(prompt)))
    with pytest.raises(GenerationError, match="fills the whole context window"):
        await collect(remote.generate(prompt, SamplingParams()))
    assert fake.requests == []


async def test_api_key_sent_as_bearer(
    make_backend: MakeBackend,
    variant_for: Callable[..., ModelConfig],
    fake: FakeVLLM,
    prompt: Prompt,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key in the variable ``api_key_env`` names goes out as ``Authorization: Bearer``."""
    monkeypatch.setenv("REMOTE_TEST_KEY", "sk-local-123")
    remote = await make_backend(variant_for(api_key_env="REMOTE_TEST_KEY"))
    await collect(remote.generate(prompt, SamplingParams()))
    assert fake.requests[0].headers["Authorization"] == "Bearer sk-local-123"


async def test_no_authorization_without_api_key_env(
    backend: OpenAIBackend, fake: FakeVLLM, prompt: Prompt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``api_key_env`` no Authorization header is sent, whatever ``OPENAI_API_KEY`` holds."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ambient")
    await collect(backend.generate(prompt, SamplingParams()))
    assert "Authorization" not in fake.requests[0].headers
