"""The local backend: one thread owns the model and decodes every request in one batch.

The worker loop (vLLM's shape): block while idle, drain new requests, prefill them
together, merge them into the running batch between decode steps, step, publish each
row's text back to asyncio with ``call_soon_threadsafe``. A request whose consumer goes
away is dropped at the next step. A failing batch is split in halves until the failing
request is found, so one bad request (OOM included) fails alone and the rest go on.

Prefix reuse (``prefix.py``): when a conversation's reply ends, its row's KV cache is kept; a later prompt that
starts with those tokens gets them copied into its slot and prefills only the rest. Such newcomers start at
different lengths, so each group sharing a start length is prefilled in its own pass. A failure keeping or
restoring an entry drops it and costs only the reuse: the request is prefilled in full.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from bot.config import ModelConfig
from bot.errors import BotError, GenerationError, ShuttingDownError
from bot.inference.compiled import CompiledDecoder, choose_decoder
from bot.inference.loading import LoadedModel, load_model
from bot.inference.prefix import PrefixCache, PrefixEntry
from bot.inference.sampling import sample_batch
from bot.inference.slots import SlotCache
from bot.inference.stops import StopMatcher
from bot.inference.tokenizer import HFTokenizer, IncrementalDecoder
from bot.inference.types import Chunk, FinishReason, Prompt, SamplingParams

_log = logging.getLogger(__name__)

# transformers 5.24 renamed the forward argument and output field ``past_key_values`` to ``cache``;
# older 5.x releases (the GPU image has 5.17) know only the old name.
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
_CLOSE = object()
# torch.OutOfMemoryError is a RuntimeError; MemoryError is what a failed CPU allocation may raise instead.
_ERRORS = (RuntimeError, ValueError, IndexError, TypeError, MemoryError)
KV_BLOCK_TOKENS = 256
"""The KV storage grows in steps of this many tokens (one layer at a time)."""
PREFIX_MIN_TOKENS = 64
"""A kept prefix shorter than this is not worth a prefill pass of its own (a shared system prompt, say)."""
DEFAULT_PREFIX_CACHE_MB = 320
"""Room for 8 conversations of 1,500 tokens of the embedded model in bf16 (22.5 KB a token)."""
OUT_OF_MEMORY_STARTING = "Out of memory while starting your reply; try a shorter message or later."
OUT_OF_MEMORY_RUNNING = "The model ran out of memory on this request; try a shorter conversation."


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device (or the host) ran out of memory."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class _Collector:
    """The asyncio side of one request: merges text until the consumer takes it (no unbounded queue)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.text: list[str] = []
        self.tokens = 0
        self.finish: FinishReason | None = None
        self.error: BaseException | None = None

    def publish(self, text: str, tokens: int, finish: FinishReason | None, error: BaseException | None) -> None:
        self.text.append(text)
        self.tokens = tokens
        self.finish = finish or self.finish
        self.error = error or self.error
        self.event.set()

    def take(self) -> str:
        text = "".join(self.text)
        self.text.clear()
        self.event.clear()
        return text


@dataclass(eq=False)
class _Request:
    prompt: Prompt
    params: SamplingParams
    collector: _Collector
    loop: asyncio.AbstractEventLoop
    cancelled: bool = False

    def publish(
        self, text: str, tokens: int, finish: FinishReason | None = None, error: BaseException | None = None
    ) -> None:
        try:
            self.loop.call_soon_threadsafe(self.collector.publish, text, tokens, finish, error)
        except RuntimeError:  # the asking event loop is closed: nobody is reading any more
            self.cancelled = True


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


@dataclass
class _Batch:
    """The running batch: its rows, row ``i`` at batch position ``i`` of the KV slots."""

    slots: SlotCache
    rows: list[_Row] = field(default_factory=list)

    def clear(self) -> None:
        self.rows = []
        self.slots.clear()


