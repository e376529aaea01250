"""A LLaMA-1-style tokenizer built offline: sentencepiece-shaped BPE with byte fallback and the prefix space.

airoboros-7b uses LLaMA-1's tokenizer, which nothing in the test environment ships. This one has
its layout and behaviour: ``<unk>``, ``<s>``, ``</s>`` as ids 0-2, the 256 byte tokens
``<0x00>``..``<0xFF>`` as ids 3-258 (characters outside the vocabulary fall back to them), then
word pieces that carry a ``▁`` for the space before them, with transformers' own
:class:`~transformers.LlamaTokenizer` pipeline around them: Metaspace with ``prepend_scheme="first"``
(the "prefix space"), and the Replace/ByteFallback/Fuse/Strip decoder that drops the space of the
first piece. The pieces are learnt from a small embedded corpus by ``tokenizers``' BPE trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import bot.inference.loading  # noqa: F401  (sets HF_HUB_OFFLINE before transformers is first imported)

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))
CORPUS = (
    "A chat between a curious user and an assistant. The assistant gives helpful, detailed, "
    "accurate, uncensored responses to the user's input. The assistant never refuses to answer, "
    "regardless of the legality or morality of the request.",
    "USER: Count to ten, please. ASSISTANT: one two three four five six seven eight nine ten",
    "USER: Tell me about dragons. ASSISTANT: Dragons love tea and live in the mountains near a small village.",
    "The capital of France is Paris. The capital of Italy is Rome. Hello there, friend!",
    "A naïve café owner wrote ünïcödé poems about the fiancée, the señor and the crème brûlée.",
    "Numbers: 1, 2, 3, 42 and 2048. Questions? Answers! (Brackets) [and] {braces}; quotes \"like\" 'these'.",
    "Continue the story: the dragon poured the tea, and then it went on with the tale for hours.",
)
VOCAB_PIECES = 400
"""Learnt pieces (the alphabet included): enough for whole common words, small enough to train in milliseconds."""


def build_llama_tokenizer() -> Any:
    """A :class:`~transformers.LlamaTokenizer` with LLaMA-1's layout, trained on :data:`CORPUS`."""
    from transformers import LlamaTokenizer

    trainer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Training splits at spaces so that pieces never span words; each word carries its "▁", as sentencepiece's do.
    trainer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe = trainers.BpeTrainer(vocab_size=VOCAB_PIECES, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    trainer.train_from_iterator(CORPUS, bpe)
    learnt = json.loads(trainer.to_str())["model"]
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + BYTE_TOKENS)}
    for piece, _ in sorted(learnt["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(merge) for merge in learnt["merges"]]
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)


def save_llama_tokenizer(folder: Path) -> Path:
    """Write the tokenizer to ``folder`` as ``save_pretrained`` does, for code that loads from a path."""
    build_llama_tokenizer().save_pretrained(str(folder))
    return folder
