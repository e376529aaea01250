"""``python -m bot bench``: it drives the real scheduler and worker and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.bench import BenchOptions, bench_config, run_bench
from bot.config import Config, InferenceConfig

ROOT = Path(__file__).resolve().parents[1]


async def test_bench_reports_every_figure_with_exact_token_counts() -> None:
    """Each phase generates exactly requests x max_new_tokens; latency, speed-up, joiner and memory are there."""
    options = BenchOptions(concurrency=2, requests=2, prompt_tokens=16, max_new_tokens=6)
    config, variant = bench_config(Config(), options, random_weights=None, load_4bit=False)
    result = await run_bench(config, options, variant_name=variant)
    for phase in ("concurrent", "baseline"):
        assert result[phase]["tokens"] == 12
        assert result[phase]["ttft_p50_s"] > 0
        assert result[phase]["aggregate_tokens_per_s"] > 0
    assert result["speedup"] > 0
    assert result["late_joiner"]["ttft_s"] > 0
    assert result["late_joiner"]["lone_ttft_s"] == result["baseline"]["ttft_p50_s"]
    assert result["memory"]["peak_rss_mb"] > 100
    assert result["environment"]["max_batch_size"] >= 2


def test_bench_config_makes_room_for_everyone() -> None:
    """The bench lifts batch size and caps so no synthetic request is refused as busy."""
    options = BenchOptions(concurrency=16, requests=32)
    config, _ = bench_config(
        Config(inference=InferenceConfig(max_batch_size=4, max_queued_total=8)),
        options,
        random_weights=None,
        load_4bit=False,
    )
    assert config.inference.max_batch_size == 16
    assert config.inference.max_queued_total >= 32 + 16
    assert config.inference.max_queued_per_user >= 32


@pytest.mark.timeout(300)
def test_random_weights_json_on_the_command_line() -> None:
    """--random-weights builds a LLaMA-shaped model through the normal loading path; --json prints one object."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "bench", "--json", "--random-weights", "tiny", "--concurrency", "2",
         "--requests", "2", "--prompt-tokens", "8", "--max-new-tokens", "4"],
        capture_output=True, text=True, cwd=ROOT, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["environment"]["variant"] == "random-tiny"
    assert report["concurrent"]["tokens"] == 8
    assert "bench" in result.stderr  # the progress bar
