"""Streaming detokenization with the real embedded tokenizer and a LLaMA-1-style one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ModelConfig
from bot.errors import ModelLoadError
from bot.inference.loading import LoadedModel, load_tokenizer
from bot.inference.tokenizer import HFTokenizer, IncrementalDecoder

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


# -- decoding in the prompt's context, with LLaMA's tokenizer and the embedded one ----------------

PROPERTY = settings(max_examples=300, deadline=None)
WORDS = ("one", "four", "five", "the", "dragon", "tea", "Hello", "USER:", "ASSISTANT:", "naïve", "café", "ünïcödé")
ODD = ("é", "🐉", "🍵", "日本語", "👩‍👩‍👧", "x", ",", ".", "!", "'", "1", "42")
SEPARATORS = ("", " ", "  ", "\n", "\t")


def texts() -> st.SearchStrategy[str]:
    """Text of common words, accents, emoji and CJK (byte-fallback pieces on LLaMA), in any spacing."""
    parts = st.tuples(st.sampled_from(SEPARATORS), st.sampled_from(WORDS + ODD))
    return st.lists(parts, max_size=8).map(lambda drawn: "".join(sep + word for sep, word in drawn))


@pytest.fixture(scope="module", params=["llama", "embedded"])
def any_tokenizer(request: pytest.FixtureRequest) -> HFTokenizer:
    """The LLaMA-1-style tokenizer (sentencepiece, prefix space), then the embedded byte-level one."""
    if request.param == "llama":
        return request.getfixturevalue("llama_tokenizer")
    return request.getfixturevalue("embedded_tokenizer")[0]


def stream(tokenizer: HFTokenizer, context: list[int], generated: list[int]) -> list[str]:
    """The deltas of ``generated`` decoded after ``context``, the flush last."""
    decoder = IncrementalDecoder(tokenizer, context)
    return [decoder.push(token) for token in generated] + [decoder.flush()]


def test_llama_style_tokenizer_has_llama_layout(llama_tokenizer: HFTokenizer) -> None:
    """The test tokenizer numbers its tokens as LLaMA-1's: <unk> <s> </s>, then the 256 byte tokens."""
    hf = llama_tokenizer.hf
    assert hf.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    assert (llama_tokenizer.bos_token_ids, llama_tokenizer.eos_token_id) == ([1], 2)
    assert llama_tokenizer.special_token_ids == {0, 1, 2}


def test_llama_style_tokenizer_drops_the_space_of_a_first_piece(llama_tokenizer: HFTokenizer) -> None:
    """As on LLaMA, "▁five" decodes to "five" alone but to " five" after "four": the premise of the lost space."""
    hf = llama_tokenizer.hf
    ids = llama_tokenizer.encode_plain("four five")
    assert hf.convert_ids_to_tokens(ids) == ["▁four", "▁five"]
    assert (llama_tokenizer.decode(ids[1:]), llama_tokenizer.decode(ids)) == ("five", "four five")
    assert hf.convert_ids_to_tokens(llama_tokenizer.encode_plain("🐉")) == ["▁", "<0xF0>", "<0x9F>", "<0x90>", "<0x89>"]


def test_first_generated_token_keeps_its_space_after_the_prompt(llama_tokenizer: HFTokenizer) -> None:
    """Continuing "one two three four" with "▁five ▁six" streams " five six", not "five six"."""
    context = llama_tokenizer.bos_token_ids + llama_tokenizer.encode_plain("one two three four")
    generated = llama_tokenizer.encode_plain("five six")

    assert "".join(stream(llama_tokenizer, context, generated)) == " five six"


def test_reply_after_the_prompt_decodes_as_the_whole_sequence(llama_tokenizer: HFTokenizer) -> None:
    """The first token of a reply after "ASSISTANT:" shows what decoding the prompt and reply together shows."""
    context = llama_tokenizer.bos_token_ids + llama_tokenizer.encode_plain("USER: Say hello. ASSISTANT:")
    generated = [*llama_tokenizer.encode_plain("Hello there, friend!"), 2]
    whole = llama_tokenizer.decode(context + generated)

    assert "".join(stream(llama_tokenizer, context, generated)) == " Hello there, friend!"
    assert whole.endswith("ASSISTANT: Hello there, friend!")


def test_prompt_of_only_special_tokens_decodes_the_reply_as_a_start(llama_tokenizer: HFTokenizer) -> None:
    """After a prompt with no text (just <s>), the first piece loses its space, as in the whole decode."""
    generated = llama_tokenizer.encode_plain("five six")

    assert "".join(stream(llama_tokenizer, [1], generated)) == llama_tokenizer.decode([1, *generated]) == "five six"


def test_special_tokens_at_the_end_of_the_prompt_do_not_hide_its_text(llama_tokenizer: HFTokenizer) -> None:
    """A prompt ending in special tokens still gives the first piece its space after the text before them."""
    context = [1, *llama_tokenizer.encode_plain("four"), *[2] * 8]

    assert "".join(stream(llama_tokenizer, context, llama_tokenizer.encode_plain("five"))) == " five"


def test_prompt_ending_with_an_emoji_does_not_garble_the_next_one(llama_tokenizer: HFTokenizer) -> None:
    """Byte tokens right after the prompt's own byte tokens still come out as the character they make."""
    context = llama_tokenizer.encode_plain("tea 🐉🐉")
    generated = llama_tokenizer.encode_plain("🍵")[1:]  # the byte tokens alone, as in one run with the prompt's
    assert len(generated) == 4

    deltas = stream(llama_tokenizer, context, generated)

    assert deltas == ["", "", "", "🍵", ""]


@PROPERTY
@given(before=texts(), trailing_specials=st.integers(0, 2), after=st.lists(st.one_of(texts(), st.none()), max_size=4))
def test_deltas_add_up_to_the_decode_after_the_prompt(
    any_tokenizer: HFTokenizer, before: str, trailing_specials: int, after: list[str | None]
) -> None:
    """Deltas plus flush are ``decode(P + G)`` minus ``decode(P)``, with nothing shown half a character."""
    tokenizer = any_tokenizer
    eos = tokenizer.eos_token_id
    assert eos is not None
    context = tokenizer.bos_token_ids + tokenizer.encode_plain(before) + [eos] * trailing_specials
    generated = [token for part in after for token in (tokenizer.encode_plain(part) if part is not None else [eos])]
    shown, whole = tokenizer.decode(context), tokenizer.decode(context + generated)
    assert whole.startswith(shown)

    deltas = stream(tokenizer, context, generated)

    assert "".join(deltas) == whole[len(shown) :]
    assert all("\ufffd" not in delta for delta in deltas)


def test_tokenizer_folder_without_a_model_config_asks_for_context_length(llama_tokenizer_folder: Path) -> None:
    """A bare tokenizer folder gives no context window: the load error names ``context_length`` (no 2048 guess)."""
    variant = ModelConfig(name="llama", tokenizer=str(llama_tokenizer_folder))

    with pytest.raises(ModelLoadError, match=r"^model 'llama': .* has no config.json .*; set context_length$"):
        load_tokenizer(variant)
