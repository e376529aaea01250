"""Next-token choice for a batch whose rows have their own sampling settings."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bot.inference.types import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, penalty: float, seen: torch.Tensor) -> None:
    """CTRL-style penalty on the tokens in ``seen``, in place on one row of logits."""
    scores = logits.gather(0, seen)
    logits.scatter_(0, seen, torch.where(scores > 0, scores / penalty, scores * penalty))


def sample_batch(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    seen: Sequence[torch.Tensor],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """One token per row of ``logits`` (``[batch, vocab]``), each row by its own params; ``logits`` is left as is."""
    logits = logits.to(dtype=torch.float32, copy=True)  # the penalty works in place: never on the caller's tensor
    for row, p in enumerate(params):
        if p.repetition_penalty != 1.0 and seen[row].numel():
            apply_repetition_penalty(logits[row], p.repetition_penalty, seen[row])
    chosen = logits.argmax(dim=-1)
    sampled = [row for row, p in enumerate(params) if p.temperature > 0]
    if sampled:
        rows = torch.tensor(sampled, device=logits.device)
        temperatures = torch.tensor([params[r].temperature for r in sampled], device=logits.device)
        probs = torch.softmax(logits[rows] / temperatures[:, None], dim=-1)
        top_p = torch.tensor([params[r].top_p for r in sampled], device=logits.device)
        if bool((top_p < 1.0).any()):
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p[:, None]
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        for index, row in enumerate(sampled):
            chosen[row] = torch.multinomial(probs[index], 1, generator=generators[row]).squeeze(0)
    return [int(t) for t in chosen.tolist()]
