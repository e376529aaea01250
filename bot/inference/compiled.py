"""A compiled decode step: the model's one-token-per-row forward pass through ``torch.compile``.

Why: at batch 1 the embedded 135M model's decode step costs ~35 ms on the build machine's CPU, almost all of
it Python and operator dispatch (30 layers of small ops), and the same overhead keeps a 7B nf4 step on a GPU
far below its memory bandwidth. A compiled step runs the whole pass as one generated graph (on CUDA with
``reduce-overhead``, as CUDA graphs).

Shapes are bucketed so that graphs are few: the batch is padded up to a power of two (1, 2, 4, 8, ...; dummy
rows write into free storage rows, which :meth:`SlotCache.open` zeroes before reuse, and their logits are
dropped), and the pass attends over the whole storage width of the :class:`~bot.inference.slots.SlotCache`,
which grows in 256-token blocks, with a mask that hides each row's columns past its length. Every graph
compiled is counted (:attr:`CompiledDecoder.compiles`).

When it compiles: every bucket, at start-up, before the worker serves (:func:`choose_decoder`, one log line
per bucket with its compile time and its step time against the eager step's), and never after. Dynamo holds
a process-wide "compiling" flag for the whole of a compile, so a compile beside a running eager step makes
that step take compile-only paths: with transformers 5.25 the step then fills the ``kernels`` package's
global ``_ACTIVE_KERNEL_FUNCS`` with a dict, and dynamo's guard on that global fails (issue 20). Compiles are
therefore serialized process-wide and never overlap a forward pass; serving steps use the cached graphs only
(``torch._dynamo.run``), so a guard that stops matching runs that step eagerly instead of recompiling.

Failing safe: only the decode step is compiled; prefill (many tokens, many lengths) stays eager. A step the
compiled path cannot take (rows scattered in the storage after a failed compaction) returns ``None`` and the
worker runs it eagerly. Any exception while compiling a bucket, running its graph, or a guard that no longer
matches, turns that bucket (only) eager for good with one log line naming the error; a bucket whose compiled
step measured slower than the eager one at start-up stays eager too. No request fails because of the compiler.
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


_COMPILING = threading.RLock()
"""Held for each compile and start-up probe: dynamo's "compiling" flag is process-wide (see the module docstring)."""
_graph_ran = threading.local()
"""Set by every compiled graph as it runs: a cached-only call that leaves it unset ran eagerly (a guard missed)."""

Entry = Callable[..., torch.Tensor]


def _dynamo_entries(function: Callable[..., torch.Tensor], backend: Callable[..., Any]) -> tuple[Entry, Entry]:
    """``function`` through dynamo: an entry that compiles a graph for each new shape, and one that never compiles.

    The second runs a cached graph whose guards match, else ``function`` itself, eagerly.
    """
    compiling: Entry = torch.compile(function, backend=backend, fullgraph=True, dynamic=None)
    cached: Entry = torch._dynamo.run(function)
    return compiling, cached


