"""The local backend: one thread owns the model and decodes every request in one batch.

The worker loop (vLLM's shape): block while idle, drain new requests, prefill them
together, merge them into the running batch between decode steps, step, publish each
row's text back to asyncio with ``call_soon_threadsafe``. A request whose consumer goes
away is dropped at the next step. A failing request fails alone and the rest go on.

This module is the requests' side: each request's collector on the asyncio side, the inbox, the requests in flight
and failing one; what is done to the running batch (prefill, kept prefixes, steps, sampling) is ``batch.py``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import torch

from bot.config import ModelConfig
from bot.errors import BotError, GenerationError, ShuttingDownError
from bot.inference.batch import CACHE_ARGUMENT, RunningBatch
from bot.inference.compiled import CompiledDecoder, choose_decoder
from bot.inference.loading import LoadedModel, load_model
from bot.inference.prefix import PrefixCache
from bot.inference.slots import SlotCache
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Chunk, FinishReason, Prompt, SamplingParams

_log = logging.getLogger(__name__)

_CLOSE = object()
KV_BLOCK_TOKENS = 256
"""The KV storage grows in steps of this many tokens (one layer at a time)."""
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
        batch = RunningBatch(self, self.kv)
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
                        batch.admit(admitted)
                    if batch.rows:
                        batch.decode()
                except Exception as error:  # the loop must survive anything; fail what was in flight
                    _log.exception("The %s worker failed; failing in-flight requests and carrying on", self.name)
                    # Admitted requests that never reached the batch would otherwise wait forever.
                    in_flight = [row.request for row in batch.rows]
                    in_flight += [r for r in admitted if r not in in_flight and r in self._live]
                    for request in in_flight:
                        self._fail(request, error)
                    batch.clear()

    def _take_requests(self, batch: RunningBatch, waiting: list[_Request]) -> bool:
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
