"""/quiz against the fake Discord: the question and its buttons, answers, the reveal, scores, a restart."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.core import quiz as quiz_core
from bot.core.quiz import parse_question, shuffled
from bot.frontends.discord.features import quiz as quiz_cog
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, FakeUser, Permission
from tests.frontends.discord._helpers import bot_messages
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)

VOLCANO = (
    "Which gas do volcanoes release most?\nA) Oxygen\nB) Water vapour\nC) Helium\nD) Neon\nAnswer: B, Water vapour"
)
SHORT = 2
"""Seconds a quiz runs in the tests that wait for its reveal (the real minimum is 10)."""


@pytest.fixture(autouse=True)
def quiz_model(backend: ScriptedBackend) -> None:
    """The model writes the volcano question."""
    backend.script = lambda prompt: VOLCANO
    backend.delay = 0.0


@pytest.fixture(autouse=True)
def options_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The options stay in the model's order, so the tests know the right letter (B); one test shuffles them."""
    monkeypatch.setattr(quiz_core, "shuffled", lambda question, rng: question)


@pytest.fixture
def short_quizzes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quizzes may run for a second or two, so the tests that wait for the reveal stay short."""
    monkeypatch.setattr(quiz_cog, "MIN_SECONDS", 1)


async def start_quiz(fake: FakeDiscord, **options: Any) -> Any:
    return await fake.invoke_slash("quiz start", options, user=fake.alice)


async def posted_quiz(fake: FakeDiscord, handle: Any) -> dict[str, Any]:
    """The quiz message the bot posted in the channel, once the command is done (its "thinking…" is gone)."""
    await fake.wait_for(lambda: handle.acknowledged and handle.original is None, timeout=10)
    (message,) = bot_messages(fake, fake.channel.id)
    return message


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components", []) for c in row.get("components", [])]


def quiz_id(message: dict[str, Any]) -> int:
    return int(buttons(message)[0]["custom_id"].split(":")[2])


async def press(fake: FakeDiscord, message: dict[str, Any], letter: str, user: FakeUser) -> str:
    """Press ``letter`` as ``user``; returns the private answer's text."""
    handle = await fake.click_button(message["id"], f"airoboros:quiz:{quiz_id(message)}:{letter}", user=user)
    original = await handle.wait_original(lambda o: not o.get("flags", 0) & 128, timeout=10)  # not "thinking…"
    assert original["flags"] & 64  # ephemeral
    return str(original["content"])


async def revealed(fake: FakeDiscord, message_id: int | str, timeout: float = 15) -> dict[str, Any]:  # noqa: ASYNC109
    return await fake.wait_for(
        lambda: fake.message(message_id) if "✅" in fake.message(message_id)["content"] else None, timeout
    )


async def revealed_in_store(store: Store, quiz: int) -> None:
    """Wait until the quiz is marked revealed (just after its message is edited)."""
    deadline = time.monotonic() + 10
    while (stored := await store.quizzes.get(quiz)) is None or stored.revealed_at is None:
        assert time.monotonic() < deadline, "the quiz was not marked revealed"
        await asyncio.sleep(0.02)


