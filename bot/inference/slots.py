"""The running batch's KV cache: preallocated storage rows ("slots"), one per sequence, reused in place.

Why: a cache rebuilt with ``torch.cat`` each time a request joins or leaves the batch holds the old and the
new copy at once, so peak KV memory doubled at every merge and drop. Here each layer's keys and values live
in one tensor of ``rows`` storage rows by a column capacity that grows in ``block``-token steps (one layer at
a time, so a growth costs one layer's worth of extra memory, not the whole cache). A joining sequence is
written straight into a free row by its prefill; a leaving one frees its row, and at most one row per
leaver is copied (the highest row moved into the hole) so that the live rows stay a plain view.

Layout: the sequence at batch position ``p`` keeps its tokens in columns ``[0, lengths[p])`` of its storage
row (right-padded, each row at its own position), so nothing ever shifts when a longer sequence joins. A
forward pass appends its new tokens at each row's own length; the caller passes the matching 2D attention
mask (ones up to each row's new length) and position ids (each row's own length). The lengths only move
on :meth:`SlotCache.extend`, after a forward pass succeeded: a failed pass leaves garbage past the lengths,
which the mask hides and the next pass overwrites, so a retry needs no undo.

Prefix reuse (keeping a conversation's cache between turns, ``prefix.py``): :meth:`SlotCache.snapshot` copies a
finished row out, :meth:`SlotCache.load` copies it into a newly opened row, and the worker prefills only the new
tokens from there, in a pass of its own (its rows start at the kept length, not at 0).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

_log = logging.getLogger(__name__)


class SlotCache:
    """KV storage for up to ``rows`` sequences of a ``layers``-layer model, addressed by batch position.

    Batch positions run ``0 .. len(self) - 1``; the worker keeps its rows in the same order. Storage tensors are
    made on the first pass that reaches each layer (their shape, dtype and device are the model's key states').
    """

    def __init__(self, rows: int, layers: int, *, limit: int, block: int = 256) -> None:
        self.rows = rows
        self.layers = layers
        self.limit = limit
        """The most columns a row can need (the model's context length)."""
        self.block = block
        self.lengths: list[int] = []
        """Tokens held by the sequence at each batch position."""
        self.allocations = 0
        """Storage tensors allocated so far (each layer's keys and values count one each)."""
        self._slots: list[int] = []  # the storage row of each batch position
        self._keys: list[torch.Tensor | None] = []
        self._values: list[torch.Tensor | None] = []

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def storage(self) -> list[torch.Tensor]:
        """Every allocated storage tensor (for tests and measurements)."""
        return [t for t in (*self._keys, *self._values) if t is not None]

    @property
    def contiguous(self) -> bool:
        """Whether batch position ``p`` lives in storage row ``p`` for every ``p`` (the no-copy fast path)."""
        return self._slots == list(range(len(self._slots)))

    def open(self, count: int) -> range:
        """Add ``count`` empty sequences at the end of the batch, in the lowest free storage rows."""
        free = sorted(set(range(self.rows)) - set(self._slots))
        if count > len(free):
            raise ValueError(f"only {len(free)} of {self.rows} KV slots are free, {count} asked for")
        start = len(self.lengths)
        for tensor in self.storage:  # a row is zero past its length: masked columns must not hold NaN (0 * NaN)
            tensor[free[:count]] = 0
        self._slots += free[:count]
        self.lengths += [0] * count
        return range(start, start + count)

    def discard_last(self, count: int) -> None:
        """Forget the last ``count`` sequences (newcomers whose prefill failed); nothing moves."""
        if count:
            del self._slots[-count:], self.lengths[-count:]
        if not self.lengths:
            self.clear()

    def cache_for(self, positions: Sequence[int], new_tokens: int) -> Any:
        """A transformers cache for one forward pass of ``positions``, each appending ``new_tokens`` tokens.

        The pass sees ``max(lengths) + new_tokens`` key columns; with more than one new token per row all rows
        must start at the same length, or the model's causal mask would let a row see its own later tokens.
        """
        starts = [self.lengths[p] for p in positions]
        if new_tokens > 1 and len(set(starts)) > 1:
            raise ValueError("a multi-token pass needs its rows to start at the same length")
        if max(starts) + new_tokens > self.limit:
            raise ValueError(f"a row would need {max(starts) + new_tokens} of at most {self.limit} KV columns")
        view = _RowView([self._slots[p] for p in positions], starts, new_tokens)
        # Every layer exists up front: the model sizes its mask from layer 0 before any layer is updated.
        return Cache(layers=[_SlotLayer(self, view, layer) for layer in range(self.layers)])

    def extend(self, positions: Sequence[int], counts: Sequence[int]) -> None:
        """Record that the pass over ``positions`` succeeded and kept ``counts`` new tokens for each."""
        for position, count in zip(positions, counts, strict=True):
            self.lengths[position] += count

    def keep(self, positions: Sequence[int]) -> list[int]:
        """Keep only the sequences at ``positions`` and free the others' rows; returns the kept ones' new order.

        Storage rows of leavers are refilled by moving the highest live rows down, so the batch stays one view
        of the storage. A move that fails (out of memory, say) leaves that row where it was: nothing is lost,
        passes read the scattered rows with a gather until a later :meth:`keep` finishes the job.
        """
        order = list(positions)
        if not order:
            self.clear()
            return order
        self._slots = [self._slots[p] for p in order]
        self.lengths = [self.lengths[p] for p in order]
        try:
            self._compact()
        except (RuntimeError, MemoryError) as error:
            _log.warning("Could not compact the KV cache (%r); rows stay where they are", error)
        by_row = sorted(range(len(order)), key=self._slots.__getitem__)
        self._slots = [self._slots[i] for i in by_row]
        self.lengths = [self.lengths[i] for i in by_row]
        return [order[i] for i in by_row]

    def token_bytes(self) -> int:
        """Bytes one token's keys and values take across all layers (0 before the first pass made storage)."""
        return sum(t[0, :, 0].numel() * t.element_size() for t in self.storage)

    def snapshot(self, position: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the first ``count`` keys and of the values of the sequence at ``position``, every layer.

        Each is one new tensor of (layers, heads, count, head dim): what :meth:`load` takes back.
        """
        row = self._slots[position]
        if count > self.lengths[position] or any(t is None for t in (*self._keys, *self._values)):
            raise ValueError(f"the sequence at {position} does not hold {count} tokens in every layer")
        keys = torch.stack([t[row, :, :count] for t in self._keys if t is not None])
        values = torch.stack([t[row, :, :count] for t in self._values if t is not None])
        return keys, values

    def load(self, position: int, keys: torch.Tensor, values: torch.Tensor, count: int) -> None:
        """Fill the empty sequence at ``position`` with the first ``count`` tokens of a :meth:`snapshot`.

        Storage is made or grown as a pass would. A failure leaves the sequence empty (garbage past its length
        is masked and overwritten, as after a failed pass), so the caller can discard it or prefill it in full.
        """
        if self.lengths[position] or keys.shape[0] != self.layers or count > keys.shape[2]:
            raise ValueError("a kept prefix loads only into an empty sequence, with every layer and enough tokens")
        row = self._slots[position]
        for layer in range(self.layers):
            for kind, source in ((self._keys, keys[layer, :, :count]), (self._values, values[layer, :, :count])):
                storage = self._storage(kind, layer, source[None], count)
                storage[row, :, :count].copy_(source)  # across devices too (an entry offloaded to the CPU)
        self.lengths[position] = count

    def clear(self) -> None:
        """Forget every sequence and free the storage (an idle worker holds no KV memory)."""
        self._keys, self._values = [], []
        self._slots, self.lengths = [], []  # last: an empty batch is the sign that the storage is gone

    # -- storage ----------------------------------------------------------------------------------

    def _compact(self) -> None:
        count = len(self._slots)
        holes = sorted(set(range(count)) - set(self._slots))
        movers = sorted((p for p, s in enumerate(self._slots) if s >= count), key=self._slots.__getitem__)
        for hole, position in zip(holes, reversed(movers), strict=True):
            self._move(self._slots[position], hole)
            self._slots[position] = hole

    def _move(self, source: int, target: int) -> None:
        """Copy storage row ``source`` to the free row ``target`` (the source stays intact until it is freed)."""
        for tensor in self.storage:
            tensor[target].copy_(tensor[source])  # the whole row: its zeros past the length too

    def _allocate(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A new storage tensor (the seam tests use to make an allocation fail)."""
        self.allocations += 1
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    def _storage(self, kind: list[torch.Tensor | None], layer: int, like: torch.Tensor, width: int) -> torch.Tensor:
        """Layer ``layer``'s keys or values, grown to at least ``width`` columns first."""
        while len(kind) <= layer:
            kind.append(None)
        current = kind[layer]
        if current is not None and current.shape[2] >= width:
            return current
        capacity = min(self.limit, -(-width // self.block) * self.block)
        grown = self._allocate((self.rows, like.shape[1], capacity, like.shape[3]), like)
        # Only live rows, only the columns some row uses (free rows are zeroed when opened); on a CPU the
        # untouched rest is never made resident. The old tensor goes as soon as it is replaced.
        used = max(self.lengths, default=0) if current is not None else 0
        for row in self._slots:
            if current is not None and used:
                grown[row, :, :used].copy_(current[row, :, :used])
            grown[row, :, used:] = 0
        kind[layer] = grown
        return grown


class _RowView:
    """Which storage rows one forward pass reads and where each appends its new tokens."""

    def __init__(self, slots: list[int], starts: list[int], new_tokens: int) -> None:
        self.slots = slots
        self.past = max(starts)
        self.width = self.past + new_tokens
        self.new_tokens = new_tokens
        first = slots[0]
        self.run = slots == list(range(first, first + len(slots)))  # a plain slice of the storage
        self.start = starts[0] if len(set(starts)) == 1 else None
        self._rows: torch.Tensor | None = None
        self._columns: torch.Tensor | None = None
        self._starts = starts

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rows is None or self._rows.device != device:
            self._rows = torch.tensor(self.slots, device=device)[:, None]
            starts = torch.tensor(self._starts, device=device)[:, None]
            self._columns = starts + torch.arange(self.new_tokens, device=device)
        assert self._columns is not None
        return self._rows, self._columns

    def write(self, storage: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Write ``new`` (rows, heads, new tokens, dim) into ``storage``; return the rows' keys or values."""
        first, end = self.slots[0], self.slots[0] + len(self.slots)
        if self.run and self.start is not None:
            storage[first:end, :, self.start : self.start + self.new_tokens].copy_(new)
            return storage[first:end, :, : self.width]
        rows, columns = self.index(storage.device)
        storage[rows, :, columns] = new.transpose(1, 2)  # advanced indices first: (rows, tokens, heads, dim)
        if self.run:
            return storage[first:end, :, : self.width]
        # Scattered rows (after a failed compaction, or a bisected step): a gather, one layer at a time.
        return storage[rows[:, 0], :, : self.width]


class _SlotLayer(DynamicLayer):
    """One layer of a pass's cache: a DynamicLayer whose update writes into the slot storage in place."""

    def __init__(self, owner: SlotCache, view: _RowView, layer: int) -> None:
        super().__init__()
        self.owner, self.view, self.layer = owner, view, layer
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        owner, view = self.owner, self.view
        keys = owner._storage(owner._keys, self.layer, key_states, view.width)
        values = owner._storage(owner._values, self.layer, value_states, view.width)
        self.keys, self.values = view.write(keys, key_states), view.write(values, value_states)
        return self.keys, self.values

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        # What the model's mask and positions are sized from: the columns before this pass's new tokens.
        return self.view.past
