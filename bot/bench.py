"""``python -m bot bench``: what Discord users feel when many people talk at once.

It drives the real scheduler and worker (not the model directly) with synthetic
conversations of a fixed prompt length, each producing exactly ``max_new_tokens``
(EOS is ignored), and reports one JSON object:

- ``concurrent``: the requests ``concurrency`` at a time: time to first token p50/p95,
  per-stream tokens/s p50, aggregate tokens/s;
- ``baseline``: the same requests one at a time, and ``speedup`` = aggregate / baseline;
- ``late_joiner``: the time to first token of a request arriving while ``concurrency - 1``
  others are mid-generation, next to a lone request's (it should join the running batch);
- ``memory``: peak process RSS, and peak GPU memory on a GPU.
"""

from __future__ import annotations

import asyncio
import json
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bot.config import Config, cache_path
from bot.core.engine import Engine, Variant
from bot.inference.types import Prompt, SamplingParams

SEED_TEXT = (
    "The quick brown fox jumps over the lazy dog while the farmer counts his sheep and the "
    "children sing songs about rivers, mountains, stars and the long road home. "
)


@dataclass
class Timing:
    """One request as a Discord user sees it."""

    submitted: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0

    @property
    def ttft(self) -> float:
        assert self.first is not None
        return self.first - self.submitted

    @property
    def stream_rate(self) -> float:
        """Tokens per second after the first one (what the reader sees scroll)."""
        assert self.first is not None and self.last is not None
        return (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 and self.last > self.first else 0.0


@dataclass
class BenchOptions:
    concurrency: int = 8
    requests: int = 8
    prompt_tokens: int = 128
    max_new_tokens: int = 64
    baseline_requests: int | None = None
    """How many of the requests the one-at-a-time baseline runs (default: all)."""


@dataclass
class Phase:
    timings: list[Timing] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict[str, float]:
        ttfts = sorted(t.ttft for t in self.timings)
        tokens = sum(t.tokens for t in self.timings)
        return {
            "requests": len(self.timings),
            "ttft_p50_s": round(_percentile(ttfts, 50), 4),
            "ttft_p95_s": round(_percentile(ttfts, 95), 4),
            "stream_tokens_per_s_p50": round(statistics.median(t.stream_rate for t in self.timings), 2),
            "aggregate_tokens_per_s": round(tokens / self.wall, 2) if self.wall else 0.0,
            "tokens": tokens,
            "wall_s": round(self.wall, 3),
        }


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    rank = (len(values) - 1) * percent / 100
    low, high = int(rank), min(int(rank) + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def synthetic_prompts(variant: Variant, count: int, length: int, vocab: int | None) -> list[Prompt]:
    """``count`` distinct prompts of exactly ``length`` token ids (each starts with its own number)."""
    tokenizer = variant.builder.tokenizer
    base = tokenizer.encode_plain(SEED_TEXT * (length // 10 + 2))
    prompts = []
    for index in range(count):
        ids = tokenizer.encode_plain(f"Request {index}: ") + base
        if vocab is not None:
            ids = [i if i < vocab else i % vocab for i in ids]
        ids = ids[:length]
        prompts.append(Prompt(f"<{length} synthetic tokens #{index}>", tuple(ids), ()))
    return prompts


async def _one(variant: Variant, user: str, prompt: Prompt, params: SamplingParams, progress: tqdm[Any]) -> Timing:
    timing = Timing(time.perf_counter())
    async with variant.scheduler.submit(user, prompt, params) as ticket:
        async for chunk in ticket.stream():
            now = time.perf_counter()
            if timing.first is None:
                timing.first = now
            timing.last = now
            timing.tokens = chunk.completion_tokens
    progress.update(1)
    return timing


async def _phase(
    variant: Variant, prompts: list[Prompt], params: SamplingParams, concurrency: int, progress: tqdm[Any]
) -> Phase:
    gate = asyncio.Semaphore(concurrency)

    async def gated(index: int, prompt: Prompt) -> Timing:
        async with gate:
            return await _one(variant, f"user{index}", prompt, params, progress)

    start = time.perf_counter()
    timings = await asyncio.gather(*(gated(i, p) for i, p in enumerate(prompts)))
    return Phase(list(timings), time.perf_counter() - start)


async def _late_joiner(
    variant: Variant, prompts: list[Prompt], params: SamplingParams, others: int, progress: tqdm[Any]
) -> float:
    """TTFT of one request submitted once ``others`` requests are a quarter into their replies."""
    started = [asyncio.Event() for _ in range(others)]
    target = max(2, params.max_new_tokens // 4)

    async def background(index: int) -> None:
        async with variant.scheduler.submit(f"bg{index}", prompts[index % len(prompts)], params) as ticket:
            async for chunk in ticket.stream():
                if chunk.completion_tokens >= target:
                    started[index].set()
        started[index].set()

    tasks = [asyncio.create_task(background(i)) for i in range(others)]
    await asyncio.gather(*(e.wait() for e in started))
    joiner = await _one(variant, "late", prompts[-1], params, progress)
    await asyncio.gather(*tasks)
    return joiner.ttft


def _memory(engine: Engine) -> dict[str, float]:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    memory = {"peak_rss_mb": round(peak_kb / 1024, 1)}
    import torch

    if torch.cuda.is_available():
        memory["peak_gpu_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        memory["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return memory


def _environment(engine: Engine, variant: Variant) -> dict[str, Any]:
    import torch
    import transformers

    device = "cpu"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    return {
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "variant": variant.name,
        "load_4bit": variant.config.load_4bit,
        "backend": variant.config.backend,
        "max_batch_size": variant.backend.max_batch_size,
        "compiled_graphs": getattr(getattr(variant.backend, "compiled", None), "compiles", None),  # None: eager
    }


async def run_bench(config: Config, options: BenchOptions, *, variant_name: str | None = None) -> dict[str, Any]:
    """Load the variant, warm up, run the phases; the JSON-ready result."""
    engine = await Engine.start(config, names=[variant_name or config.default_model.name])
    try:
        variant = engine.variant(variant_name)
        loaded = getattr(variant.backend, "loaded", None)
        vocab = int(loaded.model.config.vocab_size) if loaded is not None else None
        prompts = synthetic_prompts(variant, options.requests + 1, options.prompt_tokens, vocab)
        params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=0.0, ignore_eos=True)
        baseline_count = min(options.baseline_requests or options.requests, options.requests)
        total = 1 + baseline_count + options.requests + 1
        with tqdm(total=total, desc="bench", unit="req", file=sys.stderr) as progress:
            await _one(variant, "warmup", prompts[0], SamplingParams(max_new_tokens=4, ignore_eos=True), progress)
            baseline = await _phase(variant, prompts[:baseline_count], params, 1, progress)
            concurrent = await _phase(variant, prompts[: options.requests], params, options.concurrency, progress)
            late = await _late_joiner(variant, prompts, params, max(options.concurrency - 1, 1), progress)
        lone = baseline.summary()["ttft_p50_s"]
        result: dict[str, Any] = {
            "options": asdict(options),
            "environment": _environment(engine, variant),
            "concurrent": concurrent.summary(),
            "baseline": baseline.summary(),
            "late_joiner": {
                "ttft_s": round(late, 4),
                "lone_ttft_s": lone,
                "ratio": round(late / lone, 2) if lone else None,
            },
            "memory": _memory(engine),
        }
        base_rate = result["baseline"]["aggregate_tokens_per_s"]
        result["speedup"] = round(result["concurrent"]["aggregate_tokens_per_s"] / base_rate, 2) if base_rate else None
        return result
    finally:
        await engine.close()


def bench_config(
    config: Config,
    options: BenchOptions,
    *,
    random_weights: str | None,
    load_4bit: bool,
    tokenizer: Path | None = None,
) -> tuple[Config, str | None]:
    """The config to bench: room for every concurrent request plus the late joiner, no caps in the way."""
    inference = config.inference.model_copy(
        update={
            "max_batch_size": max(config.inference.max_batch_size, options.concurrency),
            "max_queued_per_user": max(config.inference.max_queued_per_user, options.requests + options.concurrency),
            "max_queued_total": max(config.inference.max_queued_total, options.requests + options.concurrency + 2),
        }
    )
    config = config.model_copy(update={"inference": inference})
    if random_weights is None:
        return config, None
    from bot.inference.random_model import random_weights_model

    variant = random_weights_model(
        random_weights, cache_path(config.inference.cache_dir), load_4bit=load_4bit, tokenizer=tokenizer
    )
    return config.model_copy(
        update={"models": [variant], "inference": inference.model_copy(update={"default_model": None})}
    ), variant.name


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object (``--json``), or a short human summary followed by it."""
    if not as_json:
        c, b, late = result["concurrent"], result["baseline"], result["late_joiner"]
        print(
            f"{result['environment']['device']}: {c['aggregate_tokens_per_s']} tok/s aggregate at "
            f"{result['options']['concurrency']} concurrent vs {b['aggregate_tokens_per_s']} one at a time "
            f"({result['speedup']}x); TTFT p50 {c['ttft_p50_s']} s, p95 {c['ttft_p95_s']} s; late joiner "
            f"{late['ttft_s']} s vs lone {late['lone_ttft_s']} s; peak RSS {result['memory']['peak_rss_mb']} MB",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=None if as_json else 2))
