"""``python -m bot run`` and its runner: the token, the Message Content intent (the embedded model: test_restarts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.app import runner
from bot.frontends.discord.app.client import AiroborosBot
from bot.frontends.discord.app.endpoints import configure_endpoints
from bot.frontends.discord.app.runner import MESSAGE_CONTENT_REFUSED, run_bot
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, Intent
from tests.frontends.discord.test_conversations import final_reply, first_thread

ROOT = Path(__file__).resolve().parents[3]
MISSING_MODEL = '[[models]]\nname = "missing"\npath = "/nonexistent/model"\n'
"""A model that cannot load: a token error that shows instead was found before any model load."""
pytestmark = pytest.mark.timeout(180)


async def start_command(config: Path, token: str | None, stderr: Path) -> asyncio.subprocess.Process:
    """``python -m bot run --config CONFIG`` with DISCORD_TOKEN set to ``token`` (or unset); stderr to a file."""
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    if token is not None:
        env["DISCORD_TOKEN"] = token
    with stderr.open("wb") as sink:  # a file, not a pipe: the bot's log lines can never block it
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip


async def run_command(config: Path, token: str | None, tmp_path: Path) -> tuple[int, str]:
    """Run the command to its end; its exit code and stderr."""
    stderr = tmp_path / "stderr.txt"
    process = await start_command(config, token, stderr)
    code = await asyncio.wait_for(process.wait(), timeout=120)
    return code, stderr.read_text()


def fake_config(fake: FakeDiscord, path: Path, extra: str = "") -> Path:
    """A config file pointing the bot at ``fake``."""
    path.write_text(
        f'[discord]\napi_base = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n'
        f"guild_ids = [{fake.guild.id}]\n{extra}"
    )
    return path


@pytest.fixture
async def fake_without_content_intent(restore_endpoints: None) -> AsyncIterator[FakeDiscord]:
    """A fake Discord whose application has no privileged intent enabled in the Developer Portal."""
    async with FakeDiscord(allowed_intents=0) as server:
        configure_endpoints(server.api_base, server.gateway_url)
        yield server


@contextlib.asynccontextmanager
async def serving(fake: FakeDiscord, backend: ScriptedBackend, db: Path, **settings: Any) -> AsyncIterator[None]:
    """The runner serving ``fake`` on the scripted model until the block ends; it must then exit with code 0."""
    engine = scripted_engine(Config(), backend)
    async with await Store.open(db) as store:
        chat_service = ChatService(store, engine, engine.config.generation)
        discord_settings = DiscordConfig(guild_ids=[fake.guild.id], **settings)
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_bot(chat_service, discord_settings, fake.token, stop=stop, guild_ready_timeout=0.05)
        )
        ready = asyncio.create_task(fake.wait_until_ready(timeout=10))
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                pytest.fail(f"the runner ended with code {task.result()} before it was ready")
            await ready
            yield
        finally:
            ready.cancel()
            stop.set()
            code = await asyncio.wait_for(task, 10)
    assert code == 0


async def test_missing_token_exits_2(tmp_path: Path) -> None:
    """Without DISCORD_TOKEN the bot says what to set and exits with code 2, before any model loads."""
    config = tmp_path / "config.toml"
    config.write_text(MISSING_MODEL)
    code, stderr = await run_command(config, None, tmp_path)
    assert code == 2
    assert stderr.strip() == "error: set the DISCORD_TOKEN environment variable to your bot's token"


async def test_rejected_token_exits_2(fake: FakeDiscord, tmp_path: Path) -> None:
    """A token Discord refuses gets one clear line and exit code 2, before any model loads."""
    config = fake_config(fake, tmp_path / "config.toml", MISSING_MODEL)
    code, stderr = await run_command(config, "not-the-token", tmp_path)
    assert code == 2
    assert stderr.strip() == (
        "error: Discord rejected the token in DISCORD_TOKEN; copy it again from the Developer Portal"
    )


async def test_refused_message_content_intent_is_one_line_and_exit_2(
    fake_without_content_intent: FakeDiscord,
    backend: ScriptedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Discord closing the gateway with 4014 gets one line naming the intent and where, exit 2, and a closed bot."""
    fake = fake_without_content_intent
    made: list[AiroborosBot] = []

    class RecordedBot(AiroborosBot):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(runner, "AiroborosBot", RecordedBot)
    engine = scripted_engine(Config(), backend)
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        chat_service = ChatService(store, engine, engine.config.generation)
        settings = DiscordConfig(guild_ids=[fake.guild.id])
        code = await asyncio.wait_for(
            run_bot(chat_service, settings, fake.token, stop=asyncio.Event(), guild_ready_timeout=0.05), 10
        )
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [MESSAGE_CONTENT_REFUSED]
    assert fake.sessions == []  # refused at IDENTIFY
    (bot,) = made
    assert bot.is_closed()


async def test_without_message_content_a_mention_is_answered_in_a_thread(
    fake_without_content_intent: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With message_content = false the bot identifies without the intent and still answers a mention."""
    fake = fake_without_content_intent
    async with serving(fake, backend, tmp_path / "bot.sqlite3", message_content=False):
        assert fake.intents is not None and not fake.intents & Intent.MESSAGE_CONTENT
        await fake.send_message(fake.channel.id, fake.alice, "what is up?", mentions_bot=True)
        thread = await first_thread(fake)
        (reply,) = await final_reply(fake, thread.id)
    assert reply["content"] == "Hello there, friend."
    assert "what is up?" in backend.prompts[-1].text


async def test_without_message_content_a_dm_is_answered(
    fake_without_content_intent: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With message_content = false a direct message still reaches the model and gets its answer."""
    fake = fake_without_content_intent
    dm = fake.dm_channel(fake.alice)
    async with serving(fake, backend, tmp_path / "bot.sqlite3", message_content=False):
        await fake.send_message(dm.id, fake.alice, "hello in private")
        (reply,) = await final_reply(fake, dm.id)
    assert reply["content"] == "Hello there, friend."
    assert "hello in private" in backend.prompts[-1].text
