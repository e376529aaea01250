"""``python -m bot invite-url``: exactly the permissions the enabled features check for, and the client id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import Config, DiscordConfig
from bot.core.chat import ChatService
from bot.frontends.discord.app.runner import run_bot
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord
from tests.test_doctor import CLIENT_ID, TOKEN

WITH_ROLEPLAY = 309_774_633_984
"""View Channel, Send Messages, Embed Links, Attach Files, Read Message History, Manage Webhooks,
Create Public Threads, Send Messages in Threads."""
WITHOUT_ROLEPLAY = 309_237_763_072
"""The same without Manage Webhooks."""


def invite(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["invite-url", *args])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip()


def test_invite_asks_for_manage_webhooks_with_roleplay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (roleplay on) link carries the exact permission integer, Manage Webhooks included."""
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert invite(capsys, "--client-id", "42") == (
        0,
        "https://discord.com/oauth2/authorize?client_id=42&scope=bot+applications.commands"
        f"&permissions={WITH_ROLEPLAY}",
        "",
    )


def test_invite_without_roleplay_leaves_out_webhooks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With [discord] roleplay = false the link does not ask for Manage Webhooks."""
    config = tmp_path / "config.toml"
    config.write_text("[discord]\nroleplay = false\n")
    code, out, _ = invite(capsys, "--config", str(config), "--client-id", "42")
    assert code == 0
    assert out.endswith(f"&permissions={WITHOUT_ROLEPLAY}")


def test_client_id_comes_from_the_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --client-id the application id is read from DISCORD_TOKEN's first part."""
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    code, out, _ = invite(capsys)
    assert code == 0
    assert f"client_id={CLIENT_ID}&" in out
    assert TOKEN.split(".")[0] not in out


def test_no_client_id_and_no_token_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither --client-id nor DISCORD_TOKEN: one line saying what to give, exit code 2."""
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert invite(capsys) == (2, "", "error: give --client-id (your application's id): DISCORD_TOKEN is not set")


async def test_roleplay_off_registers_no_character_or_scene_commands(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With roleplay = false the bot syncs its commands without /character and /scene (so it needs no webhooks)."""
    engine = scripted_engine(Config(), backend)
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        chat = ChatService(store, engine, engine.config.generation)
        settings = DiscordConfig(guild_ids=[fake.guild.id], roleplay=False)
        stop = asyncio.Event()
        task = asyncio.create_task(run_bot(chat, settings, fake.token, stop=stop, guild_ready_timeout=0.05))
        try:
            await fake.wait_until_ready(timeout=20)
            names = {command["name"] for command in await fake.wait_for(lambda: fake.commands(fake.guild.id))}
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 20) == 0
    assert "chat" in names
    assert not names & {"character", "scene"}
