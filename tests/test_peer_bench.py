"""The pure parts of ``scripts/peer-bench``: figures, medians, spreads, ratios, the generated config (no servers)."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bot.config import load_config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "peer-bench"


def _load_script() -> ModuleType:
    """The script as a module (it has no ``.py`` suffix, so it is loaded by path)."""
    loader = SourceFileLoader("peer_bench", str(SCRIPT))
    spec = importlib.util.spec_from_loader("peer_bench", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_bench"] = module  # dataclasses look their module up while the class is made
    loader.exec_module(module)
    return module


peer = _load_script()


def _result(stream: float, aggregate: float, ttft: float, spread: dict[str, Any] | None = None) -> dict[str, Any]:
    """A bench result with just the figures the script reads."""
    result: dict[str, Any] = {
        "concurrent": {"stream_tokens_per_s_p50": stream, "aggregate_tokens_per_s": aggregate, "ttft_p50_s": ttft}
    }
    if spread is not None:
        result["spread"] = spread
    return result


def test_stat_over_runs_is_median_min_max() -> None:
    """Without bench's own spread, the runs give the median and the range."""
    runs = [_result(0, 30.0, 0), _result(0, 10.0, 0), _result(0, 20.0, 0)]
    assert peer.stat_of(runs, "concurrent.aggregate_tokens_per_s") == peer.Stat(20.0, 10.0, 30.0)


def test_stat_uses_bench_spread() -> None:
    """One result from ``bench --repeat`` carries the median and its spread under the dotted path."""
    spread = {"concurrent.aggregate_tokens_per_s": {"min": 90.0, "max": 110.0}}
    result = _result(0, 100.0, 0, spread)
    assert peer.stat_of([result], "concurrent.aggregate_tokens_per_s") == peer.Stat(100.0, 90.0, 110.0)


def test_ratio_spans_the_widest_range() -> None:
    """local / peer: the median ratio, from local's low over the peer's high to local's high over the peer's low."""
    value = peer.ratio(peer.Stat(20.0, 10.0, 30.0), peer.Stat(10.0, 5.0, 20.0))
    assert value == peer.Stat(2.0, 0.5, 6.0)


def test_ratio_against_zero_is_none() -> None:
    """A peer that measured nothing gives no ratio rather than a division by zero."""
    assert peer.ratio(peer.Stat(1.0, 1.0, 1.0), peer.Stat(0.0, 0.0, 0.0)) is None


def test_summarize_gives_ratios_for_each_peer() -> None:
    """Every figure of every target, and local / llama.cpp and local / serve."""
    results = {
        "local": {"single": [_result(25.0, 0, 0.1)], "concurrent": [_result(0, 100.0, 0.3)]},
        "llamacpp": {"single": [_result(100.0, 0, 0.2)], "concurrent": [_result(0, 50.0, 0.6)]},
        "serve": {"single": [_result(10.0, 0, 0.5)], "concurrent": [_result(0, 20.0, 3.0)]},
    }
    summary = peer.summarize(results)
    ratios = summary["ratios"]
    assert ratios["single-stream tok/s (stream p50, 1 at a time)"]["local/llamacpp"]["median"] == 0.25
    assert ratios["aggregate tok/s, 8 concurrent"]["local/serve"]["median"] == 5.0
    assert ratios["TTFT p50 s, 8 arriving at once"]["local/llamacpp"]["median"] == 0.5
    assert ratios["TTFT p50 s, lone request"]["local/serve"]["median"] == pytest.approx(0.2)


def test_summarize_without_local_has_no_ratios() -> None:
    """A run with only the peers (``--only llamacpp``) reports their figures and no ratio."""
    summary = peer.summarize({"llamacpp": {"single": [_result(100.0, 0, 0.2)], "concurrent": [_result(0, 50, 0.6)]}})
    assert summary["ratios"] == {}
    assert summary["figures"]["aggregate tok/s, 8 concurrent"]["llamacpp"]["median"] == 50


def test_table_shows_medians_ranges_and_ratios() -> None:
    """A Markdown table: one column per target, then the ratios, each median with its min-max."""
    results = {
        "local": {"single": [_result(20.0, 0, 0.1), _result(30.0, 0, 0.1)], "concurrent": [_result(0, 100.0, 0.3)]},
        "llamacpp": {"single": [_result(100.0, 0, 0.2)], "concurrent": [_result(0, 50.0, 0.6)]},
    }
    text = peer.table(peer.summarize(results))
    assert text.splitlines()[0] == "| figure | local worker | llama.cpp server | local/llamacpp |"
    assert "| single-stream tok/s (stream p50, 1 at a time) | 25.0 (20.0-30.0) | 100.0 | 0.25 (0.2-0.3)x |" in text


