"""The bot's side of a load test: the fakes in a child process, the real bot here, measured while it answers.

The bot's modules are imported when a load test runs, not with this package: the fakes' process starts
from ``bot.loadtest`` too and needs none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import BotError, ConfigError
from bot.loadtest._probe import LagSampler, Probe, cpu_kind
from bot.loadtest._report import LoadOptions, assemble

if TYPE_CHECKING:
    from bot.config import Config, ModelConfig
    from bot.core.chat import ChatService
    from bot.inference.tokenizer import HFTokenizer

T = TypeVar("T")

SETTLE_PER_CONVERSATION = 0.001
"""After the bot's gateway session is ready: time for it to take in the guild (its threads, its members)
before the idle loop lag is sampled, on top of ``idle_seconds``."""
START_TIMEOUT = 120.0
"""Seconds the fakes may take to start, and the bot to connect."""


def checkout_root(root: Path | None = None) -> Path:
    """The source checkout this bot runs from (or ``root``); :class:`ConfigError` if it has no ``tests/``."""
    root = root or Path(__file__).resolve().parents[2]
    if not (root / "tests" / "fakediscord" / "__init__.py").is_file():
        raise ConfigError(
            f"python -m bot loadtest runs from a source checkout: it drives the fake Discord in tests/fakediscord/, "
            f"which is not beside this bot ({root})"
        )
    return root


class _Fakes:
    """The child process holding the fake Discord and the scripted model server, asked one command at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def answer(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise BotError("the load test's fakes stopped (their error is above)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.answer(timeout)


@contextlib.asynccontextmanager
async def _fakes(root: Path, options: LoadOptions) -> AsyncIterator[_Fakes]:
    """Start the fakes' process (its first answer will be ``ready``, with the endpoints); stop it on exit."""
    settings = {
        "conversations": options.conversations,
        "reply_chars": options.reply_chars,
        "reply_seconds": options.reply_seconds,
        "timeout": options.deadline,
    }
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.loadtest._world", json.dumps(settings),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=root, env=env, limit=2**24,
    )  # fmt: skip
    fakes = _Fakes(process)
    try:
        yield fakes
    finally:
        if process.returncode is None:
            with contextlib.suppress(ConnectionError):
                assert process.stdin is not None
                process.stdin.write(b"quit\n")
                await process.stdin.drain()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _unless_stopped(work: Awaitable[T], bot: asyncio.Task[int]) -> T:
    """``work``'s result, unless the bot stops first (then its error, or a :class:`BotError`)."""
    waiting = asyncio.ensure_future(work)
    await asyncio.wait({waiting, bot}, return_when=asyncio.FIRST_COMPLETED)
    if waiting.done():
        return waiting.result()
    waiting.cancel()
    raise BotError(f"the bot stopped during the load test (exit code {bot.result()})")


def _config(options: LoadOptions, model_url: str, guild_id: int) -> tuple[Config, ModelConfig]:
    from bot.config import Config, DiscordConfig, InferenceConfig, ModelConfig

    model = ModelConfig(
        name="loadtest", backend="openai", base_url=model_url, model="loadtest", path="embedded", context_length=2048
    )
    config = Config(
        models=[model],
        inference=InferenceConfig(max_queued_total=max(64, options.conversations)),
        discord=DiscordConfig(guild_ids=[guild_id]),
    )
    return config, model


async def run_loadtest(options: LoadOptions, *, tokenizer: HFTokenizer | None = None) -> dict[str, Any]:
    """Run one load and return its report (see :func:`bot.loadtest._report.assemble`).

    ``tokenizer`` is the embedded model's (loaded here when not given). This points discord.py at the
    fake Discord for the whole process (:func:`configure_endpoints`).
    """
    root = checkout_root()
    machine: dict[str, Any] = {"cpus": os.cpu_count(), "cpu_kind": cpu_kind(), "load_average_before": _load()}
    async with _fakes(root, options) as fakes:
        # The bot's modules load while the fakes start.
        import aiohttp

        from bot.core.chat import ChatService
        from bot.core.engine import Engine
        from bot.frontends.discord.app.endpoints import configure_endpoints
        from bot.inference.remote import OpenAIBackend
        from bot.store import Store

        world = (await fakes.answer(START_TIMEOUT))["ready"]
        configure_endpoints(world["api_base"], world["gateway_url"])
        config, model = _config(options, world["model_url"], world["guild_id"])
        # Every conversation streams at once: one connection each (aiohttp's default pool holds 100).
        connector = aiohttp.TCPConnector(limit=options.conversations)
        async with aiohttp.ClientSession(connector=connector) as session:
            backend = OpenAIBackend(model, max_batch_size=options.conversations, session=session, tokenizer=tokenizer)
            await backend.start()
            engine = Engine(config, {model.name: Engine._wrap(model, backend, config)})
            try:
                with tempfile.TemporaryDirectory(prefix="loadtest-", dir=options.database_dir) as folder:
                    async with await Store.open(Path(folder) / "bot.sqlite3") as store:
                        chat = ChatService(store, engine, config.generation)
                        measured = await _measure(fakes, chat, config, world["token"], options)
            finally:
                await engine.close()
    machine["load_average_after"] = _load()
    bot, lag, idle_lag, seen = measured
    machine["cpu_pressure_pct"] = bot.pop("machine_cpu_pressure_pct")
    busy = machine["busy_cores"] = bot.pop("machine_busy_cores")
    if busy is not None:  # what other processes kept busy: the machine's, less the bot's and the fakes'
        machine["others_busy_cores"] = round(max(0.0, busy - (bot["cpu_s"] + seen["fake_cpu_s"]) / bot["wall_s"]), 2)
    return assemble(options, machine, bot, seen, lag=lag, idle_lag=idle_lag)


def _load() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [round(load, 2) for load in os.getloadavg()]


async def _measure(
    fakes: _Fakes, chat: ChatService, config: Config, token: str, options: LoadOptions
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Connect the bot, let every person write, and measure until every reply ended.

    Returns the bot's figures, the loop lag under load and while idle before it, and the fakes' report.
    """
    from bot.frontends.discord.app.runner import freeze_startup_objects, run_bot

    freeze_startup_objects()  # as python -m bot run does
    stop = asyncio.Event()
    bot = asyncio.create_task(run_bot(chat, config.discord, token, stop=stop, guild_ready_timeout=0.05))
    try:
        await _unless_stopped(fakes.ask("connected", START_TIMEOUT), bot)
        await asyncio.sleep(SETTLE_PER_CONVERSATION * options.conversations)
        idle = LagSampler()
        idle.start()
        await _unless_stopped(asyncio.sleep(options.idle_seconds), bot)
        await idle.stop()
        sampler, probe = LagSampler(), Probe()
        sampler.start()
        probe.start()
        try:
            await _unless_stopped(fakes.ask("go", options.deadline + 60), bot)  # every reply ended
        finally:
            await sampler.stop()
            measured = await probe.stop()
        seen = (await fakes.answer(START_TIMEOUT))["report"]
        return measured, sampler.summary(), idle.summary(), seen
    finally:
        stop.set()
        await bot
