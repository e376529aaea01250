"""What the Discord tests do again and again: ask, find the thread, wait for a finished reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import discord

from tests.doubles import ScriptedBackend
from tests.fakediscord import FakeDiscord

DISCORD_HANDLERS = ("discord.py: ", "CommandTree-invoker", "discord-ui-view-dispatch-", "discord-ui-dynamic-item-")
"""How discord.py names the tasks that run event listeners, slash commands and buttons."""


async def chat(fake: FakeDiscord, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("user", fake.alice)
    kwargs.setdefault("channel_id", fake.channel.id)
    kwargs.setdefault("guild_id", fake.guild.id)
    return await fake.invoke_slash("chat", {"prompt": prompt}, **kwargs)


async def first_thread(fake: FakeDiscord) -> Any:
    """The one thread the bot opened, once it exists."""
    return await fake.wait_for(lambda: fake.threads[0] if fake.threads else None)


def bot_messages(fake: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    return [
        m
        for m in fake.messages_in(channel_id)
        if int(m["author"]["id"]) == fake.bot_user.id and not m.get("flags", 0) & 64  # not ephemeral
    ]


async def final_reply(
    fake: FakeDiscord,
    channel_id: int,
    count: int = 1,
    timeout: float = 20,  # noqa: ASYNC109
) -> list[dict[str, Any]]:
    """Wait until the bot's ``count``-th reply message in the channel has its buttons for a finished reply."""

    def done() -> list[dict[str, Any]] | None:
        messages = bot_messages(fake, channel_id)
        if len(messages) < count:
            return None
        last = messages[-1]
        buttons = [c for row in last.get("components", []) for c in row.get("components", [])]
        finished = any(b.get("label") == "Regenerate" and not b.get("disabled") for b in buttons)
        return messages if finished else None

    return await fake.wait_for(done, timeout=timeout)


async def long_reply_streaming(fake: FakeDiscord, backend: ScriptedBackend) -> tuple[Any, dict[str, Any]]:
    """Alice asks for a long reply; returns its thread and first message once text is streaming."""
    backend.script = lambda prompt: " ".join(f"w{i}" for i in range(400))
    backend.delay = 0.05
    await chat(fake, "Talk for a long time.")
    thread = await first_thread(fake)
    placeholder = await fake.wait_for(lambda: (bot_messages(fake, thread.id) or [None])[0])
    await fake.wait_for(lambda: fake.message(placeholder["id"])["content"].startswith("w0") or None)
    return thread, placeholder


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:  # noqa: ASYNC109
    """Wait until ``condition()`` about the bot's side holds (the fake's ``wait_for`` only wakes on its changes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


async def settled(fake: FakeDiscord, bot: discord.Client, timeout: float = 10) -> None:  # noqa: ASYNC109
    """Wait until the bot has done all it will do for now: it read every gateway event the fake sent, and none of
    its listeners, commands, buttons or background tasks (replies, catch-up, refusals) is running.

    A test that checks that something does *not* happen (a doubled reply, a refused message answered) waits for this
    rather than giving the bot some time on the clock.
    """
    replies = getattr(bot, "replies", None)

    def idle() -> bool:
        session = fake.sessions[-1]
        if session.invalid or bot._get_websocket(shard_id=0).sequence != session.seq:
            return False  # events still on their way (or a new session still starting)
        running = [t for t in asyncio.all_tasks() if not t.done() and t.get_name().startswith(DISCORD_HANDLERS)]
        return not running and not (replies is not None and replies._tasks)

    await eventually(idle, timeout)
