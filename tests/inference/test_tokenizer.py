"""Streaming detokenization with the real embedded tokenizer."""

from __future__ import annotations

from bot.inference.loading import LoadedModel
from bot.inference.tokenizer import IncrementalDecoder

TEXT = "Dragons 🐉 love tea 🍵, naïve café ünïcödé and 日本語!"


def test_multibyte_characters_split_across_tokens_come_out_whole(embedded):
    """An emoji spread over several byte tokens is held until complete, never shown as U+FFFD."""
    tokenizer = embedded.tokenizer
    ids = tokenizer.encode_plain(TEXT)
    assert len(tokenizer.encode_plain("🐉")) > 1  # the premise: one character, several tokens
    decoder = IncrementalDecoder(tokenizer)

    deltas = [decoder.push(token) for token in ids]

    assert "".join(deltas) == TEXT
    assert all("\ufffd" not in delta for delta in deltas)
    assert "" in deltas  # something was held back


def test_deltas_add_up_to_the_full_decode(embedded):
    """Token by token, the deltas concatenate to exactly what decoding all the ids at once gives."""
    tokenizer = embedded.tokenizer
    ids = tokenizer.encode_plain("  Leading spaces,\n\nnew lines\tand tabs;   then more words.")
    decoder = IncrementalDecoder(tokenizer)

    assert "".join(decoder.push(token) for token in ids) == tokenizer.decode(ids)


def test_flush_returns_what_was_held_back(embedded: LoadedModel) -> None:
    """A reply cut in the middle of a character still returns the bytes it had."""
    decoder = IncrementalDecoder(embedded.tokenizer)
    ids = embedded.tokenizer.encode_plain("ok 🎉")
    shown = "".join(decoder.push(i) for i in ids[:-1])
    assert embedded.tokenizer.decode(ids[:-1]).endswith("\ufffd")  # the cut is inside the emoji
    assert shown + decoder.flush() == embedded.tokenizer.decode(ids[:-1])