class LocalBackend:
    """Serves one model variant from this process (transformers, peft, bitsandbytes)."""

    def __init__(
        self,
        variant: ModelConfig,
        *,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir: str | Path | None = None,
        max_batch_size: int = 8,
        loaded: LoadedModel | None = None,
        prefix_cache_mb: float = DEFAULT_PREFIX_CACHE_MB,
        prefix_cache_offload: bool = False,
        compile: bool | str = False,
    ) -> None:
        self.name = variant.name
        self.variant = variant
        self.max_batch_size = max_batch_size
        self._device_preference = device
        self._dtype_preference = dtype
        self._cache_dir = cache_dir
        self._loaded = loaded
        self._inbox: queue.Queue[_Request | object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._live: set[_Request] = set()
        self._eos: set[int] = set()
        self.kv: SlotCache | None = None
        """The running batch's KV storage (made at start; read it only for measurements and tests)."""
        self.prefixes = PrefixCache(int(prefix_cache_mb * 2**20))
        """Conversations' KV caches kept between turns (the worker thread's; read it only for tests)."""
        self._prefix_offload = prefix_cache_offload
        self.prefilled_tokens = 0
        """Prompt tokens run through prefill passes so far (kept prefixes are not)."""
        self._compile_preference = compile
        self.compiled: CompiledDecoder | None = None
        """The compiled decode step when ``compile`` chose it at start (its ``compiles`` counts graphs)."""

    # -- asyncio side -------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise BotError(f"model {self.name!r} is not loaded yet")
        return self._loaded

    @property
    def tokenizer(self) -> HFTokenizer:
        return self.loaded.tokenizer

    @property
    def context_length(self) -> int:
        return self.loaded.context_length

    async def start(self) -> None:
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(
                load_model,
                self.variant,
                device=self._device_preference,
                dtype=self._dtype_preference,
                cache_dir=self._cache_dir,
            )
        eos = self._loaded.model.generation_config.eos_token_id
        self._eos = {*(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
        if self._loaded.tokenizer.eos_token_id is not None:
            self._eos.add(self._loaded.tokenizer.eos_token_id)
        if self.kv is None:
            layers = int(self._loaded.model.config.num_hidden_layers)
            self.kv = SlotCache(self.max_batch_size, layers, limit=self._loaded.context_length, block=KV_BLOCK_TOKENS)
        if self._prefix_offload and self._loaded.device.type == "cuda":
            self.prefixes.home = torch.device("cpu")  # host memory is larger; a restore copies back
        if self.compiled is None and self._compile_preference is not False:
            choice = (self._loaded, self._compile_preference, self.kv, CACHE_ARGUMENT)
            self.compiled = await asyncio.to_thread(choose_decoder, *choice)
        self._ensure_thread()

    async def close(self) -> None:
        self._closing = True
        self._inbox.put(_CLOSE)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        for request in list(self._live):
            request.publish("", 0, FinishReason.ERROR, ShuttingDownError())

    def healthy(self) -> bool:
        """Loaded, not closing, and the worker thread alive: a dead one is restarted here, as a request would."""
        if self._loaded is None or self._closing:
            return False
        self._ensure_thread()
        return self._thread is not None and self._thread.is_alive()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            if self._thread is not None:
                _log.error("The %s worker thread died; starting a new one", self.name)
            self._thread = threading.Thread(target=self._run, name=f"worker-{self.name}", daemon=True)
            self._thread.start()

    async def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncGenerator[Chunk, None]:
        """Stream the reply to ``prompt``; see :class:`~bot.inference.types.Backend`."""
        if self._closing:
            raise ShuttingDownError()
        if len(prompt) >= self.context_length:
            raise GenerationError("The prompt fills the whole context window.")
        self._ensure_thread()
        request = _Request(prompt, params, _Collector(), asyncio.get_running_loop())
        collector = request.collector
        self._inbox.put(request)
        try:
            while True:
                await collector.event.wait()
                text = collector.take()
                if collector.error is not None:
                    raise collector.error
                if text or collector.finish is not None:
                    yield Chunk(text, collector.tokens, collector.finish)
                if collector.finish is not None:
                    return
        finally:
            request.cancelled = True  # no-op once finished; otherwise the worker drops it at the next step

    # -- worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        """The thread: serve until closed; if it dies anyway, nobody is left waiting on it."""
        try:
            self._serve()
        finally:
            if not self._closing:
                _log.error("The %s worker thread stopped; failing its requests (the next one restarts it)", self.name)
                while not self._inbox.empty():
                    item = self._inbox.get_nowait()
                    if isinstance(item, _Request):
                        self._live.add(item)
                for request in list(self._live):
                    self._fail(request, RuntimeError("the worker thread stopped"))

    def _serve(self) -> None:
        assert self.kv is not None
        batch = _Batch(self.kv)
        batch.clear()  # a restarted thread starts from nothing
        waiting: list[_Request] = []
        with torch.inference_mode():
            while True:
                admitted: list[_Request] = []
                try:
                    if not self._take_requests(batch, waiting):
                        return
                    admitted, waiting = (
                        waiting[: self.max_batch_size - len(batch.rows)],
                        waiting[self.max_batch_size - len(batch.rows) :],
                    )
                    if admitted:
                        self._admit(batch, admitted)
                    if batch.rows:
                        self._decode(batch)
                except Exception as error:  # the loop must survive anything; fail what was in flight
                    _log.exception("The %s worker failed; failing in-flight requests and carrying on", self.name)
                    # Admitted requests that never reached the batch would otherwise wait forever.
                    in_flight = [row.request for row in batch.rows]
                    in_flight += [r for r in admitted if r not in in_flight and r in self._live]
                    for request in in_flight:
                        self._fail(request, error)
                    batch.clear()

    def _take_requests(self, batch: _Batch, waiting: list[_Request]) -> bool:
        """Move new requests from the inbox into ``waiting`` (blocking while idle); False to stop."""
        block = not batch.rows and not waiting
        while True:
            try:
                item = self._inbox.get(block=block)
            except queue.Empty:
                break
            block = False
            if item is _CLOSE:
                return False
            assert isinstance(item, _Request)
            self._live.add(item)
            waiting.append(item)
        waiting[:] = [r for r in waiting if not self._drop_if_cancelled(r)]
        return True

    def _drop_if_cancelled(self, request: _Request) -> bool:
        if request.cancelled:
            self._live.discard(request)
        return request.cancelled

    def _fail(self, request: _Request, error: BaseException, *, starting: bool = False) -> None:
        """Fail ``request`` alone; ``starting``: it failed joining the batch (its prefill or its KV slot)."""
        self._live.discard(request)
        if is_out_of_memory(error):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            message = OUT_OF_MEMORY_STARTING if starting else OUT_OF_MEMORY_RUNNING
        else:
            message = "The model failed while answering; please try again."
        _log.warning("Request failed in %s: %r", self.name, error)
        request.publish("", 0, FinishReason.ERROR, GenerationError(message))

    def _new_row(self, request: _Request) -> _Row:
        ids = request.prompt.token_ids
        vocab_size = int(self.loaded.model.get_input_embeddings().num_embeddings)
        if not ids or not 0 <= min(ids) <= max(ids) < vocab_size:
            # Checked here: on a GPU the embedding lookup would trip a device-side assert, which
            # breaks the CUDA context for every later request instead of failing this one.
            raise ValueError(f"a prompt needs 1 or more token ids, all in [0, {vocab_size})")
        device = self.loaded.device
        generator = None
        if request.params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(request.params.seed)
        seen = torch.tensor(request.prompt.token_ids, dtype=torch.long, device=device)
        # The decoder starts from the prompt's tail, so the first token decodes as it does after it (LLaMA's spaces).
        decoder = IncrementalDecoder(self.tokenizer, request.prompt.token_ids)
        return _Row(request, decoder, StopMatcher(request.prompt.stop), generator, seen)

    def _admit(self, batch: _Batch, requests: list[_Request]) -> None:
        """Prefill ``requests`` straight into free KV slots; the running rows are not touched.

        Requests with no kept prefix are prefilled together; those with one, in a pass per kept length first.
        """
        groups: dict[int, list[tuple[_Row, PrefixEntry | None]]] = {}
        for request in requests:
            try:
                row = self._new_row(request)
            except _ERRORS as error:  # an impossible token id, a seed torch cannot take
                self._fail(request, error)
                continue
            entry, start = self._kept_prefix(row)
            groups.setdefault(start, []).append((row, entry))
        for start in sorted(groups, reverse=True):
            self._admit_group(batch, groups[start], start)

    def _admit_group(self, batch: _Batch, members: list[tuple[_Row, PrefixEntry | None]], start: int) -> None:
        """Prefill ``members`` from token ``start`` (their kept prefixes restored first) and join the batch."""
        rows = [row for row, _ in members]
        try:
            logits = self._prefill(batch, rows, start, [entry for _, entry in members])
        except _RestoreFailed as failure:
            _log.warning("Could not restore a kept prefix (%r); prefilling in full", failure.__cause__)
            for _, entry in members:
                if entry is not None:
                    self.prefixes.discard(entry)
            self._admit_group(batch, [(row, None) for row in rows], 0)
            return
        except _ERRORS as error:
            if len(rows) == 1:
                self._fail(rows[0].request, error, starting=True)
                return
            for row in rows:  # find the bad one (or, out of memory, the one too big to join): each alone
                self._admit(batch, [row.request])
            return
        for row, entry in members:
            if entry is not None:
                mine = entry.conversation is not None and entry.conversation == row.request.prompt.conversation
                self.prefixes.used(entry, start, take=mine)
        batch.rows += rows
        self._emit(batch, rows, logits)

    def _kept_prefix(self, row: _Row) -> tuple[PrefixEntry | None, int]:
        """The kept entry to start ``row`` from and how many of its tokens to reuse ((None, 0): prefill it all)."""
        ids = row.request.prompt.token_ids
        entry, shared = self.prefixes.match(ids)
        start = min(shared, len(ids) - 1)  # the last prompt token is always run: its logits give the first token
        if entry is None or start < PREFIX_MIN_TOKENS:
            return None, 0
        return entry, start

    def _prefill(
        self, batch: _Batch, rows: list[_Row], start: int = 0, entries: Sequence[PrefixEntry | None] = ()
    ) -> torch.Tensor:
        """Run the prompts of ``rows`` (right-padded) into new slots; their last logits. All or nothing.

        With ``start``, each row's first ``start`` tokens come from its entry in ``entries`` and only the rest
        are run; a failure restoring an entry raises :class:`_RestoreFailed`.
        """
        device = self.loaded.device
        lengths = [len(row.request.prompt) for row in rows]
        width = max(lengths) - start  # the tokens this pass runs
        ids = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for index, row in enumerate(rows):
            ids[index, : lengths[index] - start] = torch.tensor(row.request.prompt.token_ids[start:], dtype=torch.long)
            row.length = lengths[index]
        columns = torch.arange(start + width, device=device)
        mask = (columns[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
        last = sorted(set(lengths))  # logits only where some row's prompt ends
        positions = batch.slots.open(len(rows))
        try:
            if start:
                self._restore(batch, positions, entries, start)
            out = self.loaded.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=columns[start:].expand(len(rows), -1),
                use_cache=True,
                logits_to_keep=torch.tensor([n - 1 - start for n in last], device=device),
                **{CACHE_ARGUMENT: batch.slots.cache_for(positions, width)},
            )
        except BaseException:
            batch.slots.discard_last(len(rows))
            raise
        batch.slots.extend(positions, [n - start for n in lengths])
        self.prefilled_tokens += sum(n - start for n in lengths)
        keep = torch.tensor([last.index(n) for n in lengths], device=device)
        return out.logits[torch.arange(len(rows), device=device), keep, :]

    def _restore(
        self, batch: _Batch, positions: Sequence[int], entries: Sequence[PrefixEntry | None], start: int
    ) -> None:
        """Copy the first ``start`` kept tokens of each entry into the new slot at the matching position."""
        device = self.loaded.device
        try:
            for position, entry in zip(positions, entries, strict=True):
                assert entry is not None
                keys, values = entry.keys, entry.values
                if keys.device != device:  # offloaded: the slot storage must stay on the device
                    keys, values = keys[:, :, :start].to(device), values[:, :, :start].to(device)
                batch.slots.load(position, keys, values, start)
        except _ERRORS as error:
            raise _RestoreFailed() from error

    def _keep(self, batch: _Batch, position: int, row: _Row) -> None:
        """Keep the KV cache of ``row`` (at batch ``position``), whose reply ended, for its conversation's next turn.

        A failure here (out of memory copying it out) loses only the entry: the next turn is prefilled in full.
        """
        conversation = row.request.prompt.conversation
        count = batch.slots.lengths[position]
        if conversation is None or count < PREFIX_MIN_TOKENS or not self.prefixes.budget_bytes:
            return
        ids = (row.request.prompt.token_ids + tuple(row.tokens))[:count]
        try:
            if self.prefixes.make_room(ids, conversation, count * batch.slots.token_bytes()):
                keys, values = batch.slots.snapshot(position, count)
                self.prefixes.add(PrefixEntry(ids, keys, values, conversation))
        except _ERRORS as error:
            _log.warning("Could not keep the KV cache of a finished reply (%r); its next turn prefills in full", error)

    def _decode(self, batch: _Batch) -> None:
        """One decode step for every row; a failing step is split until the failing rows are found."""
        everyone = list(range(len(batch.rows)))
        try:
            logits = self._step(batch, everyone)
        except _ERRORS as error:
            self._decode_isolating(batch, error)
            return
        self._emit(batch, batch.rows, logits)

    def _step(self, batch: _Batch, positions: list[int]) -> torch.Tensor:
        """Feed each row at ``positions`` its next token; its logits. The slots only advance if it succeeds."""
        if self.compiled is not None:  # the compiled step (bot/inference/compiled.py); None: take the eager path
            logits = self.compiled.step(batch.slots, positions, [batch.rows[p].next_token for p in positions])
            if logits is not None:
                batch.slots.extend(positions, [1] * len(positions))
                return logits
        device = self.loaded.device
        lengths = torch.tensor([batch.slots.lengths[p] for p in positions], device=device)
        width = int(lengths.max()) + 1
        # Each row's tokens sit at columns [0, length); the new one goes at column ``length``.
        mask = (torch.arange(width, device=device)[None, :] <= lengths[:, None]).long()
        tokens = torch.tensor([[batch.rows[p].next_token] for p in positions], device=device)
        out = self.loaded.model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=lengths[:, None],
            use_cache=True,
            **{CACHE_ARGUMENT: batch.slots.cache_for(positions, 1)},
        )
        batch.slots.extend(positions, [1] * len(positions))
        return out.logits[:, -1, :]

    def _decode_isolating(self, batch: _Batch, error: Exception) -> None:
        """The slow path after a failed step: run halves until each failing row is alone, fail those."""
        everyone = list(range(len(batch.rows)))
        if len(everyone) == 1:  # the step that failed was this row alone
            self._fail(batch.rows[0].request, error)
            batch.clear()
            return
        results: dict[int, torch.Tensor] = {}
        pending = [everyone[: len(everyone) // 2], everyone[len(everyone) // 2 :]]  # the whole batch failed already
        while pending:
            indices = pending.pop()
            try:
                logits = self._step(batch, indices)
            except _ERRORS as failure:
                if len(indices) == 1:
                    self._fail(batch.rows[indices[0]].request, failure)
                else:
                    pending += [indices[: len(indices) // 2], indices[len(indices) // 2 :]]
                continue
            for n, i in enumerate(indices):
                results[i] = logits[n : n + 1]
        order = _select(batch, sorted(results))
        if order:
            self._emit(batch, batch.rows, torch.cat([results[i] for i in order]))

    def _emit(self, batch: _Batch, rows: Sequence[_Row], logits: torch.Tensor) -> None:
        """Sample the next token of ``rows`` (the last rows of the batch), publish text, drop finished rows."""
        tokens = self._sample(rows, logits)
        done: set[int] = set()
        offset = len(batch.rows) - len(rows)
        for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            request = row.request
            if request.cancelled or token is None:
                if token is not None:  # stopped by its reader: the text so far is the conversation's
                    self._keep(batch, offset + index, row)
                self._live.discard(request)
                done.add(offset + index)
                continue
            row.generated += 1
            row.tokens.append(token)
            row.length += 1
            row.next_token = token
            finish: FinishReason | None = None
            text = ""
            if token in self._eos and not request.params.ignore_eos:
                finish = FinishReason.STOP
            else:
                text = row.stops.feed(row.decoder.push(token))
                if request.params.repetition_penalty != 1.0:
                    row.seen = torch.cat([row.seen, torch.tensor([token], device=row.seen.device)])
                if row.stops.stopped:
                    finish = FinishReason.STOP
                elif row.generated >= request.params.max_new_tokens or row.length >= self.context_length:
                    finish = FinishReason.LENGTH
            if finish is not None:
                if finish == FinishReason.LENGTH and not row.stops.stopped:
                    text += row.stops.feed(row.decoder.flush())
                text += row.stops.flush()
                self._keep(batch, offset + index, row)
                self._live.discard(request)
                done.add(offset + index)
            if text or finish is not None:
                request.publish(text, row.generated, finish)
        if done:
            _select(batch, [i for i in range(len(batch.rows)) if i not in done])

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
                self._fail(row.request, error)
                tokens.append(None)
        return tokens


class _RestoreFailed(Exception):
    """Copying a kept prefix into a slot failed (its cause says why): prefill that request in full instead."""


def _select(batch: _Batch, keep: list[int]) -> list[int]:
    """Keep only rows ``keep`` (their KV slots too); returns them in their new order, as old indices."""
    order = batch.slots.keep(keep)
    batch.rows = [batch.rows[i] for i in order]
    return order
