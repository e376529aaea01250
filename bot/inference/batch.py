"""The local worker's running batch: requests join it through prefill, step together, and leave when done.

Newcomers are prefilled together straight into free KV slots, between decode steps, without touching the running
rows. Each step samples every row's next token and publishes its text; a row whose request is finished (a stop, the
length limit, its reader gone) leaves the batch. A failing step is split in halves until the failing request is
found, so one bad request (OOM included) fails alone and the rest go on.

Prefix reuse (``prefix.py``): when a conversation's reply ends, its row's KV cache is kept; a later prompt that
starts with those tokens gets them copied into its slot and prefills only the rest. Such newcomers start at
different lengths, so each group sharing a start length is prefilled in its own pass. A failure keeping or
restoring an entry drops it and costs only the reuse: the request is prefilled in full.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from transformers import LlamaForCausalLM

from bot.inference.prefix import PrefixEntry
from bot.inference.sampling import sample_batch
from bot.inference.slots import SlotCache
from bot.inference.stops import StopMatcher
from bot.inference.tokenizer import IncrementalDecoder
from bot.inference.types import FinishReason

if TYPE_CHECKING:
    from bot.inference.worker import LocalBackend, _Request

_log = logging.getLogger(__name__)

# transformers 5.24 renamed the forward argument and output field ``past_key_values`` to ``cache``;
# older 5.x releases (the GPU image has 5.17) know only the old name.
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
# torch.OutOfMemoryError is a RuntimeError; MemoryError is what a failed CPU allocation may raise instead.
_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, MemoryError)
PREFIX_MIN_TOKENS = 64
"""A kept prefix shorter than this is not worth a prefill pass of its own (a shared system prompt, say)."""


@dataclass(eq=False)
class _Row:
    """A request while it is in the running batch."""

    request: _Request
    decoder: IncrementalDecoder
    stops: StopMatcher
    generator: torch.Generator | None
    seen: torch.Tensor
    generated: int = 0
    tokens: list[int] = field(default_factory=list)
    """The sampled token ids (the last one is not in the KV cache yet)."""
    length: int = 0
    """Real tokens in this row's cache (prompt plus generated)."""
    next_token: int = -1


