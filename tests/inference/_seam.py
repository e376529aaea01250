"""A seam in front of the real model, for what cannot be caused from outside the worker.

It parks the worker inside a forward pass (so requests sent meanwhile are drained together),
records what the model was given, and can make a step fail on purpose: the stand-in for a
request that breaks the device (an OOM on one long row). The forward pass itself is the real one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

import torch

from tests.inference._streams import WAIT_S


class SeamModel:
    """The real model; a forward pass whose input holds ``fail_on`` fails after running (``during`` which steps)."""

    def __init__(
        self,
        model: Any,
        *,
        fail_on: int | None = None,
        during: Literal["prefill", "decode"] = "decode",
        error: type[Exception] = RuntimeError,
    ) -> None:
        self.model = model
        self.fail_on = fail_on
        self.during = during
        self.error = error
        self.failed_batch_sizes: list[int] = []
        self.prefill_shapes: list[tuple[int, int]] = []
        self.largest_input_id = -1
        self._open = threading.Event()
        self._open.set()
        self._parked = threading.Event()

    def __call__(self, *, input_ids: torch.Tensor, **kwargs: Any) -> Any:
        if not self._open.is_set():
            self._parked.set()
            self._open.wait(WAIT_S)
        decoding = input_ids.shape[1] == 1
        if not decoding:
            self.prefill_shapes.append((input_ids.shape[0], input_ids.shape[1]))
        self.largest_input_id = max(self.largest_input_id, int(input_ids.max()))
        out = self.model(input_ids=input_ids, **kwargs)  # grows the cache first, as a late failure would
        failing = self.fail_on is not None and bool((input_ids == self.fail_on).any())
        if failing and decoding == (self.during == "decode"):
            self.failed_batch_sizes.append(input_ids.shape[0])
            raise self.error("injected failure")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    async def hold(self) -> None:
        """Return once the worker is parked at the start of its next forward pass."""
        self._parked.clear()
        self._open.clear()
        assert await asyncio.to_thread(self._parked.wait, WAIT_S), "the worker never reached a forward pass"

    async def release(self, settle_s: float = 0.05) -> None:
        """Let the worker go on, after the requests just sent had ``settle_s`` to reach its inbox."""
        await asyncio.sleep(settle_s)
        self._open.set()
