"""Prompt formats, sanitizing and the token budget.

Two formats (DESIGN.md section 3):

- ``airoboros``: the vicuna_v1.1 layout the model card names (FastChat's ``ADD_COLON_TWO``,
  sep ``" "``, sep2 ``"</s>"``): ``{system} USER: {u1} ASSISTANT: {a1}</s>USER: {u2} ASSISTANT:``.
- ``chat-template``: the tokenizer's own ``chat_template``.

Sanitizing works on two levels. Every piece of text that came from a person or a model
(system prompt included) is rendered through a placeholder, so the template's own
special tokens (``</s>``, ``<|im_end|>``) are known by position; only those become special
token ids, and all other text is tokenized with special-token strings kept as plain text.
A user typing ``</s>`` therefore cannot end a turn. For ``airoboros``, whose turn markers
are plain text, ``USER:`` and ``ASSISTANT:`` inside a message are written with a
full-width colon (U+FF1A) so they cannot forge a turn either.

The token budget (:meth:`PromptBuilder.build`) keeps, highest priority first: the pinned messages (a scene's sheet
with its lorebook entries, chosen sources) and the last turn, always whole; the other turns, newest first, dropped
oldest first in chunks; a character card's example dialogue (``Dialogue.examples``), kept only while every turn fits
with it and dropped first, its last block first. Each drop of an example block changes the prompt's start, so the
next turn prefills the prompt again instead of reusing its cached prefix.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from bot.core.messages import ChatMessage, Dialogue, Role
from bot.core.sanitize import INVISIBLE, defuse_labels, distinct_labels
from bot.errors import PromptError, PromptTooLongError
from bot.inference.types import Prompt, Tokenizer

_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
CHUNK_PARTS = 4
"""The budget drops old turns a quarter of the window at a time (see :meth:`PromptBuilder.chunk_starts`)."""
TURN_OVERHEAD_TOKENS = 4
"""About what a turn's markers cost on top of its text (only chunk boundaries use it; fitting is measured)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """Consecutive messages of one role merged into a single prompt turn."""

    role: Role
    text: str


class PromptFormat(ABC):
    """Turns a system message and turns into one prompt string.

    Texts arrive as opaque placeholders; a format only lays out the markers around them.
    """

    name: str
    stop: tuple[str, ...] = ()
    default_system: str | None = None
    """The system prompt used when a dialogue gives none."""
    adds_bos: bool = True
    """Whether the tokenizer's BOS goes in front (the chat template writes its own)."""

    def neutralize(self, text: str) -> str:
        """Defuse plain-text turn markers inside ``text`` (formats with special-token markers need nothing)."""
        return text

    @abstractmethod
    def layout(self, system: str | None, turns: Sequence[Turn], *, continue_last: bool) -> str:
        """The prompt string for ``turns``, ending where the model starts writing."""


class AiroborosFormat(PromptFormat):
    """vicuna_v1.1 as FastChat renders it, which the model was trained on."""

    name = "airoboros"
    stop = ("USER:",)
    roles: ClassVar[dict[str, str]] = {"user": "USER", "assistant": "ASSISTANT"}
    seps: ClassVar[dict[str, str]] = {"user": " ", "assistant": "</s>"}
    # No word boundary in front ("xUSER:" would still put the marker's characters in the prompt), any case, spaces or
    # invisible characters anywhere in it: what a model could still read as a turn marker.
    _markers = re.compile(
        "(" + "|".join(INVISIBLE.join(word) for word in ("USER", "ASSISTANT")) + f")([\\s{INVISIBLE[1:-2]}]*):",
        re.IGNORECASE,
    )
    default_system: str

    def __init__(self, default_system: str) -> None:
        self.default_system = default_system

    def neutralize(self, text: str) -> str:
        return self._markers.sub("\\1\\2：", text)

    def layout(self, system: str | None, turns: Sequence[Turn], *, continue_last: bool) -> str:
        parts = [(self.default_system if system is None else system) + " "]
        for index, turn in enumerate(turns):
            open_ended = continue_last and index == len(turns) - 1
            parts.append(f"{self.roles[turn.role]}: {turn.text}")
            if not open_ended:
                parts.append(self.seps[turn.role])
        if not continue_last:
            parts.append(f"{self.roles['assistant']}:")
        return "".join(parts)


class ChatTemplateFormat(PromptFormat):
    """The tokenizer's own ``chat_template`` (the embedded model and most modern models)."""

    name = "chat-template"
    adds_bos = False

    def __init__(self, tokenizer: Tokenizer, default_system: str | None) -> None:
        self.tokenizer = tokenizer
        self.default_system = default_system

    def layout(self, system: str | None, turns: Sequence[Turn], *, continue_last: bool) -> str:
        system = self.default_system if system is None else system
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": turn.role, "content": turn.text} for turn in turns]
        return self.tokenizer.render_chat_template(messages, continue_final_message=continue_last)