class CompiledDecoder:
    """Runs decode steps of one model through ``torch.compile``, with bucketed shapes and counted compiles.

    Buckets are compiled with :meth:`compile` (at start-up, by :func:`choose_decoder`); :meth:`step` serves the
    buckets in :attr:`ready` from their cached graphs and leaves every other step to the eager path.
    """

    def __init__(self, model: Any, *, cache_argument: str, mode: str = "default", backend: str = "inductor") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compile mode {mode!r}; one of {', '.join(MODES)}")
        self.model = model
        self.mode = mode
        self.backend = backend
        self.cache_argument = cache_argument
        self.compiles = 0
        """Graphs compiled so far: dynamo makes the batch dimension dynamic after the second bucket, so later
        buckets usually reuse that graph."""
        self.compile_seconds = 0.0
        """Time spent compiling (tracing plus code generation) so far."""
        self.ready: set[int] = set()
        """Batch buckets whose steps run through their compiled graph."""
        self.eager: dict[int, str] = {}
        """Batch buckets that decode eagerly, with why (the error, or "not faster here")."""
        self.off: str | None = None
        """Why the compiled path is off altogether: the code generator itself failed (e.g. no C++ compiler)."""
        self.steps = 0
        """Decode steps that went through a compiled graph."""
        # Dynamo keeps its graphs (and its recompile limit, 8) per code object: a private copy of the function's
        # code gives each decoder (each model variant) its own, instead of sharing one limit between them.
        own = types.FunctionType(_decode_forward.__code__.replace(), _decode_forward.__globals__, "decode_step")
        self._compiling, self._cached = _dynamo_entries(own, self._compile_graph)

    @property
    def active(self) -> bool:
        """Whether any bucket's steps go through a compiled graph."""
        return bool(self.ready)

    @property
    def failed(self) -> str | None:
        """Why no bucket is compiled (then every step is eager), else ``None``."""
        if self.off is not None:
            return self.off
        if self.ready or not self.eager:
            return None
        return "; ".join(f"batch bucket {rows}: {why}" for rows, why in sorted(self.eager.items()))

    def _compile_graph(self, graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        """The dynamo backend: count and time each graph, hand it to inductor (or ``self.backend``), mark its runs."""
        started = time.perf_counter()
        if self.backend == "inductor":
            from torch._inductor import list_mode_options
            from torch._inductor.compile_fx import compile_fx

            compiled: Callable[..., Any] = compile_fx(graph, inputs, config_patches=list_mode_options(self.mode))  # type: ignore[assignment]
        else:
            compiled = _backend(self.backend)(graph, inputs)
        self.compiles += 1
        self.compile_seconds += time.perf_counter() - started

        def run(*args: Any) -> Any:
            _graph_ran.value = True
            return compiled(*args)

        if getattr(compiled, "_boxed_call", False):  # inductor takes its inputs as one list: keep that convention
            run._boxed_call = True  # type: ignore[attr-defined]
        return run

    def compile(self, slots: SlotCache, positions: Sequence[int], tokens: Sequence[int]) -> bool:
        """Compile (or reuse) the graph of the bucket of ``positions`` with one step of theirs; whether it worked.

        The step is real: it writes the rows' next column, as :meth:`step` does (the slot lengths stay as they
        are). Any exception makes the bucket eager (:attr:`eager`), with one log line, and returns ``False``.
        """
        live = len(positions)
        rows = batch_bucket(live, slots.rows)
        storage = _storage_for_step(slots, max(slots.lengths[:live]) + 1) if slots.contiguous else None
        if list(positions) != list(range(live)) or storage is None:
            raise ValueError("compile a bucket with a prefilled, contiguous batch")
        try:
            with _COMPILING:
                self._call(self._compiling, rows, tokens, slots, storage)
        except Exception as error:  # whatever the compiler raises (dynamo's own asserts included): eager, not down
            if type(error).__name__ == "BackendCompilerFailed":  # the code generator: every bucket would fail alike
                self.off = _name(error)
                _log.warning("The decode step cannot be compiled here (%s); decoding eagerly", self.off)
                self.ready.clear()
                return False
            self._to_eager(rows, _name(error))
            return False
        self.ready.add(rows)
        return True

    def step(self, slots: SlotCache, positions: Sequence[int], tokens: Sequence[int]) -> torch.Tensor | None:
        """Logits for one decode step of the rows at ``positions`` (feeding ``tokens``), or ``None``: run it eagerly.

        ``None`` when the rows' bucket has no compiled graph, or the rows are not storage rows ``0 .. n - 1`` in
        order (the bucketed graph reads a plain prefix of the storage). The slot lengths are not advanced here.
        Never compiles: a graph whose guards no longer match runs eagerly, once, and its bucket stays eager.
        """
        live = len(positions)
        rows = batch_bucket(live, slots.rows) if live else 0
        if rows not in self.ready or list(positions) != list(range(live)) or not slots.contiguous:
            return None
        storage = _storage_for_step(slots, max(slots.lengths[:live]) + 1)
        if storage is None:
            return None
        _graph_ran.value = False
        try:
            logits = self._call(self._cached, rows, tokens, slots, storage)
        except Exception as error:  # a failing graph: this step and the bucket's later ones run eagerly
            self._to_eager(rows, _name(error))
            return None
        if not getattr(_graph_ran, "value", False):
            # The step ran eagerly inside dynamo (its logits are right); later ones take the worker's eager path.
            self._to_eager(rows, "its graph's guards no longer match (dynamo would recompile)")
            return logits
        self.steps += 1
        return logits

    def _call(
        self,
        entry: Entry,
        rows: int,
        tokens: Sequence[int],
        slots: SlotCache,
        storage: tuple[list[torch.Tensor], list[torch.Tensor]],
    ) -> torch.Tensor:
        """One pass of ``entry`` for the live rows (one per token) padded to ``rows``; the live rows' logits."""
        live = len(tokens)
        keys, values = storage
        device = keys[0].device
        for tensor in (*keys, *values):
            # One graph for every width (the storage grows in 256-token blocks up to the context length), not one
            # per block: on a CPU a compile costs a minute. The batch dimension stays static (bucketed).
            torch._dynamo.maybe_mark_dynamic(tensor, 2)
        lengths = list(slots.lengths[:live]) + [0] * (rows - live)  # dummy rows: column 0 of free rows
        token_tensor = torch.tensor(list(tokens) + [0] * (rows - live), dtype=torch.long, device=device)[:, None]
        position_tensor = torch.tensor(lengths, dtype=torch.long, device=device)
        logits = entry(self.model, self.cache_argument, token_tensor, position_tensor, (keys, values))
        return logits[:live]

    def _to_eager(self, rows: int, why: str) -> None:
        self.ready.discard(rows)
        self.eager[rows] = why
        _log.warning("The compiled decode step failed at batch bucket %d (%s); that bucket decodes eagerly", rows, why)


def _name(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause: dynamo wraps the backend's own error, which is the one to name."""
    cause = error
    while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
        cause = inner
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")


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


def buckets(limit: int) -> list[int]:
    """Every batch bucket of a ``limit``-row storage: 1, 2, 4, ... and ``limit`` itself."""
    return sorted({batch_bucket(rows, limit) for rows in range(1, limit + 1)})


PROBE_PROMPT = 16
"""Tokens of the dummy sequences the start-up probe prefills."""
PROBE_STEPS = 6
"""Decode steps timed each way by the start-up probe (after one untimed step)."""
KEEP_AT_MOST = {True: 1.0, "auto": 0.9}
"""A bucket keeps its compiled step only if that takes at most this fraction of the eager step's time: with
``compile = true``, never slower than eager; with ``"auto"``, clearly faster."""


def choose_decoder(
    loaded: Any, preference: bool | str, slots: SlotCache, cache_argument: str, *, backend: str = "inductor"
) -> CompiledDecoder | None:
    """The compiled decode step ``[inference] compile`` asks for, or ``None`` for eager steps.

    ``True`` and ``"auto"`` (on CUDA) both compile every batch bucket of ``slots`` now, before the worker serves,
    and time each bucket's compiled step against the eager one on dummy sequences; a bucket keeps its graph only
    if it measured no slower (``True``) or clearly faster (``"auto"``) here, since whether it pays depends on the
    machine (the CPU, its load, the model, the batch). One log line per bucket. The probe uses ``slots`` (empty
    before the worker serves) and leaves it empty.
    """
    if preference is False:
        return None
    if preference == "auto" and loaded.device.type != "cuda":
        # Measured on the build machine's CPU (docs/performance.md): compiling takes minutes at every start
        # there, more than the compiled step saves a small bot; `compile = true` opts in (and measures).
        _log.debug('Decoding eagerly on the CPU (compile = "auto"); set compile = true to use the compiled step')
        return None
    decoder = CompiledDecoder(
        loaded.model, cache_argument=cache_argument, mode=default_mode(loaded.device), backend=backend
    )
    started = time.perf_counter()
    _log.info(
        "Compiling the decode step (%s, %s) for batch buckets %s before serving; this takes minutes on a CPU",
        decoder.backend,
        decoder.mode,
        ", ".join(map(str, buckets(slots.rows))),
    )
    for rows in buckets(slots.rows):
        if decoder.off is not None:
            break
        compiles, begun = decoder.compiles, time.perf_counter()
        try:
            with _COMPILING, torch.inference_mode():
                timing = _probe(decoder, loaded, slots, rows)
        except Exception as error:  # the probe's own eager steps failed: this bucket stays eager, the bot serves
            decoder._to_eager(rows, _name(error))
            continue
        finally:
            slots.clear()
        if timing is None:
            continue  # the compile or the step failed, and said why
        compiled_s, eager_s = timing
        kept = compiled_s <= eager_s * KEEP_AT_MOST[preference]
        _log.info(
            "Decode step, batch bucket %d: compiled in %.1f s (%s); %.1f ms vs %.1f ms eager: %s",
            rows,
            time.perf_counter() - begun,
            f"graph {decoder.compiles}" if decoder.compiles > compiles else "no new graph",
            compiled_s * 1000,
            eager_s * 1000,
            "compiled" if kept else "eager (not faster here)",
        )
        if not kept:
            decoder.ready.discard(rows)
            decoder.eager[rows] = f"not faster here ({compiled_s * 1000:.1f} ms vs {eager_s * 1000:.1f} ms eager)"
    _log.info(
        "Compiled decode step (%s, %s): graphs for batch buckets %s, eager for %s; %d graph(s), start-up took %.0f s",
        decoder.backend,
        decoder.mode,
        ", ".join(map(str, sorted(decoder.ready))) or "none",
        ", ".join(map(str, sorted(decoder.eager))) or "none",
        decoder.compiles,
        time.perf_counter() - started,
    )
    return decoder if decoder.active else None


def _probe(decoder: CompiledDecoder, loaded: Any, slots: SlotCache, rows: int) -> tuple[float, float] | None:
    """Compile bucket ``rows``, then median seconds of its step compiled and eager; ``None`` if it failed."""
    device = loaded.device
    model = loaded.model
    positions = list(slots.open(rows))
    ids = torch.ones((rows, PROBE_PROMPT), dtype=torch.long, device=device)
    model(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(PROBE_PROMPT, device=device).expand(rows, -1),
        use_cache=True,
        **{decoder.cache_argument: slots.cache_for(positions, PROBE_PROMPT)},
    )
    slots.extend(positions, [PROBE_PROMPT] * rows)
    tokens = [1] * rows

    def eager() -> None:  # the worker's eager step; steps overwrite the same column: the rows never grow
        lengths = torch.tensor(slots.lengths[:rows], device=device)
        model(
            input_ids=torch.ones((rows, 1), dtype=torch.long, device=device),
            attention_mask=(torch.arange(PROBE_PROMPT + 1, device=device)[None, :] <= lengths[:, None]).long(),
            position_ids=lengths[:, None],
            use_cache=True,
            **{decoder.cache_argument: slots.cache_for(positions, 1)},
        )

    if not decoder.compile(slots, positions, tokens):
        return None
    compiled_s = _median(lambda: decoder.step(slots, positions, tokens))
    if rows not in decoder.ready:
        return None  # a step failed or fell back, and said why
    return compiled_s, _median(eager)


def _median(step: Callable[[], object]) -> float:
    """Median time of ``PROBE_STEPS`` calls of ``step`` after one untimed call."""
    step()
    times = []
    for _ in range(PROBE_STEPS):
        begun = time.perf_counter()
        step()
        times.append(time.perf_counter() - begun)
    return sorted(times)[len(times) // 2]
