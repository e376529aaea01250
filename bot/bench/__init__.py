"""``python -m bot bench``: what Discord users feel when many people talk at once.

It drives the real scheduler and worker (not the model directly) with synthetic
conversations of a fixed prompt length, each producing exactly ``max_new_tokens``
(EOS is ignored), and reports one JSON object:

- ``lone``: requests sent one by one to an idle worker: a lone request's time to first token;
- ``concurrent``: the requests ``concurrency`` at a time: time to first token p50/p95,
  per-stream tokens/s p50, aggregate tokens/s;
- ``baseline``: the same requests one at a time, and ``speedup`` = aggregate / baseline;
- ``late_joiner``: the time to first token of a request arriving while ``concurrency - 1``
  others are mid-generation, next to the lone request's (it should join the running batch)
  and to the time the running batch still needed to finish (``batch_remaining_s``);
- ``memory``: peak process RSS, and peak GPU memory on a GPU, over the whole run;
- ``load_average`` at start, ``repeat``, and ``spread``: with ``repeat`` > 1 the whole
  measurement runs that many times on the same loaded model, every figure above is the
  median of the runs and ``spread`` holds each figure's ``min`` and ``max`` (keyed by its
  dotted path, e.g. ``concurrent.aggregate_tokens_per_s``).

The synthetic prompts are text that tokenizes to the requested length, and their token
ids are that text's, so a remote server sent text (``send_token_ids = false``) carries the
same load as one sent ids. Every request in a run has a prompt of its own, so no prefix
cache makes a later phase look faster than an earlier one.

- ``follow_up`` (with ``--history-tokens N``): the time to first token of a follow-up in a thread with N tokens
  of history whose KV cache the worker kept, next to a fresh ``prompt_tokens`` prompt's (see :func:`follow_up`).
"""

from ._figures import Phase, Timing, median_figures, print_result, spread_of
from ._prompts import SEED_TEXT, synthetic_prompts, text_of_length
from ._run import BenchOptions, bench_config, busy_warning, cpu_count, follow_up, run_bench

__all__ = [
    "SEED_TEXT",
    "BenchOptions",
    "Phase",
    "Timing",
    "bench_config",
    "busy_warning",
    "cpu_count",
    "follow_up",
    "median_figures",
    "print_result",
    "run_bench",
    "spread_of",
    "synthetic_prompts",
    "text_of_length",
]
