"""A reply is shown whole before the next reply of its conversation appears."""

from __future__ import annotations

import pytest

from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.conftest import Running

pytestmark = pytest.mark.timeout(60)

LONG = " ".join(f"w{i:03d}{'x' * 15}" for i in range(500))
"""About 10000 characters in 500 words (under the default 512 new tokens): five or six messages."""


async def test_every_part_of_a_long_reply_is_posted_before_the_next_reply(
    fake: FakeDiscord, running: Running, backend: ScriptedBackend
) -> None:
    """A message sent while a long reply streams: its reply's first message comes after the long reply's last."""
    backend.script = lambda prompt: "Short answer." if "Second" in prompt.text else LONG
    backend.delay = 0.001
    await chat(fake, "First, a long one.")
    thread = await first_thread(fake)
    await fake.wait_for(lambda: bot_messages(fake, thread.id) or None, timeout=20)
    await fake.send_message(thread.id, fake.alice, "Second.")
    await fake.wait_for(lambda: any(m["content"] == "Short answer." for m in bot_messages(fake, thread.id)), 40)
    messages = await final_reply(fake, thread.id, timeout=20)
    assert len(messages) >= 6
    assert [m["content"] for m in messages][-1] == "Short answer."  # the later reply's message is the last posted
    assert " ".join(" ".join(m["content"] for m in messages[:-1]).split()) == LONG
