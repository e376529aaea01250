"""``python -m bot bench``: what Discord users feel when many people talk at once.

It drives the real scheduler and worker (not the model directly) with synthetic
conversations of a fixed prompt length, each producing exactly ``max_new_tokens``
(EOS is ignored), and reports one JSON object:

- ``lone``: requests sent one by one to an idle worker: a lone request's time to first token;
- ``concurrent``: the requests ``concurrency`` at a time: time to first token p50/p95,
  per-stream tokens/s p50, aggregate tokens/s;
- ``baseline``: the same requests one at a time, and ``speedup`` = aggregate / baseline;
- ``late_joiner``: the time to first token of a request arriving while ``concurrency - 1``
  others are mid-generation, next to the lone request's (it should join the running batch)
  and to the time the running batch still needed to finish (``batch_remaining_s``);
- ``memory``: peak process RSS, and peak GPU memory on a GPU, over the whole run;
- ``load_average`` at start, ``repeat``, and ``spread``: with ``repeat`` > 1 the whole
  measurement runs that many times on the same loaded model, every figure above is the
  median of the runs and ``spread`` holds each figure's ``min`` and ``max`` (keyed by its
  dotted path, e.g. ``concurrent.aggregate_tokens_per_s``).

The synthetic prompts are text that tokenizes to the requested length, and their token
ids are that text's, so a remote server sent text (``send_token_ids = false``) carries the
same load as one sent ids. Every request in a run has a prompt of its own, so no prefix
cache makes a later phase look faster than an earlier one.

- ``follow_up`` (with ``--history-tokens N``): the time to first token of a follow-up in a thread with N tokens
  of history whose KV cache the worker kept, next to a fresh ``prompt_tokens`` prompt's (see :func:`follow_up`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from tqdm import tqdm

from bot.config import Config, cache_path
from bot.core.engine import Engine, Variant
from bot.inference.types import Prompt, SamplingParams

SEED_TEXT = (
    "The quick brown fox jumps over the lazy dog while the farmer counts his sheep and the "
    "children sing songs about rivers, mountains, stars and the long road home. "
)
BUSY_LOAD_PER_CPU = 0.5
"""A 1-minute load average above this many per CPU before starting makes the bench warn: figures would be low."""


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
    repeat: int = 1
    """How many times the whole measurement runs; each figure is then the median, with its min-max in ``spread``."""
    lone_requests: int = 3
    """How many requests the ``lone`` phase sends, one by one, to the idle worker."""
    history_tokens: int | None = None
    """Measure a follow-up in a thread with this many tokens of history (:func:`follow_up`)."""


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


class TextTokenizer(Protocol):
    """What building synthetic text needs from a tokenizer (:class:`~bot.inference.tokenizer.HFTokenizer` has it)."""

    def encode_plain(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def text_of_length(tokenizer: TextTokenizer, source: str, length: int) -> str:
    """A prefix of ``source`` (as text) that tokenizes to ``length`` tokens, or ±1 where none does exactly.

    The first ``length`` ids of ``source`` are decoded; re-encoding that text may give a different
    count (a word cut in two, a sentencepiece tokenizer's lost leading space), so the cut moves by
    the difference until the count is right.
    """
    ids = tokenizer.encode_plain(source)
    if len(ids) < length:
        raise ValueError(f"the source text has {len(ids)} tokens, fewer than {length}")
    best: tuple[int, str] | None = None
    take = length
    for _ in range(8):
        text = tokenizer.decode(ids[:take])
        miss = length - len(tokenizer.encode_plain(text))
        if best is None or abs(miss) < best[0]:
            best = (abs(miss), text)
        if miss == 0:
            break
        take = max(1, min(len(ids), take + miss))
    assert best is not None
    return best[1]


def _source_text(index: int, words: int) -> str:
    """Ordinary words in an order of their own for request ``index``: common tokens, no shared prefix."""
    pool = SEED_TEXT.split()
    order = random.Random(index)
    chosen = [f"Request {index}:"]
    while len(chosen) < words:
        order.shuffle(pool)
        chosen += pool
    return " ".join(chosen)


def synthetic_prompts(variant: Variant, count: int, length: int, vocab: int | None, *, first: int = 0) -> list[Prompt]:
    """``count`` distinct prompts (numbered from ``first``) whose text tokenizes to ``length`` tokens (±1).

    The token ids are the text's own, so the local worker and a server sent the text see the same
    load; with ``vocab`` (a random-weight model smaller than the tokenizer) ids past it wrap around.
    """
    tokenizer = cast(TextTokenizer, variant.builder.tokenizer)
    prompts = []
    for index in range(first, first + count):
        # Every word is at least one token: length + 1 words always hold enough.
        text = text_of_length(tokenizer, _source_text(index, length + 1), length)
        ids = tokenizer.encode_plain(text)
        if vocab is not None:
            ids = [i if i < vocab else i % vocab for i in ids]
        prompts.append(Prompt(text, tuple(ids), ()))
    return prompts


class _PromptSupply:
    """Hands out fresh synthetic prompts: no two requests of a run share one."""

    def __init__(self, variant: Variant, length: int, vocab: int | None) -> None:
        self._variant, self._length, self._vocab = variant, length, vocab
        self._next = 0

    def take(self, count: int) -> list[Prompt]:
        prompts = synthetic_prompts(self._variant, count, self._length, self._vocab, first=self._next)
        self._next += count
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
    variant: Variant, options: BenchOptions, supply: _PromptSupply, params: SamplingParams, progress: tqdm[Any]
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


def _numbers(values: list[Any]) -> list[float] | None:
    """``values`` if every one is a number (a figure), else ``None``."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' figures in the shape of one run, each the median over the runs."""

    def median(values: list[Any]) -> Any:
        if all(isinstance(v, dict) for v in values):
            return {key: median([v.get(key) for v in values]) for key in values[0]}
        numbers = _numbers(values)
        if numbers is None or not numbers:
            return values[0]  # not a figure (or missing in a run, like a ratio with no lone TTFT)
        if min(numbers) == max(numbers):
            return values[0]  # counts stay integers
        return round(statistics.median(numbers), 4)

    return cast(dict[str, Any], median(runs))


def spread_of(runs: list[dict[str, Any]], prefix: str = "") -> dict[str, dict[str, float]]:
    """``{figure: {"min": .., "max": ..}}`` over the runs, each figure named by its dotted path."""
    spread: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        if all(isinstance(v, dict) for v in values):
            spread.update(spread_of(cast(list[dict[str, Any]], values), f"{prefix}{key}."))
        elif (numbers := _numbers(values)) is not None:
            spread[prefix + key] = {"min": min(numbers), "max": max(numbers)}
    return spread


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
        supply = _PromptSupply(variant, options.prompt_tokens, vocab)
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


def print_result(result: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object (``--json``), or a short human summary followed by it."""
    if not as_json:

        def figure(name: str) -> str:
            """The median of a dotted-path figure, and with ``--repeat`` the runs' range after it."""
            value: Any = result
            for key in name.split("."):
                value = value[key]
            low_high = result["spread"].get(name)
            if result["repeat"] == 1 or low_high is None:
                return str(value)
            return f"{value} ({low_high['min']}-{low_high['max']})"

        print(
            f"{result['environment']['device']}, median of {result['repeat']}: "
            f"{figure('concurrent.aggregate_tokens_per_s')} tok/s aggregate at "
            f"{result['options']['concurrency']} concurrent vs {figure('baseline.aggregate_tokens_per_s')} one at "
            f"a time (speed-up {figure('speedup')}); TTFT p50 {figure('concurrent.ttft_p50_s')} s, "
            f"p95 {figure('concurrent.ttft_p95_s')} s; late joiner {figure('late_joiner.ttft_s')} s vs lone "
            f"{figure('lone.ttft_p50_s')} s; peak RSS {result['memory']['peak_rss_mb']} MB",
            file=sys.stderr,
        )
    print(json.dumps(result, indent=None if as_json else 2))
