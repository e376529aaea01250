"""The running batch's KV cache: requests join and leave without copying it; out of memory there fails one request."""

from __future__ import annotations

import asyncio

import pytest
import torch

from bot.errors import GenerationError
from bot.inference.slots import SlotCache
from bot.inference.types import Prompt, SamplingParams
from bot.inference.worker import OUT_OF_MEMORY_STARTING
from tests.inference._streams import WAIT_S, finished, greedy_params, run, start

QUESTIONS = ["Say hi.", "List three colors.", "Tell me a joke."]
VICTIM = "Translate 'hello' to Spanish."
JOINERS = ["Say hi.", "Tell me a joke.", "What is 2+2?"]


class CudaOutOfMemory(RuntimeError):
    """What older torch raises on a GPU: a plain RuntimeError that says so."""

    def __init__(self, *args: object) -> None:
        super().__init__("CUDA out of memory. Tried to allocate 2.00 GiB")


async def assert_out_of_memory_starting(task: asyncio.Task) -> None:
    with pytest.raises(GenerationError) as failure:
        async with asyncio.timeout(WAIT_S):
            await task
    assert str(failure.value) == OUT_OF_MEMORY_STARTING


def long_prompt(prompt_for, words: int) -> Prompt:
    """A prompt well past the first KV block (256 tokens)."""
    return prompt_for("Summarize: " + "the cat sat on the mat " * (words // 6))


async def idle(worker) -> None:
    """Wait until the worker has dropped its last row (it publishes a reply's end just before)."""
    async with asyncio.timeout(WAIT_S):
        while len(worker.kv):  # noqa: ASYNC110 (the worker thread has no event to signal with)
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "error", [MemoryError, torch.OutOfMemoryError, CudaOutOfMemory], ids=["MemoryError", "torch-OOM", "RuntimeError"]
)
async def test_out_of_memory_joining_the_batch_fails_that_request_alone(seam_backend, prompt_for, greedy, error):
    """A newcomer whose prefill runs out of memory fails with a clear message; the running rows finish exactly."""
    prompts = [prompt_for(q) for q in QUESTIONS[:2]]
    victim = prompt_for(VICTIM)
    marker = next(t for t in victim.token_ids if all(t not in p.token_ids for p in prompts))
    worker, _ = await seam_backend(fail_on=marker, during="prefill", error=error)
    runs = [start(worker, p, greedy_params(24)) for p in prompts]
    await runs[0][0].reached(2)

    _, bad = start(worker, victim, greedy_params(8))
    await assert_out_of_memory_starting(bad)
    streams = await finished(*(task for _, task in runs))
    after = await run(worker, prompt_for(QUESTIONS[2]), greedy_params(8))

    for prompt, stream in zip(prompts, streams, strict=True):
        assert stream.matches(greedy(prompt, 24)), stream.text
    assert after.matches(greedy(prompt_for(QUESTIONS[2]), 8))


async def test_allocation_failing_when_a_long_newcomer_grows_the_cache_fails_only_it(backend, prompt_for, greedy):
    """Growing the KV storage for a long newcomer runs out of memory: it fails alone, the running row goes on."""
    real = backend.kv._allocate

    def allocate(shape, like):
        if shape[2] > 256:
            raise MemoryError("injected")
        return real(shape, like)

    backend.kv._allocate = allocate
    prompt = prompt_for(QUESTIONS[0])
    running, running_task = start(backend, prompt, greedy_params(24))
    await running.reached(2)

    _, bad = start(backend, long_prompt(prompt_for, 400), greedy_params(4))
    await assert_out_of_memory_starting(bad)
    (running,) = await finished(running_task)

    assert running.matches(greedy(prompt, 24)), running.text


async def test_failed_move_when_a_row_leaves_loses_no_row(backend, prompt_for, greedy):
    """Out of memory while compacting the cache after a row finished: every other row still finishes exactly."""
    moves = []

    def move(source, target):
        moves.append((source, target))
        raise torch.OutOfMemoryError("injected")

    backend.kv._move = move
    prompts = [prompt_for(q) for q in QUESTIONS]
    lengths = [4, 24, 24]  # the first row leaves first, from the lowest storage row
    streams = await finished(*(start(backend, p, greedy_params(n))[1] for p, n in zip(prompts, lengths, strict=True)))

    assert moves  # the compaction was tried, failed, and the rows were read where they stayed
    for prompt, stream, n in zip(prompts, streams, lengths, strict=True):
        assert stream.matches(greedy(prompt, n)), stream.text
    await idle(backend)
    after = await run(backend, prompts[0], greedy_params(8))
    assert after.matches(greedy(prompts[0], 8))


async def test_joining_and_leaving_reuse_the_same_storage(backend, prompt_for, greedy):
    """Late joiners are written into the storage the batch already has (same tensors), and outputs stay exact."""
    pacer_prompt = prompt_for("List three colors.")  # long enough to outlast every joiner
    pacer, pacer_task = start(backend, pacer_prompt, SamplingParams(max_new_tokens=64, temperature=0, ignore_eos=True))
    await pacer.reached(1)
    storage = [t.data_ptr() for t in backend.kv.storage]
    allocations = backend.kv.allocations

    joiners = []
    for question in JOINERS:  # one by one: each is merged into the running batch, and leaves before the pacer
        stream, task = start(backend, prompt_for(question), greedy_params(4))
        await stream.reached(1)
        joiners.append(task)
    await finished(*joiners)
    running = not pacer.done
    same = [t.data_ptr() for t in backend.kv.storage] == storage
    (pacer,) = await finished(pacer_task)

    assert running
    assert same
    assert backend.kv.allocations == allocations == 2 * embedded_layers(backend)
    assert pacer.text.startswith(greedy(pacer_prompt, 24).text), pacer.text
    for question, task in zip(JOINERS, joiners, strict=True):
        assert task.result().matches(greedy(prompt_for(question), 4)), task.result().text


def embedded_layers(backend) -> int:
    return int(backend.loaded.model.config.num_hidden_layers)


async def test_an_idle_worker_holds_no_kv_storage(backend, prompt_for):
    """Once the last reply ends, the KV storage is freed (it is made again for the next batch)."""
    await run(backend, prompt_for(QUESTIONS[0]), greedy_params(4))
    await idle(backend)

    assert backend.kv.storage == []


def write(kv: SlotCache, positions: list[int], tokens: int, fill: list[float]) -> None:
    """One fake forward pass over ``positions``: layer 0 gets ``tokens`` key/value columns of ``fill[i]`` per row."""
    cache = kv.cache_for(positions, tokens)
    new = torch.tensor(fill)[:, None, None, None].expand(len(positions), 1, tokens, 2).contiguous()
    cache.layers[0].update(new, new)
    kv.extend(positions, [tokens] * len(positions))


def read(kv: SlotCache, positions: list[int]) -> list[float]:
    """The first key of each row at ``positions``, as the next pass over them would see it."""
    cache = kv.cache_for(positions, 1)
    keys, _ = cache.layers[0].update(torch.zeros(len(positions), 1, 1, 2), torch.zeros(len(positions), 1, 1, 2))
    return keys[:, 0, 0, 0].tolist()


def test_leaving_rows_are_refilled_from_the_top_and_order_is_reported():
    """Dropping rows moves the highest live rows into the holes and returns the kept rows' new order."""
    kv = SlotCache(4, 1, limit=64, block=16)
    write(kv, list(kv.open(4)), 3, [10.0, 11.0, 12.0, 13.0])

    order = kv.keep([1, 3])

    assert kv.contiguous
    assert order == [3, 1]  # row 3 moved into storage row 0, the hole row 0 left
    assert read(kv, [0, 1]) == [13.0, 11.0]


def test_newcomers_take_free_rows_without_touching_the_others():
    """Opening slots for newcomers keeps the running rows' storage and contents as they were."""
    kv = SlotCache(4, 1, limit=64, block=16)
    write(kv, list(kv.open(2)), 5, [1.0, 2.0])
    keys = kv.storage[0].data_ptr()

    write(kv, list(kv.open(2)), 3, [3.0, 4.0])

    assert kv.storage[0].data_ptr() == keys
    assert kv.allocations == 2
    assert read(kv, [0, 1, 2, 3]) == [1.0, 2.0, 3.0, 4.0]


def test_masked_columns_of_a_reused_row_are_zero():
    """A row reused after another sequence left holds zeros past its length (masked garbage could be NaN)."""
    kv = SlotCache(2, 1, limit=64, block=16)
    write(kv, list(kv.open(2)), 8, [1.0, float("nan")])
    kv.keep([0])
    write(kv, list(kv.open(1)), 2, [5.0])

    assert torch.equal(kv.storage[0][1, 0, 2:8], torch.zeros(6, 2))


def test_growing_keeps_the_rows_and_their_lengths():
    """A pass past the capacity grows the storage by blocks, one tensor at a time, keeping what rows hold."""
    kv = SlotCache(2, 1, limit=64, block=16)
    write(kv, list(kv.open(2)), 10, [1.0, 2.0])
    kv._allocate = lambda shape, like: torch.full(shape, float("nan"))  # what fresh memory may hold
    write(kv, [0, 1], 10, [3.0, 4.0])

    assert kv.storage[0].shape[2] == 32
    assert kv.lengths == [20, 20]
    assert torch.equal(kv.storage[0][:, :, 20:], torch.zeros(2, 1, 12, 2))  # the new columns are masked: zeros
    assert read(kv, [0, 1]) == [1.0, 2.0]


def test_a_pass_past_the_context_is_refused():
    """A row that would need more columns than the model's context is refused before any write."""
    kv = SlotCache(1, 1, limit=16, block=16)
    write(kv, list(kv.open(1)), 16, [1.0])

    with pytest.raises(ValueError, match="at most 16"):
        kv.cache_for([0], 1)
