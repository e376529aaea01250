"""Conversations' KV caches kept between their turns, so a follow-up prefills only its new tokens.

An entry is the token ids a finished reply's row held (prompt plus reply) and the keys and values of every layer
for them. A new prompt is matched by its longest common token prefix with any entry (no conversation key is
needed to find it); the worker copies that much KV into the request's slot and prefills the rest. Entries are
counted in bytes and evicted least recently used first to stay under the budget. A conversation has at most one
entry: its next finished turn replaces it, and so does any entry whose ids are a prefix of the new one.

Restoring *takes* the entry out of the cache: while its conversation generates, the slot holds that KV, and the
finished reply puts the longer entry back. So a conversation's KV is never held twice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class PrefixEntry:
    """The KV cache of ``token_ids``: ``keys`` and ``values`` are (layers, heads, tokens, head dim) each."""

    token_ids: tuple[int, ...]
    keys: torch.Tensor
    values: torch.Tensor
    conversation: str | None = None

    @property
    def nbytes(self) -> int:
        """Bytes the entry's tensors hold."""
        return _nbytes(self.keys) + _nbytes(self.values)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` share."""
    limit = min(len(a), len(b))
    if tuple(a[:limit]) == tuple(b[:limit]):  # the usual case for a follow-up: one comparison in C
        return limit
    low, high = 0, limit  # the shared length is the largest n with a[:n] == b[:n]: a binary search of slices
    while low < high:
        middle = (low + high + 1) // 2
        if tuple(a[:middle]) == tuple(b[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


class PrefixCache:
    """A least-recently-used set of :class:`PrefixEntry` under a budget of ``budget_bytes``.

    ``home`` is where entries are kept (``None``: where they were made, i.e. on the device; ``cpu`` offloads a
    CUDA model's entries to host memory). Only the worker thread uses it: no locking.
    """

    def __init__(self, budget_bytes: int, *, home: torch.device | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.home = home
        self._entries: OrderedDict[int, PrefixEntry] = OrderedDict()  # oldest first
        self.hits = 0
        """Prompts served from an entry so far."""
        self.reused_tokens = 0
        """Prompt tokens not prefilled thanks to an entry, so far."""
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[PrefixEntry]:
        """The entries, least recently used first."""
        return list(self._entries.values())

    @property
    def nbytes(self) -> int:
        """Bytes held by every entry."""
        return sum(entry.nbytes for entry in self._entries.values())

    def match(self, token_ids: Sequence[int]) -> tuple[PrefixEntry | None, int]:
        """The entry sharing the longest token prefix with ``token_ids``, and that length (0: none)."""
        best: PrefixEntry | None = None
        length = 0
        for entry in reversed(self._entries.values()):  # the most recent first: it wins a tie
            shared = common_prefix(entry.token_ids, token_ids)
            if shared > length:
                best, length = entry, shared
        return best, length

    def used(self, entry: PrefixEntry, tokens: int, *, take: bool) -> None:
        """Count a prompt served with ``tokens`` of ``entry``; ``take`` removes it (its own conversation's turn:
        the slot holds that KV now, and the finished reply puts the longer entry back)."""
        self.hits += 1
        self.reused_tokens += tokens
        if take:
            self.discard(entry)

    def discard(self, entry: PrefixEntry) -> None:
        """Forget ``entry`` if it is here."""
        self._entries.pop(id(entry), None)

    def make_room(self, token_ids: Sequence[int], conversation: str | None, nbytes: int) -> bool:
        """Drop what a new entry of ``nbytes`` for ``token_ids`` replaces, then evict to fit it; False if it never fits.

        Replaced: the conversation's own entry, and every entry whose ids are a prefix of ``token_ids`` (an earlier
        turn of the same thread, or the same prompt before it was regenerated).
        """
        if nbytes > self.budget_bytes:
            return False
        ids = tuple(token_ids)
        for entry in list(self._entries.values()):
            replaced = conversation is not None and entry.conversation == conversation
            if replaced or ids[: len(entry.token_ids)] == entry.token_ids:
                self.discard(entry)
        held = self.nbytes
        while self._entries and held + nbytes > self.budget_bytes:
            _, oldest = self._entries.popitem(last=False)
            held -= oldest.nbytes
            self.evictions += 1
            _log.debug("Evicted a kept prefix of %d tokens (%d bytes)", len(oldest.token_ids), oldest.nbytes)
        return True

    def add(self, entry: PrefixEntry) -> None:
        """Keep ``entry`` as the most recently used (call :meth:`make_room` first); moved to ``home`` if set."""
        if self.home is not None and entry.keys.device != self.home:
            pin = self.home.type == "cpu" and entry.keys.is_cuda
            entry.keys = entry.keys.to(self.home).pin_memory() if pin else entry.keys.to(self.home)
            entry.values = entry.values.to(self.home).pin_memory() if pin else entry.values.to(self.home)
        self._entries[id(entry)] = entry

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
