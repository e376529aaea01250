"""``python -m bot bench --history-tokens N``: the follow-up in a long thread, next to a fresh prompt."""

from __future__ import annotations

import pytest

from bot.__main__ import main
from bot.bench import BenchOptions, bench_config, run_bench
from bot.config import Config


@pytest.mark.timeout(300)
async def test_bench_reports_the_follow_up_next_to_a_fresh_prompt() -> None:
    """With --history-tokens the JSON has follow_up: the history length, both TTFTs and their ratio."""
    options = BenchOptions(concurrency=1, requests=1, prompt_tokens=16, max_new_tokens=2, history_tokens=200)
    config, variant = bench_config(Config(), options, random_weights=None, load_4bit=False)

    result = await run_bench(config, options, variant_name=variant)

    follow_up = result["follow_up"]
    assert follow_up["history_tokens"] == 200
    assert follow_up["ttft_s"] > 0 and follow_up["fresh_ttft_s"] > 0
    assert follow_up["ratio"] == pytest.approx(follow_up["ttft_s"] / follow_up["fresh_ttft_s"], abs=0.02)


def test_non_positive_history_tokens_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--history-tokens 0 is a clear command-line error before anything loads."""
    assert main(["bench", "--history-tokens", "0"]) == 2
    assert "--history-tokens must be a positive number" in capsys.readouterr().err
