"""A compiled decode step: the model's one-token-per-row forward pass through ``torch.compile``.

Why: at batch 1 the embedded 135M model's decode step costs ~35 ms on the build machine's CPU, almost all of
it Python and operator dispatch (30 layers of small ops), and the same overhead keeps a 7B nf4 step on a GPU
far below its memory bandwidth. A compiled step runs the whole pass as one generated graph (on CUDA with
``reduce-overhead``, as CUDA graphs).

Shapes are bucketed so that graphs are few: the batch is padded up to a power of two (1, 2, 4, 8, ...; dummy
rows write into free storage rows, which :meth:`SlotCache.open` zeroes before reuse, and their logits are
dropped), and the pass attends over the whole storage width of the :class:`~bot.inference.slots.SlotCache`,
which grows in 256-token blocks, with a mask that hides each row's columns past its length. Every graph
compiled is counted (:attr:`CompiledDecoder.compiles`) and logged.

Only the decode step is compiled; prefill (many tokens, many lengths) stays eager. A step the compiled path
cannot take (rows scattered in the storage after a failed compaction, a model that is not a plain
``*ForCausalLM``) returns ``None`` and the worker runs it eagerly; a compiler failure switches the compiled
path off for good with one log line, so no request ever fails because of the compiler.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from bot.inference.slots import SlotCache

_log = logging.getLogger(__name__)

MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes the decode step may use."""


def batch_bucket(rows: int, limit: int) -> int:
    """The padded batch size for ``rows`` live rows: the next power of two, at most ``limit`` (the storage rows)."""
    if rows < 1:
        raise ValueError("a decode step needs at least one row")
    bucket = 1
    while bucket < rows:
        bucket *= 2
    return max(rows, min(bucket, limit))


def default_mode(device: torch.device) -> str:
    """The mode measured best: CUDA graphs on a GPU (``reduce-overhead``), plain inductor on a CPU."""
    return "reduce-overhead" if device.type == "cuda" else "default"