def make_format(name: str, tokenizer: Tokenizer, default_system: str | None) -> PromptFormat:
    """The format called ``name`` (``airoboros`` or ``chat-template``)."""
    if name == "airoboros":
        return AiroborosFormat(default_system or "")
    if name == "chat-template":
        return ChatTemplateFormat(tokenizer, default_system)
    raise PromptError(f"unknown prompt format {name!r}; use airoboros or chat-template")


def merge_turns(messages: Sequence[ChatMessage]) -> list[Turn]:
    """Merge consecutive same-role messages; with several named humans, prefix each message with its author.

    Each author (by ``author_id``, else by name) gets one label, :func:`~bot.core.sanitize.distinct_labels` in the
    order they first spoke: two people showing the same display name read ``Alex`` and ``Alex (2)``, so a nickname
    change cannot make one pass for the other. A line inside a message that starts with any author's label and a
    colon gets a full-width colon (:func:`~bot.core.sanitize.defuse_labels`), so nobody can write a line as someone
    else.
    """
    authors: dict[object, str] = {}
    for message in messages:
        if message.role == "user" and message.name:
            key = message.author_id if message.author_id is not None else message.name
            authors[key] = message.name  # the latest name an author goes by
    labels = dict(zip(authors, distinct_labels(list(authors.values())), strict=True))
    turns: list[Turn] = []
    for message in messages:
        text = message.content
        if message.role == "user" and message.name and len(labels) > 1:
            label = labels[message.author_id if message.author_id is not None else message.name]
            text = f"{label}: {defuse_labels(text, labels.values())}"
        if turns and turns[-1].role == message.role:
            turns[-1] = Turn(message.role, f"{turns[-1].text}\n{text}")
        else:
            turns.append(Turn(message.role, text))
    return turns


