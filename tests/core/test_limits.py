"""Per-person limits in the core: one cap across variants, every model call metered, shared conversations kept."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config, InferenceConfig, ModelConfig
from bot.core.chat import Author, ChatOptions, ChatService
from bot.core.messages import ChatMessage
from bot.core.quiz import write_question
from bot.core.skills import Riddle, judge_guess, make_riddle
from bot.errors import BusyError
from bot.inference.tokenizer import HFTokenizer
from bot.store import Store
from tests.doubles import RecordingMeter, ScriptedBackend, scripted_variants

ALICE = Author(1, "Alice")
BOB = Author(2, "Bob")
BOTTLE = Riddle("What has a neck but no head?", "A bottle")
VOLCANO = "Which gas do volcanoes release most?\nA) Oxygen\nB) Water vapour\nC) Helium\nD) Neon\nAnswer: B"


@pytest.fixture
def backends(embedded_tokenizer: tuple[HFTokenizer, int]) -> dict[str, ScriptedBackend]:
    return {name: ScriptedBackend(embedded_tokenizer[0], name=name, delay=0.0) for name in ("qlora", "full")}


@pytest.fixture
async def chat(tmp_path: Path, backends: dict[str, ScriptedBackend]) -> AsyncIterator[ChatService]:
    """Two variants, two requests per person at once, and a meter that records every model call."""
    config = Config(
        models=[ModelConfig(name="qlora"), ModelConfig(name="full")], inference=InferenceConfig(max_queued_per_user=2)
    )
    engine = scripted_variants(config, backends)
    engine.admission.meter = RecordingMeter()
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        yield ChatService(store, engine, config.generation)


def counted(chat: ChatService, author: Author = ALICE) -> int:
    meter = chat.engine.admission.meter
    assert isinstance(meter, RecordingMeter)
    return meter.counted.get(str(author.id), 0)


async def test_the_per_person_cap_is_one_across_variants(chat: ChatService) -> None:
    """One request waiting on each of two variants fills a cap of two: a third, on either, is busy."""
    hello = [ChatMessage("user", "Hello")]
    async with contextlib.AsyncExitStack() as held:
        for name in ("qlora", "full"):
            await held.enter_async_context(chat.generate(ALICE, hello, ChatOptions(variant=name)))
        with pytest.raises(BusyError, match="already have 2"):
            await held.enter_async_context(chat.generate(ALICE, hello, ChatOptions(variant="qlora")))
        await held.enter_async_context(chat.generate(BOB, hello, ChatOptions(variant="qlora")))


async def test_a_riddle_asked_again_counts_two_model_calls(
    chat: ChatService, backends: dict[str, ScriptedBackend]
) -> None:
    """/riddle's re-ask after an unreadable reply is a second model call, and is counted as one."""
    answers = iter(["I like riddles.", "What has a neck but no head?\nAnswer: A bottle"])
    backends["qlora"].script = lambda prompt: next(answers)
    await make_riddle(chat, ALICE, None, ChatOptions())
    assert counted(chat) == 2


async def test_a_quiz_question_asked_again_counts_two_model_calls(
    chat: ChatService, backends: dict[str, ScriptedBackend]
) -> None:
    """/quiz start's re-ask after an unusable reply is counted too."""
    answers = iter(["I don't know any questions.", VOLCANO])
    backends["qlora"].script = lambda prompt: next(answers)
    await write_question(chat, ALICE, "volcanoes")
    assert counted(chat) == 2


async def test_a_guess_the_model_judges_counts_one_call(
    chat: ChatService, backends: dict[str, ScriptedBackend]
) -> None:
    """A guess judged by the model counts once; a guess that matches the answer as written asks no model."""
    backends["qlora"].script = lambda prompt: "No."
    assert not await judge_guess(chat, ALICE, BOTTLE, "a jar", ChatOptions())
    assert await judge_guess(chat, ALICE, BOTTLE, "the bottle", ChatOptions())
    assert counted(chat) == 1


async def test_a_refused_model_call_is_not_counted(chat: ChatService, backends: dict[str, ScriptedBackend]) -> None:
    """Past the meter's limit the call is busy and reaches no model."""
    meter = chat.engine.admission.meter
    assert isinstance(meter, RecordingMeter)
    meter.limit = 0
    with pytest.raises(BusyError, match="too fast"):
        await judge_guess(chat, ALICE, BOTTLE, "a jar", ChatOptions())
    assert backends["qlora"].prompts == []


async def conversation_of_two(chat: ChatService) -> None:
    """Alice starts ``thread:1``; Bob writes in it too."""
    for author, text in ((ALICE, "Hi, I'm Alice."), (BOB, "And I'm Bob.")):
        async with chat.respond("thread:1", author, text) as reply:
            assert reply is not None
            async for _ in reply.deltas():
                pass


async def test_someone_else_cannot_reset_a_history_others_wrote_in(chat: ChatService) -> None:
    """Bob's reset of Alice's conversation that he wrote in too forgets nothing (None: refused)."""
    await conversation_of_two(chat)
    assert await chat.reset("thread:1", by=BOB.id) is None
    assert len(await chat.history_of("thread:1")) == 4


async def test_the_person_who_started_a_conversation_may_reset_it(chat: ChatService) -> None:
    """Alice started the conversation: her reset forgets everyone's messages."""
    await conversation_of_two(chat)
    assert await chat.reset("thread:1", by=ALICE.id) == 4
    assert await chat.history_of("thread:1") == []


async def test_an_edit_into_invisible_text_is_not_taken(chat: ChatService) -> None:
    """A message edited into zero-width characters keeps its stored text (the model never reads a blank turn)."""
    async with chat.respond("thread:1", ALICE, "A real question.", external_id=500) as reply:
        assert reply is not None
        async for _ in reply.deltas():
            pass
    assert not await chat.edit(500, "\u200b\u200d \u2060")
    assert (await chat.history_of("thread:1"))[0].content == "A real question."
