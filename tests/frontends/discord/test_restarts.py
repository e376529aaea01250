"""The real ``python -m bot run`` killed with SIGKILL mid-reply and restarted on the same database.

A subprocess test on the embedded model (a scripted backend cannot run in another process); each start imports torch
and loads the model, so it is kept to one test that proves the whole promise: every user message is still in SQLite,
the interrupted reply's row is marked (``cancelled``, as it was reserved, never ``ok``), and the thread answers the
next message. The restarted command is also the suite's one proof that ``python -m bot run`` answers, stores the
answer as shown, and exits 0 on SIGTERM with no traceback.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bot.frontends.discord.ui.rendering import queued_text
from bot.store import MessageStatus, Role, Store
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread
from tests.frontends.discord.test_run import fake_config, start_command

pytestmark = pytest.mark.timeout(240)


async def test_sigkill_mid_reply_then_restart_keeps_messages_marks_the_reply_and_answers(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    """SIGKILL mid-reply; after a restart every user message is stored, the reply marked, the thread answers."""
    db = tmp_path / "bot.sqlite3"
    storage = f'[storage]\npath = "{db}"\n'
    long = fake_config(fake, tmp_path / "long.toml", f"[generation]\ntemperature = 0\nmax_new_tokens = 1024\n{storage}")
    first = await start_command(long, fake.token, tmp_path / "first.txt")
    try:
        await fake.wait_for(lambda: fake.commands(fake.guild.id) or None, timeout=120)
        await fake.wait_until_ready(timeout=30)
        await chat(fake, "Write a very long story about a dragon who learns to bake bread, in many chapters.")
        thread = await first_thread(fake)
        placeholder = await fake.wait_for(lambda: (bot_messages(fake, thread.id) or [None])[0], timeout=60)
        # Mid-reply: the model's text is on screen, and the reply has no buttons of a finished reply yet.
        await fake.wait_for(lambda: fake.message(placeholder["id"])["content"] not in ("", queued_text(0)), timeout=90)
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    shown = fake.message(placeholder["id"])
    buttons = {c["label"]: c.get("disabled", False) for row in shown.get("components", []) for c in row["components"]}
    assert buttons == {"Stop": False, "Regenerate": True, "Continue": True}  # it was streaming when killed

    # The restart keeps replies short, so the answer after the restart comes quickly.
    short = fake_config(fake, tmp_path / "short.toml", f"[generation]\ntemperature = 0\nmax_new_tokens = 8\n{storage}")
    second = await start_command(short, fake.token, tmp_path / "second.txt")
    try:
        await fake.wait_for(lambda: (len(fake.sessions) >= 2 and fake.sessions[-1].ready) or None, timeout=120)
        await fake.send_message(thread.id, fake.alice, "Say hello.")
        messages = await final_reply(fake, thread.id, count=2, timeout=120)
    finally:
        if second.returncode is None:
            second.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), 30)
    log = (tmp_path / "second.txt").read_text()
    assert code == 0, log
    assert "Traceback" not in log
    async with await Store.open(db) as store:
        conversation = await store.get_conversation(f"thread:{thread.id}")
        assert conversation is not None
        rows = []
        before = None
        while (message := await store.last_message(conversation.id, before=before)) is not None:
            rows.append(message)
            before = message.id
    story, interrupted, hello, answer = reversed(rows)
    assert (story.role, story.status, story.author_name) == (Role.USER, MessageStatus.OK, "Alice")
    assert story.content.startswith("Write a very long story")
    assert (interrupted.role, interrupted.status, interrupted.content) == (Role.ASSISTANT, MessageStatus.CANCELLED, "")
    assert (hello.role, hello.content, hello.status) == (Role.USER, "Say hello.", MessageStatus.OK)
    assert (answer.role, answer.status) == (Role.ASSISTANT, MessageStatus.OK) and answer.content
    assert messages[-1]["content"] == answer.content
