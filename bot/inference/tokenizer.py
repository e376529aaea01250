"""The Hugging Face tokenizer behind the :class:`~bot.inference.types.Tokenizer` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONTEXT_TOKENS = 5
"""How many prompt tokens (special ones not counted) a reply is decoded after; vLLM starts from 5 too."""
_MAX_CHARACTER_TOKENS = 4
"""The most tokens one character can span (a UTF-8 character has at most 4 bytes)."""


class HFTokenizer:
    """Adapts a transformers tokenizer for prompt building and streaming detokenization."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer
        added = tokenizer.added_tokens_decoder
        self._special = frozenset(str(t) for t in added.values() if t.special)
        self._special_ids = frozenset(int(i) for i, t in added.items() if t.special)
        self._bos = [ids[0] for ids in [tokenizer("", add_special_tokens=True).input_ids] if ids]
        self.eos_token_id: int | None = tokenizer.eos_token_id

    @property
    def special_tokens(self) -> frozenset[str]:
        return self._special

    @property
    def special_token_ids(self) -> frozenset[int]:
        """The ids of the special tokens, which :meth:`decode` leaves out."""
        return self._special_ids

    @property
    def bos_token_ids(self) -> list[int]:
        return list(self._bos)

    def special_token_id(self, token: str) -> int:
        return int(self.hf.convert_tokens_to_ids(token))

    def encode_plain(self, text: str) -> list[int]:
        return list(self.hf(text, add_special_tokens=False, split_special_tokens=True).input_ids)

    def render_chat_template(self, messages: Sequence[dict[str, str]], *, continue_final_message: bool) -> str:
        if not getattr(self.hf, "chat_template", None):
            from bot.errors import PromptError

            raise PromptError('this model\'s tokenizer has no chat_template; use prompt_format = "airoboros"')
        return str(
            self.hf.apply_chat_template(
                list(messages),
                tokenize=False,
                add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message,
            )
        )

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens left out."""
        return str(self.hf.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))


class IncrementalDecoder:
    """Turns generated token ids into text deltas, in the context of the ids before them.

    The prefix/read offset scheme of TGI and vLLM (``tokenizers.decoders.DecodeStream`` is the
    same scheme): a short window of ids is decoded with and without the newest ones and only the
    new suffix is emitted; text ending in an incomplete UTF-8 sequence (U+FFFD) is held back.

    The window starts with the tail of ``context`` (the prompt), because decoding depends on it:
    LLaMA's sentencepiece decoder drops the space of a sequence's first piece, so ``"▁five"``
    alone is ``"five"`` but ``" five"`` after ``"four"``. The deltas (and :meth:`flush`) add up
    to ``decode(context + generated)[len(decode(context)):]``: what decoding the whole sequence
    shows after the prompt.

    Not ``DecodeStream`` itself, though it takes the same seed (``ids=``): its ``step`` raises
    when a later byte turns earlier text into U+FFFD (LLaMA's ByteFallback rejects a whole byte
    run), which would fail every row of the worker's batch; it has no flush for a reply cut
    mid-character; and after a seed ending mid-character it emits the seed's text again.
    Decoding here costs microseconds a token, nothing next to a forward pass.
    """

    def __init__(self, tokenizer: HFTokenizer, context: Sequence[int] = ()) -> None:
        self._tokenizer = tokenizer
        # The window: ids already shown (the prompt's tail at first), then from _read_offset those not shown yet.
        self._ids = _window_start(tokenizer, context)
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(token_id)
        prefix = self._tokenizer.decode(self._ids[: self._read_offset])
        full = self._tokenizer.decode(self._ids)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            # The next window starts with the ids just emitted: the text they end with is complete,
            # so they are the context the next token decodes in, and older ids no longer matter.
            del self._ids[: self._read_offset]
            self._read_offset = len(self._ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """The text still held back (an incomplete character at a length cut shows as U+FFFD)."""
        prefix = self._tokenizer.decode(self._ids[: self._read_offset])
        full = self._tokenizer.decode(self._ids)
        self._read_offset = len(self._ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


def _window_start(tokenizer: HFTokenizer, context: Sequence[int]) -> list[int]:
    """The tail of ``context`` a decoding window starts with.

    It holds :data:`CONTEXT_TOKENS` ids that are not special: special ones decode to nothing, and
    a window with no text before the first generated token would decode it as a sequence start
    (LLaMA's lost space). It starts at a character boundary: LLaMA's ByteFallback decodes a byte
    run that starts mid-character as U+FFFD throughout, including the bytes after it.
    """
    special = tokenizer.special_token_ids
    start, seen = len(context), 0
    while start > 0 and seen < CONTEXT_TOKENS:
        start -= 1
        seen += context[start] not in special
    for _ in range(_MAX_CHARACTER_TOKENS - 1):
        if start == 0 or not tokenizer.decode(context[start:]).startswith("\ufffd"):
            break
        start -= 1
    return list(context[start:])
