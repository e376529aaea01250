"""The compiled decode step: the same greedy output as eager, every bucket compiled before serving, and each
bucket eager again when its compile or its graph fails.

The graphs are traced by dynamo with its ``eager`` backend by default (the trace, the in-place cache writes,
the masks and the bucketing are ours to test; inductor's code generation costs minutes on a 2-core CPU), once
for the whole file: the failure tests put a stand-in for dynamo in front of those graphs, and the one test that
needs a fresh trace uses a tiny random LLaMA. ``AIROBOROS_BOT_TEST_COMPILE_BACKEND=inductor`` runs the same
tests through the real compiler.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bot.config import ModelConfig, parse_config
from bot.errors import ConfigError
from bot.inference import compiled as compiled_module
from bot.inference.batch import CACHE_ARGUMENT
from bot.inference.compiled import CompiledDecoder, batch_bucket, buckets, choose_decoder
from bot.inference.loading import LoadedModel
from bot.inference.slots import SlotCache
from bot.inference.worker import LocalBackend
from tests.inference._streams import finished, greedy_params, start

BACKEND = os.environ.get("AIROBOROS_BOT_TEST_COMPILE_BACKEND", "eager")
QUESTIONS = ["Say hi.", "List three colors, with a short note on each one of them.", "Tell me a joke."]
NEWCOMER = "What is 2+2?"
pytestmark = pytest.mark.timeout(600)  # the shared start-up traces the 30-layer model twice: minutes on a busy CPU
DYNAMO_GUARD_ERROR = "Unexpected type <class 'dict'>"
"""What dynamo raised (an AssertionError) guarding kernels' global for the batch-8 bucket (issue 20)."""


@dataclass
class Warmed:
    """A decoder as ``compile = true`` chose it, and the log lines its start-up wrote."""

    decoder: CompiledDecoder
    slots: SlotCache
    messages: list[str]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def untimed(step: Callable[[], object]) -> float:
    """The probe's timing cut to the one call that checks the step runs: compiled and eager tie, so kept."""
    step()
    return 0.0


def warm_up(loaded: Any, *, backend: str = BACKEND) -> tuple[CompiledDecoder | None, SlotCache, list[str]]:
    """``choose_decoder`` as ``compile = true`` runs it at start-up, keeping every bucket that compiles.

    Graphs traced with dynamo's eager backend are not meant to be faster than eager: the probe does not time them.
    """
    slots = SlotCache(8, int(loaded.model.config.num_hidden_layers), limit=2048)
    lines = _Lines()
    logger = logging.getLogger(compiled_module.__name__)
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compiled_module, "_median", untimed)
            chosen = choose_decoder(loaded, True, slots, CACHE_ARGUMENT, backend=backend)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return chosen, slots, lines.messages


@pytest.fixture(scope="module")
def warmed(embedded: LoadedModel) -> Warmed:
    """One compiled decoder for the whole file: every graph is traced once, at its start-up."""
    chosen, slots, messages = warm_up(embedded)
    assert chosen is not None, messages
    return Warmed(chosen, slots, messages)


@pytest.fixture
def decoder(warmed: Warmed) -> Iterator[CompiledDecoder]:
    """The shared decoder; no test may compile anything more with it."""
    compiles = warmed.decoder.compiles
    yield warmed.decoder
    assert warmed.decoder.compiles == compiles, "a graph was compiled after start-up"


async def started(embedded: LoadedModel, decoder: CompiledDecoder | None) -> LocalBackend:
    """A started worker whose decode steps go through ``decoder``."""
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded)
    await worker.start()
    worker.compiled = decoder
    return worker


@pytest.fixture
async def compiled_worker(embedded: LoadedModel, decoder: CompiledDecoder) -> AsyncIterator[LocalBackend]:
    """A started worker whose decode steps go through the shared decoder."""
    worker = await started(embedded, decoder)
    yield worker
    await worker.close()


def prefilled(embedded: LoadedModel, rows: int, length: int) -> SlotCache:
    """A slot cache of 8 rows holding ``rows`` sequences of ``length`` tokens (prefilled eagerly)."""
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    positions = list(slots.open(rows))
    ids = torch.full((rows, length), 17)
    with torch.inference_mode():
        embedded.model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=torch.arange(length).expand(rows, -1),
            use_cache=True,
            **{CACHE_ARGUMENT: slots.cache_for(positions, length)},
        )
    slots.extend(positions, [length] * rows)
    return slots


