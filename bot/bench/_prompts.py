"""The bench's synthetic prompts: ordinary text that tokenizes to a given length, a prompt of its own per request."""

from __future__ import annotations

import random
from typing import Protocol, cast

from bot.core.engine import Variant
from bot.inference.types import Prompt

SEED_TEXT = (
    "The quick brown fox jumps over the lazy dog while the farmer counts his sheep and the "
    "children sing songs about rivers, mountains, stars and the long road home. "
)


class TextTokenizer(Protocol):
    """What building synthetic text needs from a tokenizer (:class:`~bot.inference.tokenizer.HFTokenizer` has it)."""

    def encode_plain(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def text_of_length(tokenizer: TextTokenizer, source: str, length: int) -> str:
    """A prefix of ``source`` (as text) that tokenizes to ``length`` tokens, or ±1 where none does exactly.

    The first ``length`` ids of ``source`` are decoded; re-encoding that text may give a different
    count (a word cut in two, a sentencepiece tokenizer's lost leading space), so the cut moves by
    the difference until the count is right.
    """
    ids = tokenizer.encode_plain(source)
    if len(ids) < length:
        raise ValueError(f"the source text has {len(ids)} tokens, fewer than {length}")
    best: tuple[int, str] | None = None
    take = length
    for _ in range(8):
        text = tokenizer.decode(ids[:take])
        miss = length - len(tokenizer.encode_plain(text))
        if best is None or abs(miss) < best[0]:
            best = (abs(miss), text)
        if miss == 0:
            break
        take = max(1, min(len(ids), take + miss))
    assert best is not None
    return best[1]


def _source_text(index: int, words: int) -> str:
    """Ordinary words in an order of their own for request ``index``: common tokens, no shared prefix."""
    pool = SEED_TEXT.split()
    order = random.Random(index)
    chosen = [f"Request {index}:"]
    while len(chosen) < words:
        order.shuffle(pool)
        chosen += pool
    return " ".join(chosen)


def synthetic_prompts(variant: Variant, count: int, length: int, vocab: int | None, *, first: int = 0) -> list[Prompt]:
    """``count`` distinct prompts (numbered from ``first``) whose text tokenizes to ``length`` tokens (±1).

    The token ids are the text's own, so the local worker and a server sent the text see the same
    load; with ``vocab`` (a random-weight model smaller than the tokenizer) ids past it wrap around.
    """
    tokenizer = cast(TextTokenizer, variant.builder.tokenizer)
    prompts = []
    for index in range(first, first + count):
        # Every word is at least one token: length + 1 words always hold enough.
        text = text_of_length(tokenizer, _source_text(index, length + 1), length)
        ids = tokenizer.encode_plain(text)
        if vocab is not None:
            ids = [i if i < vocab else i % vocab for i in ids]
        prompts.append(Prompt(text, tuple(ids), ()))
    return prompts


class PromptSupply:
    """Hands out fresh synthetic prompts: no two requests of a run share one."""

    def __init__(self, variant: Variant, length: int, vocab: int | None) -> None:
        self._variant, self._length, self._vocab = variant, length, vocab
        self._next = 0

    def take(self, count: int) -> list[Prompt]:
        prompts = synthetic_prompts(self._variant, count, self._length, self._vocab, first=self._next)
        self._next += count
        return prompts