class _StorageLayer(CacheLayerMixin):
    """One layer's keys and values: the slot storage, written in place at each row's own column."""

    is_compileable = True
    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        super().__init__()
        self.storage_keys, self.storage_values, self.positions = keys, values, positions
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        rows = key_states.shape[0]
        index = torch.arange(rows, device=key_states.device)
        # (rows, heads, 1, dim) new states land at column positions[row] of storage row ``row``.
        self.storage_keys[index, :, self.positions] = key_states[:, :, 0]
        self.storage_values[index, :, self.positions] = value_states[:, :, 0]
        self.keys, self.values = self.storage_keys[:rows], self.storage_values[:rows]
        return self.keys, self.values

    # Sizes stay symbolic (no int()): the storage width is a dynamic dimension of the graph.
    def get_mask_sizes(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        return self.storage_keys.shape[2], 0

    def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
        return self.storage_keys.shape[2] - 1

    def get_max_length(self) -> int:
        return self.storage_keys.shape[2]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Never needed: the storage exists before the pass."""


def _decode_forward(
    model: Any,
    cache_argument: str,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    storage: tuple[list[torch.Tensor], list[torch.Tensor]],
) -> torch.Tensor:
    """The traced function: one token per row at column ``positions[row]``; the rows' last logits."""
    keys, values = storage
    width = keys[0].shape[2]
    # A prepared 4D mask is used as given: each row sees its columns [0, position], the new token included.
    mask = (torch.arange(width, device=tokens.device)[None, :] <= positions[:, None])[:, None, None, :]
    cache = Cache(layers=[_StorageLayer(k, v, positions) for k, v in zip(keys, values, strict=True)])
    out = model(
        input_ids=tokens,
        attention_mask=mask,
        position_ids=positions[:, None],
        use_cache=True,
        **{cache_argument: cache},
    )
    logits: torch.Tensor = out.logits[:, -1, :]
    return logits


class CompiledDecoder:
    """Runs decode steps of one model through ``torch.compile``, with bucketed shapes and counted compiles."""

    def __init__(
        self,
        model: Any,
        *,
        cache_argument: str,
        mode: str = "default",
        backend: str = "inductor",
        background: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compile mode {mode!r}; one of {', '.join(MODES)}")
        self.model = model
        self.mode = mode
        self.backend = backend
        self.cache_argument = cache_argument
        self.compiles = 0
        """Graphs compiled so far (the first one included): each is a recompile after the first."""
        self.compile_seconds = 0.0
        """Time spent compiling (tracing plus code generation) so far."""
        self.failed: str | None = None
        """Why the compiled path was switched off (then every step is eager), else ``None``."""
        self.background = background
        """Compile a new batch bucket in a helper thread while eager steps serve (else: in the step, blocking)."""
        self.ready: set[int] = set()
        """Batch buckets whose graph is compiled."""
        self._compiling: threading.Thread | None = None
        self._tracing_rows = 0  # the bucket being run, for the compile log line
        self._lock = threading.Lock()
        self.steps = 0
        """Decode steps that went through the compiled graph."""
        # Dynamo keeps its graphs (and its recompile limit, 8) per code object: a private copy of the function's
        # code gives each decoder (each model variant) its own, instead of sharing one limit between them.
        own = types.FunctionType(_decode_forward.__code__.replace(), _decode_forward.__globals__, "decode_step")
        self._compiled: Callable[..., torch.Tensor] = torch.compile(
            own, backend=self._compile_graph, fullgraph=True, dynamic=None
        )

    @property
    def active(self) -> bool:
        """Whether steps still go through the compiled path."""
        return self.failed is None

    def _compile_graph(self, graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        """The dynamo backend: count and time each graph, then hand it to inductor (or ``self.backend``)."""
        with self._lock:
            self.compiles += 1
            count = self.compiles
        started = time.perf_counter()
        if self.backend == "inductor":
            from torch._inductor import list_mode_options
            from torch._inductor.compile_fx import compile_fx

            compiled: Callable[..., Any] = compile_fx(graph, inputs, config_patches=list_mode_options(self.mode))  # type: ignore[assignment]
        else:
            compiled = _backend(self.backend)(graph, inputs)
        _log.info(
            "Compiled decode graph %d (%s, %s) for batch bucket %d in %.1f s",
            count,
            self.backend,
            self.mode,
            self._tracing_rows,
            time.perf_counter() - started,
        )
        self.compile_seconds += time.perf_counter() - started
        return compiled

    def step(self, slots: SlotCache, positions: Sequence[int], tokens: Sequence[int]) -> torch.Tensor | None:
        """Logits for one decode step of the rows at ``positions`` (feeding ``tokens``), or ``None``: run it eagerly.

        ``None`` when the compiled path is off, or the rows are not storage rows ``0 .. n - 1`` in order (the
        bucketed graph reads a plain prefix of the storage). The slot lengths are not advanced here.
        """
        if self.failed is not None or list(positions) != list(range(len(positions))) or not slots.contiguous:
            return None
        live = len(positions)
        storage = _storage_for_step(slots, max(slots.lengths[:live]) + 1)
        if storage is None:
            return None
        rows = batch_bucket(live, slots.rows)
        if rows not in self.ready and self.background:
            # A compile takes about a minute on a small CPU: the batch must not stall for it. Eager steps serve
            # meanwhile; the graph is made from scratch storage of the same shape.
            self._compile_soon(rows, storage)
            return None
        keys, values = storage
        lengths = [slots.lengths[p] for p in positions] + [0] * (rows - live)  # dummy rows: column 0 of free rows
        logits = self._run(rows, list(tokens) + [0] * (rows - live), lengths, keys, values)
        if logits is None:
            return None
        self.ready.add(rows)
        self.steps += 1
        return logits[:live]

    def _compile_soon(self, rows: int, storage: tuple[list[torch.Tensor], list[torch.Tensor]]) -> None:
        with self._lock:
            if self._compiling is not None and self._compiling.is_alive():
                return
            like = _Shapes(storage)
            self._compiling = threading.Thread(
                target=self._compile_bucket, args=(rows, like), name=f"compile-decode-{rows}", daemon=True
            )
            self._compiling.start()

    def _compile_bucket(self, rows: int, like: _Shapes) -> None:
        with torch.inference_mode():
            keys, values = like.scratch()
            if self._run(rows, [0] * rows, [0] * rows, keys, values) is not None:
                self.ready.add(rows)

    def _run(
        self, rows: int, tokens: list[int], lengths: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]
    ) -> torch.Tensor | None:
        """One pass of the compiled graph for ``rows`` rows; ``None`` if the compiler failed (then it is off)."""
        device = keys[0].device
        for tensor in (*keys, *values):
            # One graph for every width (the storage grows in 256-token blocks up to the context length), not one
            # per block: on a CPU a compile costs a minute. The batch dimension stays static (bucketed).
            torch._dynamo.maybe_mark_dynamic(tensor, 2)
        token_tensor = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
        position_tensor = torch.tensor(lengths, dtype=torch.long, device=device)
        self._tracing_rows = rows
        try:
            return self._compiled(self.model, self.cache_argument, token_tensor, position_tensor, (keys, values))
        except Exception as error:  # anything the compiler raises: never fail a request for it
            if not _is_compiler_error(error):
                raise
            cause: BaseException = error
            while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
                cause = inner  # dynamo wraps the backend's own error: name that one
            lines = str(cause).strip().splitlines()
            self.failed = f"{type(cause).__name__}: {lines[0] if lines else ''}"
            _log.warning("The compiled decode step failed (%s); decoding eagerly from now on", self.failed)
            return None


class _Shapes:
    """The shapes, dtype and device of a storage, to compile a graph on a scratch copy in another thread."""

    def __init__(self, storage: tuple[list[torch.Tensor], list[torch.Tensor]]) -> None:
        keys, values = storage
        self.keys = [(t.shape[0], t.shape[1], t.shape[3], t.dtype, t.device) for t in keys]
        self.values = [(t.shape[0], t.shape[1], t.shape[3], t.dtype, t.device) for t in values]
        self.width = int(keys[0].shape[2])

    def scratch(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return tuple(  # type: ignore[return-value]
            [torch.zeros((r, h, self.width, d), dtype=dt, device=dv) for r, h, d, dt, dv in kind]
            for kind in (self.keys, self.values)
        )


def _storage_for_step(slots: SlotCache, width: int) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
    """Every layer's key and value storage, grown to ``width`` columns first; ``None`` before any prefill.

    The eager pass grows each layer's storage as it reaches it; the graph takes them all as inputs, so they
    are grown here, the same way (one block-sized step, one tensor at a time).
    """
    keys, values = slots._keys, slots._values  # the storage the compiled graph writes into
    if len(keys) < slots.layers or any(t is None for t in (*keys, *values)):
        return None
    grown_keys = [slots._storage(keys, n, t, width) for n, t in enumerate(keys) if t is not None]
    grown_values = [slots._storage(values, n, t, width) for n, t in enumerate(values) if t is not None]
    return grown_keys, grown_values


def _backend(name: str) -> Callable[..., Any]:
    """A dynamo backend by name (``eager``, ``aot_eager``: tracing without code generation, for tests)."""
    from torch._dynamo.backends.registry import lookup_backend

    return lookup_backend(name)


def _is_compiler_error(error: BaseException) -> bool:
    """Whether ``error`` comes from dynamo or inductor (not from the model's own arithmetic, e.g. out of memory)."""
    module = type(error).__module__
    return module.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(error).__name__


PROBE_STEPS = 6
"""Decode steps timed each way by the start-up probe (after one untimed step)."""
PROBE_MARGIN = 0.9
"""``auto`` keeps the compiled step only if it takes at most this fraction of the eager step's time."""


def choose_decoder(
    loaded: Any, preference: bool | str, slots: SlotCache, cache_argument: str, *, backend: str = "inductor"
) -> CompiledDecoder | None:
    """The compiled decode step ``[inference] compile`` asks for, or ``None`` for eager steps.

    ``True`` and ``"auto"`` both compile batch bucket 1 now (so the first reply does not wait for the compiler)
    and time it against the eager step on a short dummy sequence; ``"auto"`` keeps it only if it measured
    faster here, since whether it pays depends on the machine (the CPU, its load, the model). The probe uses
    ``slots`` (empty before the worker serves) and leaves it empty.
    """
    if preference is False:
        return None
    if preference == "auto" and loaded.device.type != "cuda":
        # Measured on the build machine's CPU (docs/performance.md): compiling takes minutes at every start
        # there, more than the compiled step saves a small bot; `compile = true` opts in (and measures).
        _log.info('Decoding eagerly on the CPU (compile = "auto"); set compile = true to use the compiled step')
        return None
    decoder = CompiledDecoder(
        loaded.model, cache_argument=cache_argument, mode=default_mode(loaded.device), backend=backend
    )
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            eager_s, compiled_s = _probe(decoder, loaded, slots, cache_argument)
    except Exception as error:  # the probe is advisory: serve eagerly rather than not at all
        _log.warning("Could not measure the compiled decode step (%r); decoding eagerly", error)
        return None
    finally:
        slots.clear()
    if decoder.failed is not None or compiled_s is None:
        return None
    verdict = "on" if preference is True or compiled_s <= eager_s * PROBE_MARGIN else "off (not faster here)"
    _log.info(
        "Compiled decode step (%s, %s): %.1f ms vs %.1f ms eager at batch 1; probe took %.0f s; compile %s",
        decoder.backend,
        decoder.mode,
        compiled_s * 1000,
        eager_s * 1000,
        time.perf_counter() - started,
        verdict,
    )
    return decoder if verdict == "on" else None


def _probe(decoder: CompiledDecoder, loaded: Any, slots: SlotCache, cache_argument: str) -> tuple[float, float | None]:
    """Median seconds of a batch-1 decode step, eager and compiled (``None``: the compiler failed)."""
    device = loaded.device
    model = loaded.model
    prompt = 16
    positions = list(slots.open(1))
    ids = torch.ones((1, prompt), dtype=torch.long, device=device)
    model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(prompt, device=device)[None, :],
        use_cache=True,
        **{cache_argument: slots.cache_for(positions, prompt)},
    )
    slots.extend(positions, [prompt])

    def eager() -> None:
        length = torch.tensor([slots.lengths[0]], device=device)
        model(
            input_ids=torch.ones((1, 1), dtype=torch.long, device=device),
            attention_mask=(torch.arange(slots.lengths[0] + 1, device=device)[None, :] <= length[:, None]).long(),
            position_ids=length[:, None],
            use_cache=True,
            **{cache_argument: slots.cache_for(positions, 1)},
        )

    background, decoder.background = decoder.background, False  # compile bucket 1 here, now
    try:
        if decoder.step(slots, positions, [1]) is None:
            return _median(eager, slots.lengths), None
    finally:
        decoder.background = background
    compiled_s = _median(lambda: decoder.step(slots, positions, [1]), slots.lengths)
    return _median(eager, slots.lengths), compiled_s


def _median(step: Callable[[], object], lengths: list[int]) -> float:
    """Median time of ``PROBE_STEPS`` calls of ``step`` after one untimed call (each keeps the length as it is)."""
    step()
    times = []
    for _ in range(PROBE_STEPS):
        begun = time.perf_counter()
        step()
        times.append(time.perf_counter() - begun)
    del lengths  # steps overwrite the same column: the probe's row never grows
    return sorted(times)[len(times) // 2]
