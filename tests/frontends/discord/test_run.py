"""``python -m bot run``: token errors, and the whole bot on the embedded model against the fake Discord."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.config import Config, DiscordConfig, GenerationConfig, StorageConfig
from bot.frontends.discord.runner import run_bot
from bot.store import MessageStatus, Role, Store
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.test_conversations import chat, final_reply, first_thread

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(180)


async def run_command(config: Path, token: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    if token is not None:
        env["DISCORD_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--config", str(config),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_missing_token_exits_2(tmp_path: Path) -> None:
    """Without DISCORD_TOKEN the bot says what to set and exits with code 2."""
    config = tmp_path / "config.toml"
    config.write_text("")
    code, stderr = await run_command(config, None)
    assert code == 2
    assert stderr.strip() == "error: set the DISCORD_TOKEN environment variable to your bot's token"


async def test_rejected_token_exits_2(fake: FakeDiscord, tmp_path: Path) -> None:
    """A token Discord refuses gets one clear line and exit code 2, before any model loads."""
    config = tmp_path / "config.toml"
    config.write_text(f'[discord]\napi_base = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n')
    code, stderr = await run_command(config, "not-the-token")
    assert code == 2
    assert "Discord rejected the token in DISCORD_TOKEN" in stderr
    assert "Traceback" not in stderr


async def test_embedded_model_answers_in_a_thread(
    fake: FakeDiscord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real bot on the embedded model answers /chat in a thread; Discord shows exactly what was stored."""
    monkeypatch.setenv("DISCORD_TOKEN", fake.token)
    config = Config(
        generation=GenerationConfig(temperature=0, max_new_tokens=16),
        storage=StorageConfig(path=str(tmp_path / "bot.sqlite3")),
        discord=DiscordConfig(api_base=fake.api_base, gateway_url=fake.gateway_url, guild_ids=[fake.guild.id]),
    )
    stop = asyncio.Event()
    bot = asyncio.create_task(run_bot(config, stop=stop, guild_ready_timeout=0.05))
    try:
        await fake.wait_for(lambda: fake.commands(fake.guild.id) or None, timeout=120)
        await fake.wait_until_ready(timeout=30)
        await chat(fake, "Tell me a joke about bananas.")
        thread = await first_thread(fake)
        (reply,) = await final_reply(fake, thread.id, timeout=90)
    finally:
        stop.set()
        assert await asyncio.wait_for(bot, 30) == 0
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        conversation = await store.get_conversation(f"thread:{thread.id}")
        assert conversation is not None
        user, answer = await store.history(conversation.id, limit=10)
    assert (user.role, user.content, user.author_name) == (Role.USER, "Tell me a joke about bananas.", "Alice")
    assert answer.role == Role.ASSISTANT
    assert answer.status == MessageStatus.OK
    assert answer.content
    assert reply["content"] == answer.content
