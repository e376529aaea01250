"""The bot token never shows: not in any log line (every logger at DEBUG), message, error or config repr."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import Config, DiscordConfig, load_config
from bot.core.chat import ChatService
from bot.errors import TokenError
from bot.frontends.discord.app.endpoints import configure_endpoints
from bot.frontends.discord.app.runner import check_token, run_bot
from bot.redaction import MASK, Redactor, redacting, token_secrets
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine
from tests.fakediscord import FakeDiscord, Permission
from tests.frontends.discord._helpers import bot_messages, chat, final_reply, first_thread

pytestmark = pytest.mark.timeout(90)

TOKEN = "MTA4NzY1NDMyMTA5ODc2NTQzMg.GxYz12.q9Wf3KpL0aBcD-eFgHiJkLmNoPqRsTuVwXyZ012"
"""Shaped like a real bot token: the bot's id in base64, a timestamp part, an HMAC part."""
SECRETS = [TOKEN, *(part for part in TOKEN.split(".") if len(part) >= 6)]
ROOT = Path(__file__).resolve().parents[3]


def leaks(text: str) -> list[str]:
    """The token and those of its parts that appear in ``text``."""
    return [secret for secret in SECRETS if secret in text]


class Everything(logging.Handler):
    """Keeps every record formatted as ``python -m bot run`` prints it, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[Everything]:
    """Every logger, those of discord.py, aiohttp and asyncio included, at DEBUG into one handler on the root."""
    handler = Everything()
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    logging.root.addHandler(handler)
    try:
        yield handler
    finally:
        logging.root.removeHandler(handler)


@contextlib.contextmanager
def redacting_on(handler: logging.Handler) -> Iterator[None]:
    """A redactor for :data:`TOKEN` on ``handler`` alone while the block runs."""
    redactor = Redactor(token_secrets(TOKEN))
    handler.addFilter(redactor)
    try:
        yield
    finally:
        handler.removeFilter(redactor)


@pytest.fixture
async def fake(restore_endpoints: None) -> AsyncIterator[FakeDiscord]:
    """The fake Discord accepting only :data:`TOKEN`."""
    async with FakeDiscord(token=TOKEN) as server:
        configure_endpoints(server.api_base, server.gateway_url)
        yield server


async def test_a_whole_session_logs_no_part_of_the_token(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture, embedded_tokenizer: tuple[object, int]
) -> None:
    """Connect, /chat with a 429, a thread message, a refused permission, /status, shutdown: no token anywhere."""
    backend = ScriptedBackend(embedded_tokenizer[0], delay=0.01)  # type: ignore[arg-type]
    engine = scripted_engine(Config(), backend)
    with everything_at_debug(caplog) as logged:
        async with await Store.open(tmp_path / "bot.sqlite3") as store:
            service = ChatService(store, engine, engine.config.generation)
            stop = asyncio.Event()
            settings = DiscordConfig(guild_ids=[fake.guild.id])
            runner = asyncio.create_task(run_bot(service, settings, TOKEN, stop=stop, guild_ready_timeout=0.05))
            try:
                await fake.wait_until_ready(timeout=10)
                fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.05)
                await chat(fake, "Tell me a joke.")
                thread = await first_thread(fake)
                await final_reply(fake, thread.id)
                await fake.send_message(thread.id, fake.alice, "Another one.")
                await final_reply(fake, thread.id, count=2)
                await (await fake.invoke_slash("status")).wait_callback()
                await fake.set_bot_permissions(fake.channel.id, deny=Permission.CREATE_PUBLIC_THREADS)
                refused = await chat(fake, "hello")
                await refused.wait_original(lambda o: "Create Public Threads" in o["content"])
            finally:
                stop.set()
                code = await asyncio.wait_for(runner, 20)
    assert code == 0
    assert any(line.startswith(tuple("0123456789")) and " DEBUG discord." in line for line in logged.lines)
    assert any("request variant=" in line for line in logged.lines)
    assert leaks("\n".join(logged.lines)) == []
    shown = [m for channel in (fake.channel.id, thread.id) for m in fake.messages_in(channel)]
    shown += [h.original or {} for h in fake.interactions] + [h.modal or {} for h in fake.interactions]
    assert leaks(json.dumps(shown)) == []
    assert len(bot_messages(fake, thread.id)) == 2


async def test_run_bot_masks_the_token_in_any_library_line(
    fake: FakeDiscord, tmp_path: Path, caplog: pytest.LogCaptureFixture, embedded_tokenizer: tuple[object, int]
) -> None:
    """While the bot runs, a line that would show the token (a library logging headers) is written masked."""
    engine = scripted_engine(Config(), ScriptedBackend(embedded_tokenizer[0]))  # type: ignore[arg-type]
    with everything_at_debug(caplog) as logged:
        async with await Store.open(tmp_path / "bot.sqlite3") as store:
            service = ChatService(store, engine, engine.config.generation)
            stop = asyncio.Event()
            settings = DiscordConfig(guild_ids=[fake.guild.id])
            runner = asyncio.create_task(run_bot(service, settings, TOKEN, stop=stop, guild_ready_timeout=0.05))
            await fake.wait_until_ready(timeout=10)
            logging.getLogger("aiohttp.client").debug("headers: %s", {"Authorization": f"Bot {TOKEN}"})
            stop.set()
            assert await asyncio.wait_for(runner, 20) == 0
    (line,) = [line for line in logged.lines if "headers:" in line]
    assert line.endswith(f"headers: {{'Authorization': 'Bot {MASK}'}}")


def test_redactor_masks_the_token_its_parts_and_tracebacks() -> None:
    """The message (with its arguments), a part of the token alone and an exception's traceback are masked."""
    handler = Everything()
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with redacting_on(handler):
            logger.debug("token=%s hmac=%s", TOKEN, TOKEN.split(".")[2])
            try:
                raise RuntimeError(f"bad header Bot {TOKEN}")
            except RuntimeError:
                logger.exception("failed")
        logger.debug("after %s", TOKEN.split(".")[1])
    finally:
        logger.removeHandler(handler)
    text = "\n".join(handler.lines)
    assert leaks("\n".join(handler.lines[:-1])) == []
    assert f"token={MASK} hmac={MASK}" in text
    assert f"RuntimeError: bad header Bot {MASK}" in text
    assert handler.lines[-1].endswith(f"after {TOKEN.split('.')[1]}")  # the filter leaves with the block