def test_batch_bucket_pads_to_powers_of_two_within_the_storage() -> None:
    """Live rows are padded to 1, 2, 4, 8, ... but never past the storage's rows."""
    assert [batch_bucket(n, 8) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert [batch_bucket(n, 6) for n in (3, 5, 6)] == [4, 6, 6]
    assert buckets(8) == [1, 2, 4, 8]
    assert buckets(6) == [1, 2, 4, 6]


def test_compile_true_compiles_every_bucket_before_serving_with_a_line_each(warmed: Warmed) -> None:
    """Start-up compiles buckets 1, 2, 4 and 8 (few graphs), logs each with its time, and leaves the cache empty."""
    assert warmed.decoder.ready == {1, 2, 4, 8}
    assert warmed.decoder.eager == {}
    assert warmed.decoder.failed is None
    assert 1 <= warmed.decoder.compiles <= 4
    for rows in (1, 2, 4, 8):
        (line,) = [m for m in warmed.messages if m.startswith(f"Decode step, batch bucket {rows}: compiled in ")]
        assert line.endswith(": compiled")
    assert len(warmed.slots) == 0


async def test_greedy_batch_with_a_newcomer_equals_eager(compiled_worker, decoder, prompt_for, greedy):
    """Three prompts of different lengths and one joining mid-run decode exactly as transformers' generate()."""
    steps = decoder.steps
    prompts = [prompt_for(q) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) == 3
    runs = [start(compiled_worker, p, greedy_params(20)) for p in prompts]
    await runs[0][0].reached(3)
    _, late_task = start(compiled_worker, prompt_for(NEWCOMER), greedy_params(20))
    streams = await finished(*(task for _, task in runs), late_task)

    for prompt, stream in zip([*prompts, prompt_for(NEWCOMER)], streams, strict=True):
        assert stream.matches(greedy(prompt, 20)), stream.text
    assert decoder.steps >= steps + 19  # every decode step went through a graph
    assert decoder.ready == {1, 2, 4, 8}


def test_graphs_serve_every_batch_size_and_block_without_compiling(embedded, decoder: CompiledDecoder) -> None:
    """Batch sizes 1 to 8 at lengths in two KV blocks all run through the start-up graphs."""
    steps = decoder.steps
    for rows in range(1, 9):
        slots = prefilled(embedded, rows, 8)
        slots.extend(range(rows), [247] * rows)  # pretend 255 tokens (zeros): only the shapes matter here
        for width in (256, 512):  # the second step needs column 256: the storage grows to the second block
            with torch.inference_mode():
                logits = decoder.step(slots, list(range(rows)), [1] * rows)
            slots.extend(range(rows), [1] * rows)
            assert logits is not None and logits.shape[0] == rows
            assert slots.storage[0].shape[2] == width

    assert decoder.steps == steps + 16
    assert decoder.ready == {1, 2, 4, 8}


def test_scattered_rows_take_the_eager_path(embedded: LoadedModel, decoder: CompiledDecoder) -> None:
    """Rows that are not a plain prefix of the storage are left to the eager step (None)."""
    slots = prefilled(embedded, 2, 4)
    with torch.inference_mode():
        assert decoder.step(slots, [1, 0], [1, 1]) is None


def failing_at_eight(shared: CompiledDecoder, where: str) -> Callable[..., Any]:
    """A stand-in for dynamo in front of ``shared``'s graphs whose batch-8 bucket fails ``where``.

    ``compiling``: its compile raises dynamo's AssertionError; ``running``: its graph raises; ``guards``: its
    graph's guards miss, so dynamo runs the step eagerly. Other buckets run ``shared``'s graphs.
    """

    def entries(function: Callable[..., torch.Tensor], backend: Callable[..., Any]) -> tuple[Any, Any]:
        def compiling(model, argument, tokens, *rest):
            if where == "compiling" and tokens.shape[0] == 8:
                raise AssertionError(DYNAMO_GUARD_ERROR)
            return shared._compiling(model, argument, tokens, *rest)

        def cached(model, argument, tokens, *rest):
            if where == "running" and tokens.shape[0] == 8:
                raise RuntimeError("the graph's kernel failed")
            if where == "guards" and tokens.shape[0] == 8:
                return function(model, argument, tokens, *rest)  # what dynamo runs when no graph's guards match
            return shared._cached(model, argument, tokens, *rest)

        return compiling, cached

    return entries


async def test_a_compile_failure_in_the_batch_eight_bucket_leaves_it_eager_at_full_width(
    embedded, decoder, prompt_for, greedy, *, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """Dynamo's AssertionError compiling bucket 8 makes that bucket alone eager, one line; replies equal eager's."""
    monkeypatch.setattr(compiled_module, "_dynamo_entries", failing_at_eight(decoder, "compiling"))
    with caplog.at_level(logging.INFO, logger=compiled_module.__name__):
        failing, _, messages = warm_up(embedded)
        assert failing is not None
        widths: list[int] = []
        step = failing.step

        def counted(slots: SlotCache, positions: list[int], tokens: list[int]) -> torch.Tensor | None:
            widths.append(len(positions))
            return step(slots, positions, tokens)

        monkeypatch.setattr(failing, "step", counted)
        worker = await started(embedded, failing)
        try:
            prompts = [prompt_for(q) for q in [*QUESTIONS, NEWCOMER] * 2]
            streams = await finished(*(task for _, task in (start(worker, p, greedy_params(8)) for p in prompts)))
        finally:
            await worker.close()

    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 8)), stream.text
    assert widths.count(8) >= 5  # the batch ran at its full width: no request waited for another
    assert failing.ready == {1, 2, 4}
    assert failing.eager == {8: f"AssertionError: {DYNAMO_GUARD_ERROR}"}
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "batch bucket 8" in warning and DYNAMO_GUARD_ERROR in warning
    assert any(m.startswith("Compiled decode step") and "eager for 8" in m for m in messages)