async def test_start_posts_the_question_with_four_buttons(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """/quiz start is acknowledged privately, asks the model about the topic and posts the question with A-D."""
    handle = await start_quiz(fake, topic="volcanoes")
    callback = await handle.wait_callback()
    assert (callback["type"], callback["data"]["flags"] & 64) == (5, 64)
    message = await posted_quiz(fake, handle)
    assert "about volcanoes" in backend.prompts[-1].text
    assert "Which gas do volcanoes release most?" in message["content"]
    assert "**B)** Water vapour" in message["content"]
    assert [(b["label"], b["custom_id"]) for b in buttons(message)] == [
        (letter, f"airoboros:quiz:{quiz_id(message)}:{letter}") for letter in "ABCD"
    ]
    assert not any(b.get("disabled") for b in buttons(message))
    quiz = await running.store.quizzes.get(quiz_id(message))
    assert quiz is not None
    assert (quiz.answer, quiz.message_id, quiz.ends_at - quiz.created_at) == ("B", int(message["id"]), 30)


async def test_the_options_are_posted_and_revealed_in_their_shuffled_order(
    fake: FakeDiscord, running: Running, short_quizzes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shuffled, the posted options, the stored answer letter and the reveal all follow the new order."""
    monkeypatch.setattr(quiz_core, "shuffled", lambda question, rng: shuffled(question, random.Random(4)))
    order = shuffled(parse_question(VOLCANO), random.Random(4))
    assert order.answer != "B"
    message = await posted_quiz(fake, await start_quiz(fake, seconds=SHORT))
    for letter, option in zip("ABCD", order.options, strict=True):
        assert f"**{letter})** {option}" in message["content"]
    quiz = await running.store.quizzes.get(quiz_id(message))
    assert quiz is not None and quiz.answer == order.answer
    shown = await revealed(fake, message["id"])
    assert f"✅ **{order.answer}) Water vapour**" in shown["content"]
    await revealed_in_store(running.store, quiz_id(message))


async def test_an_answer_is_recorded_and_confirmed_privately(fake: FakeDiscord, running: Running) -> None:
    """A press stores the person's letter and tells only them."""
    handle = await start_quiz(fake)
    message = await posted_quiz(fake, handle)
    assert (await press(fake, message, "C", fake.alice)).startswith("You answered **C**.")
    answers = await running.store.quizzes.answers(quiz_id(message))
    assert [(a.user_id, a.letter) for a in answers] == [(fake.alice.id, "C")]


async def test_a_second_press_changes_nothing(fake: FakeDiscord, running: Running) -> None:
    """Pressing again (any letter) keeps the first answer and says which it was."""
    handle = await start_quiz(fake)
    message = await posted_quiz(fake, handle)
    await press(fake, message, "B", fake.alice)
    assert await press(fake, message, "C", fake.alice) == "⚠️ You already answered B."
    assert await press(fake, message, "B", fake.alice) == "⚠️ You already answered B."
    answers = await running.store.quizzes.answers(quiz_id(message))
    assert [(a.user_id, a.letter) for a in answers] == [(fake.alice.id, "B")]


@pytest.mark.parametrize("seconds", [5, 301])
async def test_a_time_out_of_range_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend, seconds: int
) -> None:
    """seconds outside 10-300 gets a private error; the model is not asked and nothing is posted."""
    handle = await start_quiz(fake, seconds=seconds)
    callback = await handle.wait_callback()
    assert callback["data"]["flags"] & 64
    assert callback["data"]["content"] == f"⚠️ The time must be 10 to 300 seconds; you asked for {seconds}."
    assert backend.prompts == []
    assert bot_messages(fake, fake.channel.id) == []


async def test_a_channel_where_the_bot_cannot_post_is_refused(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Without Send Messages the command names the permission privately and does not ask the model."""
    await fake.set_bot_permissions(fake.channel.id, deny=Permission.SEND_MESSAGES)
    handle = await start_quiz(fake)
    original = await handle.wait_original(lambda o: "Send Messages" in o["content"], timeout=10)
    assert original["flags"] & 64
    assert backend.prompts == []
    assert await running.store.quizzes.pending() == []


async def test_unusable_model_output_is_retried_then_reported(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """Two replies without an answer letter: a clear private error, no quiz posted or stored."""
    backend.script = lambda prompt: (
        "Which gas do volcanoes release most?\nA) Oxygen\nB) Water vapour\nC) Helium\nD) Neon"
    )
    handle = await start_quiz(fake)
    original = await handle.wait_original(lambda o: "usable" in o["content"], timeout=10)
    assert original["content"] == (
        "⚠️ The model did not write a usable quiz question (no answer letter after the options). Please try again."
    )
    assert len(backend.prompts) == 2
    assert bot_messages(fake, fake.channel.id) == []
    assert await running.store.quizzes.pending() == []


async def test_the_answer_and_winners_are_revealed_when_time_is_up(
    fake: FakeDiscord, running: Running, short_quizzes: None
) -> None:
    """After the time the message marks the right option, disables the buttons and names who got it right."""
    handle = await start_quiz(fake, seconds=SHORT)
    message = await posted_quiz(fake, handle)
    await press(fake, message, "B", fake.alice)
    await press(fake, message, "D", fake.bob)
    shown = await revealed(fake, message["id"])
    assert "✅ **B) Water vapour**" in shown["content"]
    assert f"Right (1 of 2 answers): <@{fake.alice.id}>" in shown["content"]
    assert f"<@{fake.bob.id}>" not in shown["content"]
    assert all(b["disabled"] for b in buttons(shown))
    assert [b["style"] for b in buttons(shown)] == [2, 3, 2, 2]  # the right one green
    await revealed_in_store(running.store, quiz_id(message))


async def test_a_press_after_the_reveal_is_refused(fake: FakeDiscord, running: Running) -> None:
    """A press that reaches the bot after the reveal (a client still showing the buttons) is refused with the answer."""
    handle = await start_quiz(fake)
    message = await posted_quiz(fake, handle)
    await running.store.quizzes.mark_revealed(quiz_id(message))
    assert await press(fake, message, "A", fake.alice) == "⚠️ This quiz is over: the answer was B) Water vapour."
    assert await running.store.quizzes.answers(quiz_id(message)) == []


async def test_scores_show_the_guilds_top_players(fake: FakeDiscord, running: Running) -> None:
    """/quiz scores answers with an embed ranking the guild's players by right answers."""
    quizzes = running.store.quizzes
    for answers in ({fake.alice.id: "A", fake.bob.id: "B"}, {fake.alice.id: "A"}):
        quiz = await quizzes.create(
            guild_id=fake.guild.id,
            channel_id=fake.channel.id,
            author_id=fake.alice.id,
            topic=None,
            question="?",
            options=("1", "2", "3", "4"),
            answer="A",
            seconds=60,
        )
        for user, letter in answers.items():
            await quizzes.answer(quiz.id, user, letter)
        await quizzes.mark_revealed(quiz.id)
    handle = await fake.invoke_slash("quiz scores", user=fake.bob)
    original = await handle.wait_original(lambda o: bool(o.get("embeds")), timeout=10)
    assert not original.get("flags", 0) & 64
    (embed,) = original["embeds"]
    assert embed["title"] == f"Quiz scores: {fake.guild.name}"
    assert embed["description"].split("\n") == [
        f"🥇 <@{fake.alice.id}>: **2** right of 2",
        f"🥈 <@{fake.bob.id}>: **0** right of 1",
    ]


async def test_a_quiz_that_ended_while_the_bot_was_down_is_revealed_at_start(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path, short_quizzes: None
) -> None:
    """The bot stops before the time is up; the next start reveals the quiz with the answers given before."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db) as running:
        handle = await start_quiz(fake, seconds=SHORT)
        message = await posted_quiz(fake, handle)
        await press(fake, message, "B", fake.alice)
        quiz = await running.store.quizzes.get(quiz_id(message))
    assert quiz is not None
    await asyncio.sleep(max(0.0, quiz.ends_at - time.time()) + 0.2)
    assert "✅" not in fake.message(message["id"])["content"]  # nobody revealed it while the bot was down
    async with run_bot(fake, engine, db) as running:
        shown = await revealed(fake, message["id"])
        await revealed_in_store(running.store, quiz_id(message))
    assert f"Right (1 of 1 answer): <@{fake.alice.id}>" in shown["content"]


async def test_a_quiz_still_running_after_a_restart_takes_answers_and_is_revealed(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path, short_quizzes: None
) -> None:
    """After a restart the buttons still work and the reveal comes when the time is up."""
    engine = scripted_engine(Config(), backend)
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        handle = await start_quiz(fake, seconds=4)
        message = await posted_quiz(fake, handle)
    async with run_bot(fake, engine, db) as running:
        assert (await press(fake, message, "B", fake.bob)).startswith("You answered **B**.")
        shown = await revealed(fake, message["id"])
        await revealed_in_store(running.store, quiz_id(message))
    assert f"Right (1 of 1 answer): <@{fake.bob.id}>" in shown["content"]
