"""Running the bench: the config it runs with, the phases it drives through the real scheduler, where it ran."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bot.config import Config, cache_path
from bot.core.engine import Engine, Variant
from bot.inference.types import Prompt, SamplingParams

from ._figures import Phase, Timing, median_figures, spread_of
from ._prompts import SEED_TEXT, PromptSupply

BUSY_LOAD_PER_CPU = 0.5
"""A 1-minute load average above this many per CPU before starting makes the bench warn: figures would be low."""


@dataclass
class BenchOptions:
    concurrency: int = 8
    requests: int = 8
    prompt_tokens: int = 128
    max_new_tokens: int = 64
    baseline_requests: int | None = None
    """How many of the requests the one-at-a-time baseline runs (default: all)."""
    repeat: int = 1
    """How many times the whole measurement runs; each figure is then the median, with its min-max in ``spread``."""
    lone_requests: int = 3
    """How many requests the ``lone`` phase sends, one by one, to the idle worker."""
    history_tokens: int | None = None
    """Measure a follow-up in a thread with this many tokens of history (:func:`follow_up`)."""


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


@dataclass
class LateJoin:
    """A request arriving while others are mid-generation."""

    ttft: float
    batch_remaining: float
    """From the joiner's arrival until the last of the others finished."""


async def _late_joiner(
    variant: Variant, others: list[Prompt], joiner: Prompt, params: SamplingParams, progress: tqdm[Any]
) -> LateJoin:
    """``joiner`` submitted once the ``others`` are a quarter into their replies."""
    started = [asyncio.Event() for _ in others]
    finished = [0.0 for _ in others]
    target = max(2, params.max_new_tokens // 4)

    async def background(index: int) -> None:
        async with variant.scheduler.submit(f"bg{index}", others[index], params) as ticket:
            async for chunk in ticket.stream():
                if chunk.completion_tokens >= target:
                    started[index].set()
        finished[index] = time.perf_counter()
        started[index].set()

    tasks = [asyncio.create_task(background(i)) for i in range(len(others))]
    await asyncio.gather(*(e.wait() for e in started))
    late = await _one(variant, "late", joiner, params, progress)
    await asyncio.gather(*tasks)
    return LateJoin(late.ttft, max(finished) - late.submitted)


FOLLOW_UP_ROUNDS = 3
"""Follow-ups (each in its own thread) and fresh prompts measured; the figures are their medians."""


async def follow_up(variant: Variant, options: BenchOptions) -> dict[str, Any]:
    """TTFT of a follow-up in a thread with ``history_tokens`` of history, next to a fresh prompt's.

    As in a real thread, the history was answered before: its prompt runs once (tagged with the thread's
    conversation key, so a local worker keeps its KV cache), then the history plus a short new user message is
    sent. The fresh prompt is ``prompt_tokens`` long and shares nothing with any thread. Each figure is the median
    of :data:`FOLLOW_UP_ROUNDS` rounds, each round in a new thread; ``ratio`` = follow-up / fresh.
    """
    assert options.history_tokens is not None
    tokenizer = variant.builder.tokenizer
    base = tokenizer.encode_plain(SEED_TEXT * (options.history_tokens // 10 + 2))
    question = tokenizer.encode_plain(" Now a short new question: what happened after that?")
    answer = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=0.0, ignore_eos=True)
    first_token = SamplingParams(max_new_tokens=2, temperature=0.0, ignore_eos=True)
    follow_ups, fresh = [], []
    with tqdm(total=3 * FOLLOW_UP_ROUNDS, desc="follow-up", unit="req", file=sys.stderr) as progress:
        for round_ in range(FOLLOW_UP_ROUNDS):
            key = f"bench-thread-{round_}"
            history = (tokenizer.encode_plain(f"Thread {round_} history: ") + base)[: options.history_tokens]
            earlier = Prompt(f"<thread {round_}: {len(history)} tokens>", tuple(history), (), conversation=key)
            await _one(variant, "thread", earlier, answer, progress)
            now = Prompt(f"<thread {round_}: follow-up>", tuple(history + question), (), conversation=key)
            follow_ups.append((await _one(variant, "thread", now, first_token, progress)).ttft)
            lone = (tokenizer.encode_plain(f"Fresh request {round_}: ") + base[7:])[: options.prompt_tokens]
            fresh_prompt = Prompt(f"<fresh {round_}: {len(lone)} tokens>", tuple(lone), ())
            fresh.append((await _one(variant, "fresh", fresh_prompt, first_token, progress)).ttft)
    ttft, fresh_ttft = statistics.median(follow_ups), statistics.median(fresh)
    return {
        "history_tokens": options.history_tokens,
        "ttft_s": round(ttft, 4),
        "fresh_ttft_s": round(fresh_ttft, 4),
        "ratio": round(ttft / fresh_ttft, 2) if fresh_ttft else None,
    }


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
        "cpus": cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "variant": variant.name,
        "load_4bit": variant.config.load_4bit,
        "backend": variant.config.backend,
        "max_batch_size": variant.backend.max_batch_size,
        "compiled_graphs": getattr(getattr(variant.backend, "compiled", None), "compiles", None),  # None: eager
        "compiled_buckets": sorted(getattr(getattr(variant.backend, "compiled", None), "ready", ())),
    }


def cpu_count() -> int:
    """The CPUs this process may run on (what a load average is compared with)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_warning(load: float, cpus: int) -> str | None:
    """The warning to print when the 1-minute ``load`` says other work competes for the ``cpus``."""
    if load <= BUSY_LOAD_PER_CPU * cpus:
        return None
    return (
        f"warning: the machine is busy (1-minute load average {load:.2f} on {cpus} CPUs); "
        "figures will be low and spread wide: measure on an idle machine"
    )


async def _measure(
    variant: Variant, options: BenchOptions, supply: PromptSupply, params: SamplingParams, progress: tqdm[Any]
) -> dict[str, Any]:
    """One whole measurement: every phase, with prompts no earlier request used."""
    baseline_count = min(options.baseline_requests or options.requests, options.requests)
    others = max(options.concurrency - 1, 1)
    lone = await _phase(variant, supply.take(options.lone_requests), params, 1, progress)
    baseline = await _phase(variant, supply.take(baseline_count), params, 1, progress)
    concurrent = await _phase(variant, supply.take(options.requests), params, options.concurrency, progress)
    late = await _late_joiner(variant, supply.take(others), supply.take(1)[0], params, progress)
    figures: dict[str, Any] = {
        "lone": lone.summary(),
        "concurrent": concurrent.summary(),
        "baseline": baseline.summary(),
    }
    lone_ttft = figures["lone"]["ttft_p50_s"]
    figures["late_joiner"] = {
        "ttft_s": round(late.ttft, 4),
        "lone_ttft_s": lone_ttft,
        "ratio": round(late.ttft / lone_ttft, 2) if lone_ttft else None,
        "batch_remaining_s": round(late.batch_remaining, 4),
    }
    base_rate = figures["baseline"]["aggregate_tokens_per_s"]
    aggregate = figures["concurrent"]["aggregate_tokens_per_s"]
    figures["speedup"] = round(aggregate / base_rate, 2) if base_rate else None
    return figures


async def run_bench(config: Config, options: BenchOptions, *, variant_name: str | None = None) -> dict[str, Any]:
    """Load the variant, warm up, run the whole measurement ``options.repeat`` times; the JSON-ready result."""
    load = os.getloadavg()
    if (warning := busy_warning(load[0], cpu_count())) is not None:
        print(warning, file=sys.stderr)
    engine = await Engine.start(config, names=[variant_name or config.default_model.name])
    try:
        variant = engine.variant(variant_name)
        loaded = getattr(variant.backend, "loaded", None)
        vocab = int(loaded.model.config.vocab_size) if loaded is not None else None
        supply = PromptSupply(variant, options.prompt_tokens, vocab)
        params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=0.0, ignore_eos=True)
        baseline_count = min(options.baseline_requests or options.requests, options.requests)
        per_run = options.lone_requests + baseline_count + options.requests + 1
        runs = []
        with tqdm(total=1 + options.repeat * per_run, desc="bench", unit="req", file=sys.stderr) as progress:
            # A whole reply, not a few tokens: kernels are picked per shape, and every cache length a lone
            # request reaches would otherwise be a first time in the first phase, and slow it.
            await _one(variant, "warmup", supply.take(1)[0], params, progress)
            for _ in range(options.repeat):
                runs.append(await _measure(variant, options, supply, params, progress))
        result: dict[str, Any] = {
            "options": asdict(options),
            "environment": _environment(engine, variant),
            "load_average": {"1min": round(load[0], 2), "5min": round(load[1], 2), "15min": round(load[2], 2)},
            "repeat": options.repeat,
            **median_figures(runs),
            "spread": spread_of(runs),
        }
        if options.history_tokens:
            result["follow_up"] = await follow_up(variant, options)
        result["memory"] = _memory(engine)
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
