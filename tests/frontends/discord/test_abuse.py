"""A hostile member against the fake Discord: model work past the limit (issue #18, item 4).

Each test is one way to escape the per-person limit, and checks it goes nowhere: every model call counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import AccessConfig, Config, InferenceConfig, ModelConfig
from bot.inference.tokenizer import HFTokenizer
from tests.doubles import ScriptedBackend, scripted_variants
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import (
    bot_messages,
    chat,
    eventually,
    long_reply_streaming,
)
from tests.frontends.discord.conftest import Running, run_bot
from tests.frontends.discord.test_access import TOO_FAST, refusal, serving

pytestmark = pytest.mark.timeout(60)

RIDDLE = "What has a neck but no head?\nAnswer: A bottle."
NAMES = ("qlora", "full", "gptq", "gguf")


@pytest.fixture
def variants(embedded_tokenizer: tuple[HFTokenizer, int]) -> dict[str, ScriptedBackend]:
    """Four scripted variants, each answering with its own name."""
    return {
        name: ScriptedBackend(embedded_tokenizer[0], lambda prompt, name=name: f"I am {name}.", name=name, delay=0.01)
        for name in NAMES
    }


@contextlib.asynccontextmanager
async def comparing(
    fake: FakeDiscord, backends: dict[str, ScriptedBackend], tmp_path: Path, *, per_user: int, **access: Any
) -> AsyncIterator[Running]:
    """The bot serving ``backends`` as variants, with ``max_queued_per_user`` and these ``[access]`` settings."""
    config = Config(
        models=[ModelConfig(name=name) for name in backends],
        inference=InferenceConfig(max_queued_per_user=per_user),
        access=AccessConfig(**access),
    )
    async with run_bot(fake, scripted_variants(config, backends), tmp_path / "bot.sqlite3") as running:
        yield running


async def private_answer(handle: Any, marker: str = "⚠️") -> dict[str, Any]:
    """A deferred command's private answer once it carries ``marker``."""
    answer: dict[str, Any] = await handle.wait_original(lambda m: marker in m["content"], timeout=20)
    assert answer["flags"] & 64
    return answer


async def private_text(handle: Any, marker: str = "⚠️") -> str:
    """The text of a deferred command's private answer once it carries ``marker``."""
    return str((await private_answer(handle, marker))["content"])


def returned(answer: dict[str, Any]) -> bool:
    """Whether the person's prompt came back with the answer, as a file."""
    return [a["filename"] for a in answer["attachments"]] == ["your-message.txt"]


def judging(prompt: Any) -> str:
    """The model writes RIDDLE when asked for one, and says no to every guess."""
    return "No." if "Proposed answer:" in prompt.text else RIDDLE


async def riddle_posted(fake: FakeDiscord) -> tuple[dict[str, Any], str]:
    """Alice asks for a riddle; its message and its Guess button's custom id, once posted."""
    handle = await fake.invoke_slash("riddle", {}, user=fake.alice)
    message = await handle.wait_original(lambda m: bool(m["components"]), timeout=20)
    return message, message["components"][0]["components"][0]["custom_id"]


# -- every model call counts -----------------------------------------------------------------------


async def test_a_compare_of_four_variants_counts_four_requests(
    fake: FakeDiscord, variants: dict[str, ScriptedBackend], tmp_path: Path
) -> None:
    """With four requests a minute, /compare of four variants uses them all: the next /chat is told to wait."""
    async with comparing(fake, variants, tmp_path, per_user=4, requests_per_minute=4):
        await fake.invoke_slash("compare run", {"prompt": "Who are you?"}, user=fake.alice)
        await eventually(lambda: all(len(backend.prompts) == 1 for backend in variants.values()), timeout=20)
        assert TOO_FAST.fullmatch(await refusal(await chat(fake, "And now?")))


async def test_a_compare_of_more_variants_than_the_per_person_cap_is_refused_clearly(
    fake: FakeDiscord, variants: dict[str, ScriptedBackend], tmp_path: Path
) -> None:
    """max_queued_per_user = 3 holds across variants: four at once are refused, naming the cap; no model runs."""
    async with comparing(fake, variants, tmp_path, per_user=3):
        handle = await fake.invoke_slash("compare run", {"prompt": "Who are you?"}, user=fake.alice)
        answer = await private_answer(handle)
        assert "one person may have 3 requests" in answer["content"] and "at most 3" in answer["content"]
        assert returned(answer)
        assert all(backend.prompts == [] for backend in variants.values())
        assert bot_messages(fake, fake.channel.id) == []


async def test_the_per_person_cap_counts_requests_on_every_variant(
    fake: FakeDiscord, variants: dict[str, ScriptedBackend], tmp_path: Path
) -> None:
    """A reply streaming on one variant holds one of two places: a /compare of two is then busy, and runs nothing."""
    two = {name: variants[name] for name in ("qlora", "full")}
    async with comparing(fake, two, tmp_path, per_user=2):
        await long_reply_streaming(fake, two["qlora"])
        handle = await fake.invoke_slash("compare run", {"prompt": "Who are you?"}, user=fake.alice)
        answer = await private_answer(handle)
        assert "You already have 2 requests waiting or running" in answer["content"] and returned(answer)
        assert len(two["qlora"].prompts) == 1 and two["full"].prompts == []


async def test_a_riddle_asked_again_past_the_limit_says_when_to_try_again(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """/riddle's second ask (after an unreadable reply) is a model call too: past the limit it is told to wait."""
    replies = iter(["I have no answer line.", RIDDLE])
    backend.script = lambda prompt: next(replies)
    async with serving(fake, backend, tmp_path, requests_per_minute=1):
        handle = await fake.invoke_slash("riddle", {}, user=fake.alice)
        (told,) = await handle.wait_followups(1, timeout=20)
        assert TOO_FAST.fullmatch(told["content"]) and told["flags"] & 64
        assert len(backend.prompts) == 1


async def test_guesses_the_model_judges_count_against_the_limit(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """Two guess forms opened under the limit: the first guess is judged, the second is told to wait, unjudged."""
    backend.script = judging
    async with serving(fake, backend, tmp_path, requests_per_minute=2):
        riddle, button = await riddle_posted(fake)
        presses = [await fake.click_button(riddle["id"], button, user=fake.alice) for _ in range(2)]
        first = await fake.submit_modal(presses[0], {"guess": "a jar"})
        assert await private_text(first, "Not quite") == "❌ Not quite. Try again!"
        second = await fake.submit_modal(presses[1], {"guess": "a vase"})
        assert TOO_FAST.fullmatch(await private_text(second))
        assert len(backend.prompts) == 2


async def test_guess_past_the_limit_is_refused_before_the_form_opens(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """At the limit, Guess answers privately with the wait instead of a form to type into."""
    backend.script = judging
    async with serving(fake, backend, tmp_path, requests_per_minute=1):
        riddle, button = await riddle_posted(fake)
        assert TOO_FAST.fullmatch(await refusal(await fake.click_button(riddle["id"], button, user=fake.alice)))
