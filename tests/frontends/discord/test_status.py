"""``/status``: models, default, queue, uptime, version, servers and latency, privately and at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from bot.frontends.discord.features.status import VariantStatus, duration_text, latency_text, variant_line
from tests.doubles import ScriptedBackend, scripted_variants
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import long_reply_streaming
from tests.frontends.discord.conftest import Running, run_bot

pytestmark = pytest.mark.timeout(60)


def fields(callback: dict[str, Any]) -> dict[str, str]:
    (embed,) = callback["data"]["embeds"]
    return {f["name"]: f["value"] for f in embed["fields"]}


async def test_status_answers_privately_with_models_queue_and_version(fake: FakeDiscord, running: Running) -> None:
    """/status answers at once, only to the asker, with the variant, the queue, the version and the server count."""
    handle = await fake.invoke_slash("status")
    callback = await handle.wait_callback()
    assert (callback["type"], callback["data"]["flags"] & 64) == (4, 64)
    got = fields(callback)
    assert got["Models"] == "**smollm2** (default): local, chat-template format, 2048 tokens"
    assert got["Queue"] == "**smollm2**: 0 waiting, 0 running of 4"
    assert got["Version"].startswith("0.1.0 (discord.py 2.")
    assert got["Servers"] == "1"
    assert got["Uptime"].endswith(" s")
    assert got["Gateway latency"] == "not measured yet" or got["Gateway latency"].endswith(" ms")


async def test_status_shows_a_reply_in_flight(fake: FakeDiscord, running: Running, backend: ScriptedBackend) -> None:
    """While a reply streams, the queue line counts it as running."""
    await long_reply_streaming(fake, backend)
    handle = await fake.invoke_slash("status")
    assert fields(await handle.wait_callback())["Queue"] == "**smollm2**: 0 waiting, 1 running of 4"


async def test_status_lists_every_variant_and_marks_the_default_without_paths(
    fake: FakeDiscord, backend: ScriptedBackend, tmp_path: Path
) -> None:
    """With two variants both are listed, the configured default is marked, and no model path is shown."""
    config = Config.model_validate(
        {
            "models": [
                {"name": "qlora", "path": "/models/private/llama-7b", "adapter": "/models/private/qlora",
                 "load_4bit": True, "prompt_format": "airoboros"},
                {"name": "full", "path": "/models/private/full", "prompt_format": "airoboros"},
            ],
            "inference": {"default_model": "full"},
        }
    )  # fmt: skip
    other = ScriptedBackend(backend.tokenizer, name="full")
    engine = scripted_variants(config, {"qlora": backend, "full": other})
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        handle = await fake.invoke_slash("status")
        got = fields(await handle.wait_callback())
    assert got["Models"].splitlines() == [
        "**qlora**: local, airoboros format, 2048 tokens, nf4 + LoRA",
        "**full** (default): local, airoboros format, 2048 tokens",
    ]
    assert "/models" not in str(got)


def test_duration_text_keeps_the_two_largest_units() -> None:
    """Uptimes read as seconds, minutes, hours and minutes, or days and hours."""
    assert [duration_text(s) for s in (42, 125, 2 * 3600 + 5 * 60 + 9, 3 * 86400 + 4 * 3600 + 59)] == [
        "42 s", "2 min", "2 h 5 min", "3 d 4 h",
    ]  # fmt: skip


def test_latency_text_before_the_first_heartbeat() -> None:
    """A latency not measured yet (inf or nan) says so instead of showing a number."""
    assert [latency_text(v) for v in (0.0421, float("inf"), float("nan"))] == [
        "42 ms", "not measured yet", "not measured yet",
    ]  # fmt: skip


def test_variant_line_names_quantization_alone() -> None:
    """A 4-bit variant without an adapter shows ``nf4`` only; a remote one its backend."""
    variant = VariantStatus("qlora", "openai", "airoboros", 2048, True, False, 0, 0, 8)
    assert variant_line(variant, default=False) == "**qlora**: openai, airoboros format, 2048 tokens, nf4"