class PromptBuilder:
    """Renders dialogues for one model: its format, its tokenizer, its context window."""

    def __init__(self, fmt: PromptFormat, tokenizer: Tokenizer, *, context_length: int) -> None:
        self.format = fmt
        self.tokenizer = tokenizer
        self.context_length = context_length
        specials = sorted(tokenizer.special_tokens, key=len, reverse=True)
        self._specials = re.compile("|".join(re.escape(s) for s in specials)) if specials else None

    def render(
        self, system: str | None, turns: Sequence[Turn], *, continue_last: bool = False
    ) -> tuple[str, list[int]]:
        """The exact prompt string for ``turns`` and its sanitized token ids (no budget applied)."""
        texts = [] if system is None else [system]
        texts += [self.format.neutralize(turn.text) for turn in turns]
        holders = [f"{_OPEN}{i}{_CLOSE}" for i in range(len(texts))]
        offset = 0 if system is None else 1
        skeleton = self.format.layout(
            None if system is None else holders[0],
            [Turn(turn.role, holders[offset + i]) for i, turn in enumerate(turns)],
            continue_last=continue_last,
        )
        ids = list(self.tokenizer.bos_token_ids) if self.format.adds_bos else []
        run: list[str] = []
        for piece, is_special in self._split_specials(skeleton):
            if is_special:
                ids += self._encode_run(run)
                run = []
                ids.append(self.tokenizer.special_token_id(piece))
            else:
                run.append(_PLACEHOLDER.sub(lambda m: texts[int(m.group(1))], piece))
        ids += self._encode_run(run)
        text = _PLACEHOLDER.sub(lambda m: texts[int(m.group(1))], skeleton)
        return text, ids

    def _split_specials(self, skeleton: str) -> list[tuple[str, bool]]:
        if self._specials is None:
            return [(skeleton, False)]
        pieces: list[tuple[str, bool]] = []
        position = 0
        for match in self._specials.finditer(skeleton):
            pieces.append((skeleton[position : match.start()], False))
            pieces.append((match.group(0), True))
            position = match.end()
        pieces.append((skeleton[position:], False))
        return pieces

    def _encode_run(self, run: list[str]) -> list[int]:
        text = "".join(run)
        return self.tokenizer.encode_plain(text) if text else []

    def build(self, dialogue: Dialogue, *, max_new_tokens: int) -> Prompt:
        """Render ``dialogue`` within the window: its examples go first, then the oldest unpinned turns, in chunks.

        The priority, highest first: the pinned messages and the last turn (always kept), the other turns (kept
        newest first), the examples (``dialogue.examples``, kept while the prompt holds every turn with them; the
        last example goes first). Turns go in chunks of about a quarter of the window (:meth:`chunk_starts`), so a
        long conversation keeps the same first turn, and so the same token prefix, for several turns: the local
        worker reuses the KV cache of a prompt's unchanged prefix. Raises :class:`PromptTooLongError` if even the
        pinned turns plus the last turn do not fit.
        """
        available = self.context_length - max_new_tokens
        if available <= 0:
            raise PromptError(
                f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in a "
                f"{self.context_length}-token context window"
            )
        if not dialogue.messages:
            raise PromptError("there is nothing to answer: the conversation is empty")
        for kept in range(len(dialogue.examples), 0, -1):
            whole = self._fit(_with_examples(dialogue, kept), available, drop_turns=False)
            if whole is not None:
                return whole
        fitted = self._fit(_with_examples(dialogue, 0), available, drop_turns=True)
        assert fitted is not None  # with drop_turns, it fits or raises
        return fitted

    def _fit(self, dialogue: Dialogue, available: int, *, drop_turns: bool) -> Prompt | None:
        """The prompt of ``dialogue`` in ``available`` tokens, old turns dropped as needed (None if that is needed
        and ``drop_turns`` is false)."""
        pinned = merge_turns(dialogue.messages[: dialogue.pinned])
        rest = merge_turns(dialogue.messages[dialogue.pinned :])
        if pinned and rest and pinned[-1].role == rest[0].role:
            pinned[-1] = Turn(pinned[-1].role, f"{pinned[-1].text}\n{rest[0].text}")
            rest = rest[1:]

        def attempt(start: int) -> tuple[str, list[int]]:
            return self.render(dialogue.system, pinned + rest[start:], continue_last=dialogue.continue_last)

        # Candidate starts keep roles alternating after the pinned part; the last turn is always kept.
        first_role = "assistant" if pinned and pinned[-1].role == "user" else "user"
        starts = [i for i, turn in enumerate(rest) if turn.role == first_role or i == len(rest) - 1]
        if not starts:
            starts = [max(len(rest) - 1, 0)]
        text, ids = attempt(starts[0])
        if len(ids) <= available:
            return Prompt(text, tuple(ids), self._stops(dialogue), dropped_turns=starts[0])
        if not drop_turns:
            return None
        # The earliest chunk boundary that fits; past the last boundary, the earliest start that fits.
        chunks = self.chunk_starts(rest, starts, available)
        fitting = self._earliest_fitting(chunks[1:], attempt, available)
        if fitting is None:
            fitting = self._earliest_fitting([s for s in starts if s > chunks[-1]], attempt, available)
        if fitting is None:
            needed = len(attempt(starts[-1])[1])
            raise PromptTooLongError(needed, available)
        start, text, ids = fitting
        return Prompt(text, tuple(ids), self._stops(dialogue), dropped_turns=start)

    def chunk_starts(self, turns: Sequence[Turn], starts: Sequence[int], available: int) -> list[int]:
        """Where the budget may cut ``turns``: ``starts[0]``, then a start every quarter of ``available`` tokens.

        Counted from the first turn with each turn's own token count, so the boundaries of a conversation do not
        move as it grows at the end: the prompt keeps starting at the same boundary until it no longer fits, then
        drops a whole chunk (down to about three quarters of the window).
        """
        chunk = max(available // CHUNK_PARTS, 1)
        sizes = [len(self.tokenizer.encode_plain(turn.text)) + TURN_OVERHEAD_TOKENS for turn in turns]
        boundaries = [starts[0]]
        allowed = set(starts)
        since = 0
        for index in range(starts[0], len(turns)):
            if since >= chunk and index in allowed:
                boundaries.append(index)
                since = 0
            since += sizes[index]
        return boundaries

    @staticmethod
    def _earliest_fitting(
        candidates: Sequence[int], attempt: Callable[[int], tuple[str, list[int]]], available: int
    ) -> tuple[int, str, list[int]] | None:
        """The earliest of ``candidates`` whose prompt fits (the token count falls as the start moves on)."""
        low, high = 0, len(candidates) - 1
        best: tuple[int, str, list[int]] | None = None
        while low <= high:
            middle = (low + high) // 2
            text, ids = attempt(candidates[middle])
            if len(ids) <= available:
                best, high = (candidates[middle], text, ids), middle - 1
            else:
                low = middle + 1
        return best

    def _stops(self, dialogue: Dialogue) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.format.stop + dialogue.extra_stops))


def _with_examples(dialogue: Dialogue, kept: int) -> Dialogue:
    """``dialogue`` with its first ``kept`` examples in place among the pinned messages (and no other examples)."""
    at = dialogue.pinned if dialogue.examples_at is None else min(dialogue.examples_at, dialogue.pinned)
    messages = dialogue.messages[:at] + dialogue.examples[:kept] + dialogue.messages[at:]
    return dataclasses.replace(dialogue, messages=messages, pinned=dialogue.pinned + kept, examples=())