@pytest.mark.parametrize(("where", "why"), [("running", "the graph's kernel failed"), ("guards", "guards")])
def test_a_failing_graph_while_serving_turns_its_bucket_eager(
    embedded, decoder, *, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str, why: str
) -> None:
    """A batch-8 graph that raises, or whose guards miss, while serving: that step is eager, then the bucket."""
    monkeypatch.setattr(compiled_module, "_dynamo_entries", failing_at_eight(decoder, where))
    failing = CompiledDecoder(embedded.model, cache_argument=CACHE_ARGUMENT, backend=BACKEND)
    slots = prefilled(embedded, 8, 4)
    with torch.inference_mode():
        assert failing.compile(slots, range(8), [1] * 8)
        expected = embedded.model(
            input_ids=torch.ones((8, 1), dtype=torch.long),
            attention_mask=torch.ones((8, 5), dtype=torch.long),
            position_ids=torch.full((8, 1), 4),
            use_cache=True,
            **{CACHE_ARGUMENT: slots.cache_for(range(8), 1)},
        ).logits[:, -1, :]
        with caplog.at_level(logging.WARNING, logger=compiled_module.__name__):
            logits = failing.step(slots, range(8), [1] * 8)
            again = failing.step(slots, range(8), [1] * 8)

    if where == "running":
        assert logits is None  # the worker runs this step eagerly
    else:
        assert logits is not None and torch.allclose(logits, expected, atol=1e-4)  # dynamo ran it eagerly
    assert again is None and failing.ready == set() and why in failing.eager[8]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "batch bucket 8" in warning and why in warning


def tiny_llama() -> types.SimpleNamespace:
    """A 2-layer random LLaMA, loaded as the worker would see it (quick for dynamo to trace)."""
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, vocab_size=128
    )
    torch.manual_seed(0)
    return types.SimpleNamespace(model=LlamaForCausalLM(config).eval(), device=torch.device("cpu"))


def test_a_code_generator_failure_switches_the_compiled_step_off_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend that cannot compile (no C++ compiler) is tried once: the whole step stays eager, one warning."""

    def broken(name: str):
        def compile_graph(graph, inputs):
            raise RuntimeError("no C++ compiler here")

        return compile_graph

    monkeypatch.setattr(compiled_module, "_backend", broken)
    with caplog.at_level(logging.WARNING, logger=compiled_module.__name__):
        chosen, slots, messages = warm_up(tiny_llama())

    assert chosen is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RuntimeError: no C++ compiler here" in warnings[0], warnings
    assert "graphs for batch buckets none" in messages[-1]
    assert len(slots) == 0


def test_auto_stays_eager_on_the_cpu(embedded: LoadedModel) -> None:
    """``compile = "auto"`` on a CPU chooses the eager step without compiling anything."""
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    assert choose_decoder(embedded, "auto", slots, CACHE_ARGUMENT, backend=BACKEND) is None
    assert choose_decoder(embedded, False, slots, CACHE_ARGUMENT, backend=BACKEND) is None


@pytest.mark.parametrize(("preference", "kept"), [(True, {1, 2, 4}), ("auto", {1, 2})])
def test_each_bucket_keeps_its_graph_only_where_the_probe_found_it_faster(
    embedded: LoadedModel, monkeypatch: pytest.MonkeyPatch, preference: bool | str, kept: set[int]
) -> None:
    """Against a 30 ms eager step: ``true`` keeps every bucket no slower, ``auto`` (CUDA) those 10% faster."""
    compiled_ms = {1: 10.0, 2: 20.0, 4: 29.0, 8: 31.0}

    def probe(decoder: CompiledDecoder, loaded: Any, slots: SlotCache, rows: int) -> tuple[float, float]:
        decoder.ready.add(rows)
        return compiled_ms[rows] / 1000, 0.030

    monkeypatch.setattr(compiled_module, "_probe", probe)
    cuda = types.SimpleNamespace(model=embedded.model, device=torch.device("cuda"))
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    chosen = choose_decoder(cuda, preference, slots, CACHE_ARGUMENT)
    assert chosen is not None
    assert chosen.mode == "reduce-overhead"  # CUDA graphs on a GPU
    assert chosen.ready == kept
    assert set(chosen.eager) == {1, 2, 4, 8} - kept
    assert all(why.startswith("not faster here") for why in chosen.eager.values())


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (True, True), (False, False)])
def test_config_compile_accepts_auto_true_and_false(value: object, expected: object) -> None:
    """``[inference] compile`` takes "auto", true or false."""
    config = parse_config({"inference": {"compile": value}}, Path("config.toml"))
    assert config.inference.compile == expected


@pytest.mark.parametrize("value", ["yes", "fast", 1])
def test_config_compile_rejects_anything_else(value: object) -> None:
    """A value other than "auto", true or false is a config error naming the key."""
    with pytest.raises(ConfigError, match="compile"):
        parse_config({"inference": {"compile": value}}, Path("config.toml"))