class RunningBatch:
    """The running batch of one worker thread: its rows, row ``i`` at batch position ``i`` of the KV slots.

    The model, the kept prefixes, the decode step and the requests in flight are its backend's.
    """

    def __init__(self, backend: LocalBackend, slots: SlotCache) -> None:
        self._backend = backend
        self.slots = slots
        self.rows: list[_Row] = []

    def clear(self) -> None:
        """Drop every row and empty the KV slots."""
        self.rows = []
        self.slots.clear()

    def _new_row(self, request: _Request) -> _Row:
        ids = request.prompt.token_ids
        vocab_size = int(self._backend.loaded.model.get_input_embeddings().num_embeddings)
        if not ids or not 0 <= min(ids) <= max(ids) < vocab_size:
            # Checked here: on a GPU the embedding lookup would trip a device-side assert, which
            # breaks the CUDA context for every later request instead of failing this one.
            raise ValueError(f"a prompt needs 1 or more token ids, all in [0, {vocab_size})")
        device = self._backend.loaded.device
        generator = None
        if request.params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(request.params.seed)
        seen = torch.tensor(request.prompt.token_ids, dtype=torch.long, device=device)
        # The decoder starts from the prompt's tail, so the first token decodes as it does after it (LLaMA's spaces).
        decoder = IncrementalDecoder(self._backend.tokenizer, request.prompt.token_ids)
        return _Row(request, decoder, StopMatcher(request.prompt.stop), generator, seen)

    def admit(self, requests: list[_Request]) -> None:
        """Prefill ``requests`` straight into free KV slots; the running rows are not touched.

        Requests with no kept prefix are prefilled together; those with one, in a pass per kept length first.
        """
        groups: dict[int, list[tuple[_Row, PrefixEntry | None]]] = {}
        for request in requests:
            try:
                row = self._new_row(request)
            except _ERRORS as error:  # an impossible token id, a seed torch cannot take
                self._backend._fail(request, error)
                continue
            entry, start = self._kept_prefix(row)
            groups.setdefault(start, []).append((row, entry))
        for start in sorted(groups, reverse=True):
            self._admit_group(groups[start], start)

    def _admit_group(self, members: list[tuple[_Row, PrefixEntry | None]], start: int) -> None:
        """Prefill ``members`` from token ``start`` (their kept prefixes restored first) and join the batch."""
        rows = [row for row, _ in members]
        try:
            logits = self._prefill(rows, start, [entry for _, entry in members])
        except _RestoreFailed as failure:
            _log.warning("Could not restore a kept prefix (%r); prefilling in full", failure.__cause__)
            for _, entry in members:
                if entry is not None:
                    self._backend.prefixes.discard(entry)
            self._admit_group([(row, None) for row in rows], 0)
            return
        except _ERRORS as error:
            if len(rows) == 1:
                self._backend._fail(rows[0].request, error, starting=True)
                return
            for row in rows:  # find the bad one (or, out of memory, the one too big to join): each alone
                self.admit([row.request])
            return
        for row, entry in members:
            if entry is not None:
                mine = entry.conversation is not None and entry.conversation == row.request.prompt.conversation
                self._backend.prefixes.used(entry, start, take=mine)
        self.rows += rows
        self._emit(rows, logits)

    def _kept_prefix(self, row: _Row) -> tuple[PrefixEntry | None, int]:
        """The kept entry to start ``row`` from and how many of its tokens to reuse ((None, 0): prefill it all)."""
        ids = row.request.prompt.token_ids
        entry, shared = self._backend.prefixes.match(ids)
        start = min(shared, len(ids) - 1)  # the last prompt token is always run: its logits give the first token
        if entry is None or start < PREFIX_MIN_TOKENS:
            return None, 0
        return entry, start

    def _prefill(self, rows: list[_Row], start: int = 0, entries: Sequence[PrefixEntry | None] = ()) -> torch.Tensor:
        """Run the prompts of ``rows`` (right-padded) into new slots; their last logits. All or nothing.

        With ``start``, each row's first ``start`` tokens come from its entry in ``entries`` and only the rest
        are run; a failure restoring an entry raises :class:`_RestoreFailed`.
        """
        device = self._backend.loaded.device
        lengths = [len(row.request.prompt) for row in rows]
        width = max(lengths) - start  # the tokens this pass runs
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for index, row in enumerate(rows):
            ids[index, : lengths[index] - start] = torch.tensor(row.request.prompt.token_ids[start:], dtype=torch.long)
            row.length = lengths[index]
        columns = torch.arange(start + width, device=device)
        mask = (columns[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
        last = sorted(set(lengths))  # logits only where some row's prompt ends
        positions = self.slots.open(len(rows))
        try:
            if start:
                self._restore(positions, entries, start)
            out = self._backend.loaded.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=columns[start:].expand(len(rows), -1),
                use_cache=True,
                logits_to_keep=torch.tensor([n - 1 - start for n in last], device=device),
                **{CACHE_ARGUMENT: self.slots.cache_for(positions, width)},
            )
        except BaseException:
            self.slots.discard_last(len(rows))
            raise
        self.slots.extend(positions, [n - start for n in lengths])
        self._backend.prefilled_tokens += sum(n - start for n in lengths)
        keep = torch.tensor([last.index(n) for n in lengths], device=device)
        return out.logits[torch.arange(len(rows), device=device), keep, :]

    def _restore(self, positions: Sequence[int], entries: Sequence[PrefixEntry | None], start: int) -> None:
        """Copy the first ``start`` kept tokens of each entry into the new slot at the matching position."""
        device = self._backend.loaded.device
        try:
            for position, entry in zip(positions, entries, strict=True):
                assert entry is not None
                keys, values = entry.keys, entry.values
                if keys.device != device:  # offloaded: the slot storage must stay on the device
                    keys, values = keys[:, :, :start].to(device), values[:, :, :start].to(device)
                self.slots.load(position, keys, values, start)
        except _ERRORS as error:
            raise _RestoreFailed() from error

    def _keep(self, position: int, row: _Row) -> None:
        """Keep the KV cache of ``row`` (at batch ``position``), whose reply ended, for its conversation's next turn.

        A failure here (out of memory copying it out) loses only the entry: the next turn is prefilled in full.
        """
        conversation = row.request.prompt.conversation
        count = self.slots.lengths[position]
        if conversation is None or count < PREFIX_MIN_TOKENS or not self._backend.prefixes.budget_bytes:
            return
        ids = (row.request.prompt.token_ids + tuple(row.tokens))[:count]
        try:
            if self._backend.prefixes.make_room(ids, conversation, count * self.slots.token_bytes()):
                keys, values = self.slots.snapshot(position, count)
                self._backend.prefixes.add(PrefixEntry(ids, keys, values, conversation))
        except _ERRORS as error:
            _log.warning("Could not keep the KV cache of a finished reply (%r); its next turn prefills in full", error)

    def decode(self) -> None:
        """One decode step for every row; a failing step is split until the failing rows are found."""
        everyone = list(range(len(self.rows)))
        try:
            logits = self._step(everyone)
        except _ERRORS as error:
            self._decode_isolating(error)
            return
        self._emit(self.rows, logits)

    def _step(self, positions: list[int]) -> torch.Tensor:
        """Feed each row at ``positions`` its next token; its logits. The slots only advance if it succeeds."""
        compiled = self._backend.compiled  # the compiled step (bot/inference/compiled.py); None: take the eager path
        if compiled is not None:
            logits = compiled.step(self.slots, positions, [self.rows[p].next_token for p in positions])
            if logits is not None:
                self.slots.extend(positions, [1] * len(positions))
                return logits
        device = self._backend.loaded.device
        lengths = torch.tensor([self.slots.lengths[p] for p in positions], device=device)
        width = int(lengths.max()) + 1
        # Each row's tokens sit at columns [0, length); the new one goes at column ``length``.
        mask = (torch.arange(width, device=device)[None, :] <= lengths[:, None]).long()
        tokens = torch.tensor([[self.rows[p].next_token] for p in positions], device=device)
        out = self._backend.loaded.model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=lengths[:, None],
            use_cache=True,
            **{CACHE_ARGUMENT: self.slots.cache_for(positions, 1)},
        )
        self.slots.extend(positions, [1] * len(positions))
        return out.logits[:, -1, :]

    def _decode_isolating(self, error: Exception) -> None:
        """The slow path after a failed step: run halves until each failing row is alone, fail those."""
        everyone = list(range(len(self.rows)))
        if len(everyone) == 1:  # the step that failed was this row alone
            self._backend._fail(self.rows[0].request, error)
            self.clear()
            return
        results: dict[int, torch.Tensor] = {}
        pending = [everyone[: len(everyone) // 2], everyone[len(everyone) // 2 :]]  # the whole batch failed already
        while pending:
            indices = pending.pop()
            try:
                logits = self._step(indices)
            except _ERRORS as failure:
                if len(indices) == 1:
                    self._backend._fail(self.rows[indices[0]].request, failure)
                else:
                    pending += [indices[: len(indices) // 2], indices[len(indices) // 2 :]]
                continue
            for n, i in enumerate(indices):
                results[i] = logits[n : n + 1]
        order = self._select(sorted(results))
        if order:
            self._emit(self.rows, torch.cat([results[i] for i in order]))

    def _emit(self, rows: Sequence[_Row], logits: torch.Tensor) -> None:
        """Sample the next token of ``rows`` (the last rows of the batch), publish text, drop finished rows."""
        tokens = self._sample(rows, logits)
        done: set[int] = set()
        offset = len(self.rows) - len(rows)
        for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            request = row.request
            if request.cancelled or token is None:
                if token is not None:  # stopped by its reader: the text so far is the conversation's
                    self._keep(offset + index, row)
                self._backend._live.discard(request)
                done.add(offset + index)
                continue
            row.generated += 1
            row.tokens.append(token)
            row.length += 1
            row.next_token = token
            finish: FinishReason | None = None
            text = ""
            if token in self._backend._eos and not request.params.ignore_eos:
                finish = FinishReason.STOP
            else:
                text = row.stops.feed(row.decoder.push(token))
                if request.params.repetition_penalty != 1.0:
                    row.seen = torch.cat([row.seen, torch.tensor([token], device=row.seen.device)])
                if row.stops.stopped:
                    finish = FinishReason.STOP
                elif row.generated >= request.params.max_new_tokens or row.length >= self._backend.context_length:
                    finish = FinishReason.LENGTH
            if finish is not None:
                if finish == FinishReason.LENGTH and not row.stops.stopped:
                    text += row.stops.feed(row.decoder.flush())
                text += row.stops.flush()
                self._keep(offset + index, row)
                self._backend._live.discard(request)
                done.add(offset + index)
            if text or finish is not None:
                request.publish(text, row.generated, finish)
        if done:
            self._select([i for i in range(len(self.rows)) if i not in done])

    def _sample(self, rows: Sequence[_Row], logits: torch.Tensor) -> list[int | None]:
        """The next token of each row; ``None`` (and the request failed) where a row's sampling breaks."""
        try:
            return list(
                sample_batch(
                    logits, [r.request.params for r in rows], [r.seen for r in rows], [r.generator for r in rows]
                )
            )
        except _ERRORS:
            pass
        tokens: list[int | None] = []
        for index, row in enumerate(rows):  # the slow path: one row at a time, so a bad row fails alone
            try:
                tokens += sample_batch(logits[index : index + 1], [row.request.params], [row.seen], [row.generator])
            except _ERRORS as error:
                self._backend._fail(row.request, error)
                tokens.append(None)
        return tokens

    def _select(self, keep: list[int]) -> list[int]:
        """Keep only rows ``keep`` (their KV slots too); returns them in their new order, as old indices."""
        order = self.slots.keep(keep)
        self.rows = [self.rows[i] for i in order]
        return order


class _RestoreFailed(Exception):
    """Copying a kept prefix into a slot failed (its cause says why): prefill that request in full instead."""
