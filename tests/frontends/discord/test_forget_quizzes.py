"""/forget-me in Discord: a quiz the person started is shown before confirming, and reported as deleted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)

QUIZ_LINE = "- **1** quiz you started, with everyone's answers"


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {c["label"]: c["custom_id"] for row in message.get("components", []) for c in row.get("components", [])}


async def test_forget_me_shows_the_quiz_they_started_and_deletes_it(fake: FakeDiscord, running: Running) -> None:
    """The summary names Alice's quiz; after confirming, the answer lists the same line and the quiz is gone."""
    quiz = await running.store.quizzes.create(
        guild_id=fake.guild.id,
        channel_id=fake.channel.id,
        author_id=fake.alice.id,
        topic="cats",
        question="q?",
        options="abcd",
        answer="A",
        seconds=60,
    )
    await running.store.quizzes.answer(quiz.id, fake.bob.id, "B")
    handle = await fake.invoke_slash("forget-me", user=fake.alice)
    answer = await handle.wait_original(lambda m: bool(m["content"]), timeout=20)
    assert QUIZ_LINE in answer["content"].splitlines()
    await fake.click_button(answer["id"], buttons(answer)["Delete my data"], user=fake.alice)
    await fake.wait_for(lambda: fake.message(answer["id"])["content"].startswith("Done") or None, timeout=20)
    done = fake.message(answer["id"])
    assert QUIZ_LINE in done["content"].splitlines()
    assert await running.store.quizzes.answers(quiz.id) == []
