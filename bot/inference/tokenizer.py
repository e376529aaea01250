"""The Hugging Face tokenizer behind the :class:`~bot.inference.types.Tokenizer` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class HFTokenizer:
    """Adapts a transformers tokenizer for prompt building and streaming detokenization."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer
        self._special = frozenset(str(t) for t in tokenizer.added_tokens_decoder.values() if t.special)
        self._bos = [ids[0] for ids in [tokenizer("", add_special_tokens=True).input_ids] if ids]
        self.eos_token_id: int | None = tokenizer.eos_token_id

    @property
    def special_tokens(self) -> frozenset[str]:
        return self._special

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
        return str(self.hf.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without re-decoding everything.

    The prefix/read offset scheme used by TGI and vLLM: a short window is decoded twice
    and only the new suffix is emitted; an incomplete UTF-8 sequence is held back.
    """

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(token_id)
        prefix = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._tokenizer.decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """The text still held back (an incomplete character at a length cut shows as U+FFFD)."""
        prefix = self._tokenizer.decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._tokenizer.decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""
