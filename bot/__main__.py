"""Command line: ``python -m bot {chat,run,bench,loadtest,render-prompt,check-config,doctor,invite-url,healthcheck}``.

Resources (the database, the engine) are opened here and passed in; no module holds a
singleton. Every :class:`~bot.errors.BotError` ends as one line on stderr: exit code 2
for a bad config or bad input, 1 for a failure at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import EMBEDDED_MODEL, Config, ModelConfig, load_config
from bot.errors import BotError, ConfigError, PromptError

_log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Airoboros Discord bot and terminal chat.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="chat in the terminal (FastChat-style flags)")
    chat.add_argument("--config", help="TOML config file (default: built-in defaults, embedded model)")
    chat.add_argument("--model-path", help="a local model folder or .gguf file (default: the embedded model)")
    chat.add_argument("--adapter-path", help="a local PEFT/LoRA adapter folder applied to the model")
    chat.add_argument("--load-4bit", action="store_true", help="quantize the model to 4-bit nf4 (bitsandbytes)")
    chat.add_argument("--prompt-format", choices=["airoboros", "chat-template"], help="override the prompt format")
    chat.add_argument("--variant", help="the [[models]] entry to use (default: the configured default)")
    chat.add_argument("--temperature", type=float, help="sampling temperature (card default 0.5; 0 = greedy)")
    chat.add_argument("--max-new-tokens", type=int, help="longest reply in tokens")
    chat.add_argument("--no-history", action="store_true", help="answer each prompt on its own, without earlier turns")
    chat.add_argument("--debug", action="store_true", help="log at DEBUG level to stderr")

    run = commands.add_parser("run", help="run the Discord bot (token from DISCORD_TOKEN)")
    run.add_argument("--config", help="TOML config file (default: built-in defaults, embedded model)")
    run.add_argument("--debug", action="store_true", help="log at DEBUG level to stderr")

    bench = commands.add_parser("bench", help="measure latency and throughput through the real scheduler and worker")
    bench.add_argument("--config", help="TOML config file (default: the embedded model)")
    bench.add_argument("--variant", help="the [[models]] entry to measure")
    bench.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    bench.add_argument("--requests", type=int, default=8, help="requests per phase (default 8)")
    bench.add_argument("--prompt-tokens", type=int, default=128, help="prompt length in tokens (default 128)")
    bench.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per request (default 64)")
    bench.add_argument("--baseline-requests", type=int, help="requests in the one-at-a-time baseline (default: all)")
    bench.add_argument(
        "--repeat", type=int, default=1, help="run the whole measurement N times: medians and min-max (default 1)"
    )
    bench.add_argument(
        "--random-weights", choices=["llama-7b", "tiny"], help="a LLaMA-shaped model with random weights"
    )
    bench.add_argument("--load-4bit", action="store_true", help="with --random-weights: quantize it to nf4")
    bench.add_argument("--tokenizer", type=Path, help="with --random-weights: a tokenizer folder (default: embedded)")
    bench.add_argument("--json", action="store_true", help="print only the JSON object")
    bench.add_argument("--history-tokens", type=int, help="also time a follow-up in a thread with this much history")

    load = commands.add_parser(
        "loadtest", help="the Discord frontend under load: fake Discord and model server (from a source checkout)"
    )
    load.add_argument("--conversations", type=int, default=100, help="people writing at once (default 100)")
    load.add_argument("--reply-chars", type=int, default=1500, help="characters in each reply (default 1500)")
    load.add_argument("--reply-seconds", type=float, default=20.0, help="seconds each reply streams (default 20)")
    load.add_argument("--timeout", type=float, help="seconds the replies may take in all (default: generous)")
    load.add_argument("--database-dir", help="where the bot's database goes (default: the temporary folder)")
    load.add_argument("--json", action="store_true", help="print only the JSON object")

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", required=True, help="TOML config file")

    render = commands.add_parser("render-prompt", help="print the exact prompt string a conversation becomes")
    render.add_argument("--config", help="TOML config file")
    render.add_argument("--input", required=True, help="conversation JSON file, or - for stdin")
    render.add_argument("--format", choices=["airoboros", "chat-template"], help="override the variant's format")
    render.add_argument("--variant", help="the [[models]] entry whose tokenizer and window to use")

    doctor = commands.add_parser("doctor", help="check the config, token, intents, models, GPU and database")
    doctor.add_argument("--config", help="TOML config file (default: built-in defaults, embedded model)")

    invite = commands.add_parser("invite-url", help="print the link that adds the bot with the permissions it needs")
    invite.add_argument("--config", help="TOML config file ([discord] roleplay decides Manage Webhooks)")
    invite.add_argument("--client-id", type=int, help="the application id (default: read from DISCORD_TOKEN)")

    health = commands.add_parser("healthcheck", help="exit 0 if the running bot's heartbeat is fresh and healthy")
    health.add_argument("--config", help="the running bot's TOML config file (for [health] and [storage])")
    return parser


def _chat_config(args: argparse.Namespace) -> tuple[Config, str | None]:
    """The config with the command-line overrides applied, and the variant to use."""
    config = load_config(args.config)
    if args.model_path is None and args.adapter_path is None and not args.load_4bit and args.prompt_format is None:
        return config, args.variant
    base = config.model(args.variant) if args.variant else config.default_model
    fields = base.model_dump()
    if args.model_path is not None:
        fields.update(path=args.model_path, adapter=None, name="cli")
        if args.prompt_format is None and base.path == EMBEDDED_MODEL:
            fields["prompt_format"] = None  # a model given by path defaults to the airoboros format
    if args.adapter_path is not None:
        fields["adapter"] = args.adapter_path
    if args.load_4bit:
        fields["load_4bit"] = True
    if args.prompt_format is not None:
        fields["prompt_format"] = args.prompt_format
    try:
        variant = ModelConfig.model_validate(fields)
    except ValueError as error:
        raise ConfigError(f"command line: {error}") from None
    return config.model_copy(update={"models": [variant], "inference": config.inference.model_copy(
        update={"default_model": None})}), variant.name  # fmt: skip


async def _chat(args: argparse.Namespace) -> int:
    from bot.core.chat import ChatService
    from bot.core.chat_prompts import ChatOptions
    from bot.core.engine import Engine
    from bot.frontends.terminal import run_chat
    from bot.store import Store

    config, variant = _chat_config(args)
    if args.temperature is not None and not 0 <= args.temperature <= 2:
        raise ConfigError("--temperature must be between 0 and 2")
    if args.max_new_tokens is not None and args.max_new_tokens <= 0:
        raise ConfigError("--max-new-tokens must be a positive number")
    engine = await Engine.start(config, names=[variant or config.default_model.name])
    try:
        async with await Store.open(":memory:") as store:
            chat = ChatService(store, engine, config.generation, history_limit=config.storage.history_messages)
            options = ChatOptions(
                variant=variant,
                history=False if args.no_history else None,
                temperature=args.temperature,
                max_new_tokens=args.max_new_tokens,
            )
            return await run_chat(chat, options)
    finally:
        await engine.close()


async def _run(args: argparse.Namespace) -> int:
    from bot.core.chat import ChatService
    from bot.core.engine import Engine
    from bot.frontends.discord.app.endpoints import configure_endpoints
    from bot.frontends.discord.app.runner import check_token, freeze_startup_objects, read_token, run_bot
    from bot.health import health_path
    from bot.metrics import serve_metrics
    from bot.store import Store

    config = load_config(args.config)
    logging.getLogger().setLevel(logging.DEBUG if args.debug else config.log_level)
    token = read_token()
    configure_endpoints(config.discord.api_base, config.discord.gateway_url)
    await check_token(token)  # a bad token fails now, not after the slow model load
    # Opened in this order and closed in reverse: the bot (inside run_bot) first, then the store, then the engine.
    engine = await Engine.start(config)
    try:
        async with await Store.open(config.storage.path) as store, serve_metrics(engine, config.metrics) as metrics:
            chat = ChatService(store, engine, config.generation, history_limit=config.storage.history_messages)
            freeze_startup_objects()
            return await run_bot(
                chat, config.discord, token, metrics=metrics,
                health_file=health_path(config), health_interval=config.health.interval_seconds,
            )  # fmt: skip
    finally:
        await engine.close()


async def _bench(args: argparse.Namespace) -> int:
    from bot.bench import BenchOptions, bench_config, print_result, run_bench

    for flag in ("concurrency", "requests", "prompt_tokens", "max_new_tokens", "repeat", "history_tokens"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive number")
    options = BenchOptions(
        args.concurrency,
        args.requests,
        args.prompt_tokens,
        args.max_new_tokens,
        args.baseline_requests,
        args.repeat,
        history_tokens=args.history_tokens,
    )
    config, variant = bench_config(
        load_config(args.config),
        options,
        random_weights=args.random_weights,
        load_4bit=args.load_4bit,
        tokenizer=args.tokenizer,
    )
    result = await run_bench(config, options, variant_name=variant or args.variant)
    print_result(result, as_json=args.json)
    return 0


async def _loadtest(args: argparse.Namespace) -> int:
    from bot.loadtest import LoadOptions, checkout_root, print_report, run_loadtest
    from bot.loadtest._report import MAX_REPLY_CHARS

    if args.conversations <= 0 or args.reply_seconds <= 0 or (args.timeout is not None and args.timeout <= 0):
        raise ConfigError("--conversations, --reply-seconds and --timeout must be positive numbers")
    if not 0 < args.reply_chars <= MAX_REPLY_CHARS:
        raise ConfigError(f"--reply-chars must be between 1 and {MAX_REPLY_CHARS} (a reply that fits one message)")
    checkout_root()  # before the slow tokenizer load: an installed bot cannot run it
    options = LoadOptions(args.conversations, args.reply_chars, args.reply_seconds, args.timeout, args.database_dir)
    report = await run_loadtest(options)
    print_report(report, as_json=args.json)
    return 0 if report["ok"] else 1


def _render(args: argparse.Namespace) -> int:
    from bot.frontends.render_prompt import read_dialogue, render

    config = load_config(args.config)
    dialogue = read_dialogue(args.input)
    prompt = render(config, dialogue, variant=args.variant, prompt_format=args.format)
    sys.stdout.write(prompt.text)
    sys.stdout.flush()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from bot.doctor import diagnose, report

    text, code = report(asyncio.run(diagnose(args.config)))
    sys.stdout.write(text)
    return code


def _invite_url(args: argparse.Namespace) -> int:
    from bot.doctor import client_id_from_token
    from bot.frontends.discord.app.invite import invite_url
    from bot.frontends.discord.app.runner import TOKEN_VARIABLE

    config = load_config(args.config)
    client_id = args.client_id
    if client_id is None:
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        client_id = client_id_from_token(token) if token else None
        if client_id is None:
            what = "does not hold an application id" if token else "is not set"
            raise ConfigError(f"give --client-id (your application's id): {TOKEN_VARIABLE} {what}")
    print(invite_url(client_id, roleplay=config.discord.roleplay))
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    from bot.health import check_heartbeat, health_path

    config = load_config(args.config)
    path = health_path(config)
    problem = check_heartbeat(path, max_age=config.health.max_age_seconds)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"healthy ({path})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "debug", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # A compiled decode step costs minutes of start-up on a CPU: every command says what it is doing meanwhile.
    logging.getLogger("bot.inference.compiled").setLevel(logging.INFO)
    try:
        if args.command == "chat":
            return asyncio.run(_chat(args))
        if args.command == "bench":
            return asyncio.run(_bench(args))
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "loadtest":
            return asyncio.run(_loadtest(args))
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "invite-url":
            return _invite_url(args)
        if args.command == "healthcheck":
            return _healthcheck(args)
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: ok ({len(config.models)} model variant(s), default {config.default_model.name!r})")
            return 0
        return _render(args)
    except (ConfigError, PromptError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