def test_redacting_covers_the_root_handlers_only_while_it_runs() -> None:
    """``redacting`` puts its filter on every root handler and takes it off afterwards."""
    handler = Everything()
    logging.root.addHandler(handler)
    try:
        with redacting(TOKEN) as redactor:
            assert redactor in handler.filters
        assert redactor not in handler.filters
    finally:
        logging.root.removeHandler(handler)


def test_token_secrets_are_the_token_and_its_long_parts() -> None:
    """A token's secrets are itself and its parts of six characters or more, longest first."""
    assert token_secrets("abcdefgh.xyz.123456") == ["abcdefgh.xyz.123456", "abcdefgh", "123456"]


async def test_run_at_debug_prints_no_part_of_the_token(fake: FakeDiscord, tmp_path: Path) -> None:
    """``python -m bot run --debug`` (token check, then a model that fails to load) prints no part of the token."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[discord]\napi_base = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"\n'
        '[[models]]\nname = "missing"\npath = "/nonexistent/model"\n'
    )
    env = {**os.environ, "DISCORD_TOKEN": TOKEN}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", "--debug", "--config", str(config),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 1, output
    assert "DEBUG" in output  # the HTTP exchange of the token check was logged
    assert fake.requests_to("GET", r"/users/@me")
    assert leaks(output) == []


async def test_a_rejected_token_is_not_repeated_in_the_error(fake: FakeDiscord) -> None:
    """A token Discord refuses gets an error that names the variable, never the token."""
    wrong = TOKEN[:-4] + "AAAA"
    with pytest.raises(TokenError) as raised:
        await check_token(wrong)
    assert "DISCORD_TOKEN" in str(raised.value)
    assert wrong.split(".")[2] not in str(raised.value) and wrong not in repr(raised.value)


def test_config_never_holds_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the token in the environment, no config object's repr or dump contains it."""
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    config = load_config(None)
    assert leaks(repr(config) + config.model_dump_json() + repr(config.discord)) == []
