"""The tokenizer as the core sees it: a protocol, so the core never imports transformers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Tokenizer(Protocol):
    """What prompt building needs from a model's tokenizer."""

    @property
    def special_tokens(self) -> frozenset[str]:
        """Every string the tokenizer would turn into a special (added) token."""
        ...

    @property
    def bos_token_ids(self) -> list[int]:
        """The ids the tokenizer puts before a whole prompt (``[bos]`` for LLaMA, often none)."""
        ...

    def special_token_id(self, token: str) -> int:
        """The id of one special token string."""
        ...

    def encode_plain(self, text: str) -> list[int]:
        """Tokenize ``text`` with no BOS/EOS added and special-token strings kept as plain text."""
        ...

    def render_chat_template(self, messages: Sequence[dict[str, str]], *, continue_final_message: bool) -> str:
        """The tokenizer's own ``chat_template`` applied to ``messages`` (with a generation prompt)."""
        ...