def test_targets_met_against_llama_cpp() -> None:
    """Issue 12's targets: single stream at least half, aggregate at least equal, TTFT ahead."""
    results = {
        "local": {"single": [_result(40.0, 0, 0.1)], "concurrent": [_result(0, 90.0, 0.3)]},
        "llamacpp": {"single": [_result(100.0, 0, 0.2)], "concurrent": [_result(0, 100.0, 0.6)]},
    }
    lines = peer.targets_met(peer.summarize(results))
    assert lines[0] == "local single stream at least half of llama.cpp's: NOT met (0.40x)"
    assert lines[1] == "local aggregate at 8 concurrent at least llama.cpp's: NOT met (0.90x)"
    assert lines[2].endswith(": met (0.50x)")


def test_remote_config_is_a_valid_bot_config(tmp_path: Path) -> None:
    """The generated file loads as the bot's config: one openai variant with the server and the tokenizer."""
    folder = tmp_path / 'model "x" \\ y'
    path = tmp_path / "peer.toml"
    path.write_text(
        peer.remote_config("llamacpp", "http://127.0.0.1:8080/v1", "smollm2", str(folder), send_token_ids=True)
    )
    variant = load_config(path).default_model
    assert (variant.name, variant.backend, variant.base_url) == ("llamacpp", "openai", "http://127.0.0.1:8080/v1")
    assert (variant.tokenizer, variant.send_token_ids) == (str(folder), True)


def test_remote_config_text_only() -> None:
    """``send_token_ids = false`` for transformers serve, which refuses token ids."""
    text = peer.remote_config("serve", "http://127.0.0.1:1/v1", "/m", "/m", send_token_ids=False)
    assert tomllib.loads(text)["models"][0]["send_token_ids"] is False


def test_bench_command_passes_repeat_only_when_known() -> None:
    """``--repeat N`` goes to bench only when bench takes it; the load and the config always do."""
    load = peer.Load("concurrent", 8, 8, 1)
    with_repeat = peer.bench_command("py", load, prompt_tokens=128, max_new_tokens=64, repeat=3, config=Path("c.toml"))
    assert with_repeat[:5] == ["py", "-m", "bot", "bench", "--json"]
    assert with_repeat[with_repeat.index("--repeat") + 1] == "3"
    assert with_repeat[with_repeat.index("--concurrency") + 1] == "8"
    assert with_repeat[-2:] == ["--config", "c.toml"]
    without = peer.bench_command("py", load, prompt_tokens=128, max_new_tokens=64, repeat=None, config=None)
    assert "--repeat" not in without
    assert "--config" not in without


def test_llama_server_command_turns_the_prompt_cache_off() -> None:
    """8 slots, 2 threads, room in the shared KV cache for every slot, no prompt cache of either kind."""
    context = peer.context_for(8, 128, 64)
    assert context >= 8 * (128 + 64)
    command = peer.llama_server_command(
        Path("/b/llama-server"), Path("/m.gguf"), 9000, slots=8, threads=2, context=context
    )
    assert command[command.index("-np") + 1] == "8"
    assert command[command.index("-t") + 1] == "2"
    assert command[command.index("-c") + 1] == str(context)
    assert "--no-cache-prompt" in command
    assert command[command.index("--cache-ram") + 1] == "0"


def _phase(tokens: int, requests: int = 8) -> dict[str, Any]:
    return {"concurrent": {"tokens": tokens, "requests": requests}}


def test_caveat_for_replies_that_ended_early() -> None:
    """A target whose replies stopped short of ``max_new_tokens`` carried a lighter load: said so."""
    results = {"local": {"concurrent": [_phase(512)]}, "serve": {"concurrent": [_phase(512), _phase(300)]}}
    assert peer.caveats(results, 64, text_prompts=True) == [
        "serve concurrent: replies ended early (300 tokens in a phase that asked for 512)"
    ]


def test_caveat_for_placeholder_text_prompts() -> None:
    """With a bench whose prompts are placeholder text, transformers serve's load is marked as not the same."""
    results = {"serve": {"concurrent": [_phase(512)]}}
    assert peer.caveats(results, 64, text_prompts=False) == [
        "serve: this bench sends text-only servers a short placeholder text, not the ~128-token prompt"
    ]
