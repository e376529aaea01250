"""The kept-prefix LRU on its own: matching, replacing, evicting under its byte budget."""

from __future__ import annotations

from typing import Any

import torch

from bot.inference.prefix import PrefixCache, PrefixEntry, common_prefix
from bot.inference.scheduler import Scheduler
from bot.inference.types import Prompt, SamplingParams
from tests.doubles import ScriptedBackend

TOKEN_BYTES = 2 * 4  # one layer, one head, head dim 1, keys and values, float32


def entry(ids: list[int], conversation: str | None = None) -> PrefixEntry:
    """An entry for ``ids`` whose tensors take ``TOKEN_BYTES`` per token."""
    kv = torch.zeros(1, 1, len(ids), 1)
    return PrefixEntry(tuple(ids), kv, kv.clone(), conversation)


def put(cache: PrefixCache, item: PrefixEntry) -> bool:
    """What the worker does with a finished reply's entry."""
    if not cache.make_room(item.token_ids, item.conversation, item.nbytes):
        return False
    cache.add(item)
    return True


def test_common_prefix_counts_shared_leading_ids() -> None:
    """The shared length is found whether one sequence extends the other or they part midway."""
    assert common_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix([1, 2, 3, 9, 5], [1, 2, 3, 4, 5]) == 3
    assert common_prefix([7], [1]) == 0
    assert common_prefix([], [1, 2]) == 0


def test_match_picks_the_entry_with_the_longest_shared_prefix() -> None:
    """Among several entries, a prompt matches the one it shares most leading tokens with, and how many."""
    cache = PrefixCache(10_000)
    short, long = entry([1, 2, 3], "a"), entry([1, 2, 3, 4, 5, 6], "b")
    put(cache, long)
    put(cache, short)

    assert cache.match([1, 2, 3, 4, 5, 7, 8]) == (long, 5)
    assert cache.match([9, 9]) == (None, 0)


def test_least_recently_used_entry_is_evicted_to_stay_under_budget() -> None:
    """A new entry that would pass the budget evicts the oldest entries first, and the total stays under it."""
    cache = PrefixCache(10 * TOKEN_BYTES)
    first, second, third = entry([1] * 4, "a"), entry([2] * 4, "b"), entry([3] * 4, "c")
    for item in (first, second, third):
        put(cache, item)

    assert cache.entries == [second, third]
    assert cache.nbytes <= cache.budget_bytes
    assert cache.evictions == 1


def test_an_entry_larger_than_the_budget_is_refused_and_evicts_nothing() -> None:
    """An entry that could never fit is not kept, and the entries already there stay."""
    cache = PrefixCache(10 * TOKEN_BYTES)
    kept = entry([1] * 4, "a")
    put(cache, kept)

    assert not put(cache, entry([2] * 11, "b"))
    assert cache.entries == [kept]


def test_a_conversations_next_turn_replaces_its_entry() -> None:
    """The same conversation's newer entry replaces the older one, even when it is no extension of it."""
    cache = PrefixCache(10_000)
    put(cache, entry([1, 2, 3, 4], "a"))
    regenerated = entry([1, 2, 3, 9], "a")
    put(cache, regenerated)

    assert cache.entries == [regenerated]


def test_an_entry_that_is_a_prefix_of_the_new_one_is_dropped() -> None:
    """An older entry whose ids start the new one's is dropped, whatever conversation it was kept for."""
    cache = PrefixCache(10_000)
    other = entry([5, 6], "b")
    put(cache, entry([1, 2], None))
    put(cache, other)
    longer = entry([1, 2, 3, 4], "a")
    put(cache, longer)

    assert cache.entries == [other, longer]


def test_taking_an_entry_removes_it_and_counts_the_reuse() -> None:
    """An entry restored for its own conversation leaves the cache; one shared with another stays."""
    cache = PrefixCache(10_000)
    shared, own = entry([1, 2, 3], "b"), entry([4, 5, 6], "a")
    put(cache, shared)
    put(cache, own)

    cache.used(shared, 2, take=False)
    cache.used(own, 3, take=True)

    assert cache.entries == [shared]
    assert (cache.hits, cache.reused_tokens) == (2, 5)


async def test_the_scheduler_puts_the_conversation_key_on_the_prompt() -> None:
    """A request submitted for a conversation reaches the backend with that key on its prompt."""
    backend: Any = ScriptedBackend(tokenizer=None, script=lambda p: "a", max_batch_size=1)  # type: ignore[arg-type]
    scheduler = Scheduler(backend, max_per_user=2, max_total=2)

    async with scheduler.submit("u", Prompt("p", (1, 2), ()), SamplingParams(), conversation="thread:1") as ticket:
        async for _ in ticket.stream():
            pass

    assert backend.prompts[-1].conversation == "thread:1"
