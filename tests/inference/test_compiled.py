"""The compiled decode step: the same greedy output as eager, few graphs, eager again when the compiler fails.

The graphs are traced by dynamo with its ``eager`` backend by default (the trace, the in-place cache writes,
the masks and the bucketing are ours to test; inductor's code generation costs minutes on a 2-core CPU).
``AIROBOROS_BOT_TEST_COMPILE_BACKEND=inductor`` runs the same tests through the real compiler.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from bot.config import ModelConfig, parse_config
from bot.errors import ConfigError
from bot.inference import compiled as compiled_module
from bot.inference.batch import CACHE_ARGUMENT
from bot.inference.compiled import CompiledDecoder, batch_bucket, choose_decoder
from bot.inference.loading import LoadedModel
from bot.inference.slots import SlotCache
from bot.inference.worker import LocalBackend
from tests.inference._streams import finished, greedy_params, run, start

BACKEND = os.environ.get("AIROBOROS_BOT_TEST_COMPILE_BACKEND", "eager")
QUESTIONS = ["Say hi.", "List three colors, with a short note on each one of them.", "Tell me a joke."]
NEWCOMER = "What is 2+2?"


@pytest.fixture(scope="module")
def decoder(embedded: LoadedModel) -> CompiledDecoder:
    """One compiled decoder for the whole file (each graph is compiled once), chosen as ``compile = true`` does."""
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    chosen = choose_decoder(embedded, True, slots, CACHE_ARGUMENT, backend=BACKEND)
    assert chosen is not None
    chosen.background = False  # deterministic: a new bucket compiles in its step, not beside it
    return chosen


@pytest.fixture
async def compiled_worker(embedded: LoadedModel, decoder: CompiledDecoder) -> AsyncIterator[LocalBackend]:
    """A started worker whose decode steps go through ``decoder``."""
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded)
    await worker.start()
    worker.compiled = decoder
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


def test_compile_true_warms_up_bucket_one_and_leaves_the_cache_empty(decoder: CompiledDecoder) -> None:
    """The start-up probe compiles batch bucket 1 and hands the slot cache back empty."""
    assert 1 in decoder.ready
    assert decoder.failed is None


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
    assert decoder.steps >= steps + 19  # every decode step went through the graph
    assert decoder.failed is None


def test_graphs_stay_few_across_batch_sizes_and_blocks(embedded: LoadedModel, decoder: CompiledDecoder) -> None:
    """Batch sizes 1 to 8 at lengths in two KV blocks compile at most one graph per batch bucket."""
    for rows in range(1, 9):
        slots = prefilled(embedded, rows, 8)
        slots.extend(range(rows), [247] * rows)  # pretend 255 tokens (zeros): only the shapes matter here
        for width in (256, 512):  # the second step needs column 256: the storage grows to the second block
            with torch.inference_mode():
                logits = decoder.step(slots, list(range(rows)), [1] * rows)
            slots.extend(range(rows), [1] * rows)
            assert logits is not None and logits.shape[0] == rows
            assert slots.storage[0].shape[2] == width

    assert decoder.compiles <= len({batch_bucket(n, 8) for n in range(1, 9)})


def test_scattered_rows_take_the_eager_path(embedded: LoadedModel, decoder: CompiledDecoder) -> None:
    """Rows that are not a plain prefix of the storage are left to the eager step (None)."""
    slots = prefilled(embedded, 2, 4)
    with torch.inference_mode():
        assert decoder.step(slots, [1, 0], [1, 1]) is None


async def test_a_compiler_failure_decodes_eagerly_with_one_log_line(
    embedded, prompt_for, greedy, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """A backend that fails to compile switches the compiled step off; the reply is still exact."""

    def broken(name: str):
        def compile_graph(graph, inputs):
            raise RuntimeError("no C++ compiler here")

        return compile_graph

    monkeypatch.setattr(compiled_module, "_backend", broken)
    worker = LocalBackend(ModelConfig(name="smollm2"), loaded=embedded)
    await worker.start()
    worker.compiled = CompiledDecoder(embedded.model, cache_argument=CACHE_ARGUMENT, backend="eager", background=False)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.inference.compiled"):
            stream = await run(worker, prompt_for(NEWCOMER), greedy_params(6))
    finally:
        await worker.close()

    assert stream.matches(greedy(prompt_for(NEWCOMER), 6)), stream.text
    assert worker.compiled.failed is not None and "no C++ compiler here" in worker.compiled.failed
    assert [r.message for r in caplog.records if "decoding eagerly" in r.message] == [caplog.records[-1].message]


def test_auto_stays_eager_on_the_cpu(embedded: LoadedModel) -> None:
    """``compile = "auto"`` on a CPU chooses the eager step without compiling anything."""
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    assert choose_decoder(embedded, "auto", slots, CACHE_ARGUMENT, backend=BACKEND) is None
    assert choose_decoder(embedded, False, slots, CACHE_ARGUMENT, backend=BACKEND) is None


@pytest.mark.parametrize(("compiled_ms", "kept"), [(10.0, True), (29.0, False)])
def test_auto_on_cuda_keeps_the_compiled_step_only_if_faster(
    embedded: LoadedModel, monkeypatch: pytest.MonkeyPatch, compiled_ms: float, kept: bool
) -> None:
    """On CUDA, ``auto`` keeps the compiled step only when the probe measured it clearly faster (30 ms eager)."""
    monkeypatch.setattr(compiled_module, "_probe", lambda *args: (0.030, compiled_ms / 1000))
    cuda = types.SimpleNamespace(model=embedded.model, device=torch.device("cuda"))
    slots = SlotCache(8, int(embedded.model.config.num_hidden_layers), limit=embedded.context_length)
    chosen = choose_decoder(cuda, "auto", slots, CACHE_ARGUMENT)
    assert (chosen is not None) == kept
    if chosen is not None:
        assert chosen.mode == "reduce-overhead"  # CUDA graphs on a GPU


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
