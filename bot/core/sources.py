"""Context-obedient answers: sources, the card's ``BEGININPUT`` blocks, and passages picked to fit the window.

The model card's "Context obedient question answering" format, as the user turn of the prompt::

    BEGININPUT
    BEGINCONTEXT
    {key}: {value}
    ENDCONTEXT
    {text}
    ENDINPUT
    ... one block per source ...
    BEGININSTRUCTION
    {instruction}
    ENDINSTRUCTION

The blocks go through :class:`~bot.core.prompts.PromptBuilder` like any user text, so special-token strings stay
plain text and ``USER:``/``ASSISTANT:`` cannot forge a turn. The block markers are plain words too, so a source (or
a question) could close its block and open an instruction of its own: every marker word in text that came from
people is written with a space (``END INPUT``), and newlines in metadata become spaces, so the only markers in a
prompt are the ones laid out here.

Sources are split into passages at paragraph boundaries when they are stored. When the sources in scope do not
fit the window whole, passages are picked best first (bm25 over the store's FTS5 index, then the first passages
of each source in turn) and kept while the prompt, measured with the model's real tokenizer, still fits. Only
those candidates are read from the store (at most :data:`_MAX_CANDIDATES`), never every source's whole text, and
the splitting and measuring run in a worker thread: the event loop (Discord's heartbeats, other people's replies)
never waits for them.

How much a channel and a person may store is capped (``[sources]``), checked in the transaction that stores.

What may become a source (file types, sizes, UTF-8 text, url, title) is checked in :mod:`bot.core.source_intake`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.config import SkillsConfig, SourcesConfig
from bot.core.chat import ChatService
from bot.core.chat_prompts import Author, ChatOptions
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import PromptBuilder
from bot.core.replies import Reply
from bot.core.sanitize import INVISIBLE
from bot.core.source_intake import (
    SourceError,
    check_caps,
    check_file_type,
    check_size,
    check_url,
    decode_text_file,
    default_title,
    is_text_file,
    metadata_for,
    size_text,
)
from bot.errors import PromptTooLongError
from bot.store import SourceUsage, StoredSource

# The intake's names are re-exported: bot/frontends/discord imports them from here.
__all__ = [
    "CITE",
    "DONT_MAKE_UP",
    "NO_SOURCES",
    "PASSAGE_CHARS",
    "Answer",
    "SourceError",
    "SourceService",
    "SourceText",
    "blocks_prompt",
    "check_caps",
    "check_file_type",
    "check_size",
    "context_block",
    "decode_text_file",
    "is_text_file",
    "metadata_for",
    "neutralize_markers",
    "size_text",
    "split_passages",
    "stored_text",
]

DONT_MAKE_UP = "Don't make up answers if you don't know."
"""The sentence the model card recommends adding to the instruction."""
CITE = "Cite your sources."
PASSAGE_CHARS = 800
"""The longest passage, in characters (a couple of hundred tokens): small enough to pick, big enough to read."""
NO_SOURCES = "There are no sources here yet. Add one with `/source add` (typed text or a text file), then ask again."

# No word boundaries: "_BEGININSTRUCTION", "1ENDINSTRUCTION" or "ENDINPUT_" still spell a marker to the model.
_MARKER = re.compile(
    f"({INVISIBLE.join('BEGIN')}|{INVISIBLE.join('END')}){INVISIBLE}"
    f"({INVISIBLE.join('INPUT')}|{INVISIBLE.join('CONTEXT')}|{INVISIBLE.join('INSTRUCTION')})",
    re.IGNORECASE,
)
_PARAGRAPHS = re.compile(r"\n\s*\n")
_MAX_CANDIDATES = 200
_MISSES_BEFORE_FULL = 4
"""Passages in a row that no longer fit before the window counts as full."""
_JOIN_TOKENS = 2
"""Tokens counted for the blank line between two passages of a source."""


@dataclass(frozen=True, slots=True)
class SourceText:
    """One source as the prompt shows it: metadata lines in order, then its text."""

    metadata: tuple[tuple[str, str], ...]
    text: str

    @property
    def title(self) -> str:
        return dict(self.metadata).get("title") or "untitled"

    @property
    def url(self) -> str | None:
        return dict(self.metadata).get("url")


def stored_text(source: StoredSource) -> SourceText:
    """A stored source as the prompt shows it."""
    return SourceText(metadata_for(source.title, source.url, source.author_name, source.created_at), source.text)


@dataclass(slots=True)
class Answer:
    """A grounded answer being generated, and the sources its prompt holds (for the footer)."""

    reply: Reply
    used: list[SourceText] = field(default_factory=list)


# -- the blocks format ---------------------------------------------------------------------------------------------


def neutralize_markers(text: str) -> str:
    """Write the block markers in ``text`` as two words, so text from people cannot open or close a block."""
    return _MARKER.sub(r"\1 \2", text)


def _one_line(text: str) -> str:
    return neutralize_markers(" ".join(text.split()))


def context_block(source: SourceText) -> str:
    """One ``BEGININPUT`` ... ``ENDINPUT`` block, ending with a newline, metadata in the order given."""
    lines = "".join(f"{_one_line(key)}: {_one_line(value)}\n" for key, value in source.metadata)
    return f"BEGININPUT\nBEGINCONTEXT\n{lines}ENDCONTEXT\n{neutralize_markers(source.text.strip())}\nENDINPUT\n"


def blocks_prompt(sources: Sequence[SourceText], instruction: str) -> str:
    """The card's closed-context prompt: every source's block, then the instruction block."""
    blocks = "".join(context_block(source) for source in sources)
    return f"{blocks}BEGININSTRUCTION\n{neutralize_markers(instruction.strip())}\nENDINSTRUCTION"


# -- passages ------------------------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> list[str]:
    """A paragraph longer than ``limit`` cut at line ends, else at spaces, else anywhere."""
    for separator in ("\n", " "):
        units = text.split(separator)
        if len(units) > 1:
            return _pack([piece for unit in units if unit.strip() for piece in _cut(unit, limit)], separator, limit)
    return [text[i : i + limit] for i in range(0, len(text), limit)] if len(text) > limit else [text]


def _pack(pieces: Sequence[str], separator: str, limit: int) -> list[str]:
    """Join consecutive pieces while the result stays within ``limit``."""
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + len(separator) + len(piece) <= limit:
            packed[-1] = f"{packed[-1]}{separator}{piece}"
        else:
            packed.append(piece)
    return packed


def split_passages(text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Split ``text`` into passages of at most ``limit`` characters at paragraph boundaries (deterministic)."""
    paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
    return _pack([piece for p in paragraphs for piece in _cut(p, limit)], "\n\n", limit)


# -- fitting -------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Doc:
    """A source and the passages of it that may be picked, by their place in it."""

    source: SourceText
    passages: dict[int, str]
    chosen: set[int] = field(default_factory=set)

    def picked(self) -> SourceText:
        return SourceText(self.source.metadata, "\n\n".join(self.passages[i] for i in sorted(self.chosen)))


def _in_turn(docs: Sequence[_Doc]) -> list[tuple[int, int]]:
    """Every passage as (doc, seq): the first of each doc in turn, then the second of each, and so on."""
    places = [sorted(doc.passages) for doc in docs]
    rounds = max((len(seqs) for seqs in places), default=0)
    return [(d, seqs[r]) for r in range(rounds) for d, seqs in enumerate(places) if r < len(seqs)]


class _Fitter:
    """Measures candidate prompts with the model's real tokenizer and budget."""

    def __init__(self, builder: PromptBuilder, options: ChatOptions, max_new_tokens: int, instruction: str) -> None:
        self.builder = builder
        self.options = options
        self.max_new_tokens = max_new_tokens
        self.instruction = instruction

    def fits(self, sources: Sequence[SourceText]) -> str | None:
        """The prompt text if ``sources`` fit with the instruction, else None."""
        text = blocks_prompt(sources, self.instruction)
        try:
            self.builder.build(
                Dialogue(self.options.system, (ChatMessage("user", text),)), max_new_tokens=self.max_new_tokens
            )
        except PromptTooLongError:
            return None
        return text

    def select(self, docs: list[_Doc], ranked: Sequence[tuple[int, int]]) -> tuple[str, list[SourceText]]:
        """Keep passages best first while the prompt fits: the ranked ones, then the rest, a passage per source in
        turn; a source shows its chosen passages in their original order. CPU work: run it off the event loop.

        Each candidate is measured alone (with its block's lines for a source's first passage), so the cost grows
        with the passages tried, not with the prompt times the passages; the prompt is then measured whole, and
        the last passage taken is put back while it does not fit.
        """
        # The question alone must fit: if it does not, the builder's error says how long it is.
        question = self.builder.build(
            Dialogue(self.options.system, (ChatMessage("user", blocks_prompt([], self.instruction)),)),
            max_new_tokens=self.max_new_tokens,
        )
        room = self.builder.context_length - self.max_new_tokens - len(question.token_ids)
        taken: list[tuple[int, int]] = []
        misses = 0
        for doc, seq in list(dict.fromkeys([*ranked, *_in_turn(docs)]))[:_MAX_CANDIDATES]:
            cost = self._count(docs[doc].passages[seq]) + _JOIN_TOKENS
            if not docs[doc].chosen:
                cost += self._count(context_block(SourceText(docs[doc].source.metadata, "")))
            if cost > room:
                misses += 1
                if misses >= _MISSES_BEFORE_FULL:
                    break
                continue
            docs[doc].chosen.add(seq)
            taken.append((doc, seq))
            room, misses = room - cost, 0
        while taken:
            picked = [d.picked() for d in docs if d.chosen]
            text = self.fits(picked)
            if text is not None:
                return text, picked
            doc, seq = taken.pop()
            docs[doc].chosen.discard(seq)
        raise SourceError("None of the sources fits in the model's context window next to this question.")

    def _count(self, text: str) -> int:
        return len(self.builder.tokenizer.encode_plain(text))


class SourceService:
    """Sources per channel and answers grounded in them; frontends call this, never the store directly."""

    def __init__(self, chat: ChatService, settings: SkillsConfig, limits: SourcesConfig | None = None) -> None:
        self.chat = chat
        self.store = chat.store
        self.settings = settings
        self.limits = limits or SourcesConfig()

    async def add(
        self,
        *,
        scope_id: int,
        guild_id: int | None,
        author: Author,
        text: str,
        title: str | None = None,
        filename: str | None = None,
        url: str | None = None,
    ) -> StoredSource:
        """Store ``text`` as a source of channel ``scope_id``; checks its size, url and title first, and the
        channel's and the author's caps as it stores."""
        if not text.strip():
            raise SourceError("The source is empty: give its text, or attach a text file.")
        check_size(len(text.encode()), self.settings.source_max_bytes)
        checked_url = check_url(url)

        def admit(usage: SourceUsage) -> None:
            check_caps(usage, len(text.strip().encode()), self.limits)

        return await self.store.sources.add(
            scope_id=scope_id,
            guild_id=guild_id,
            title=default_title(title, filename, text),
            url=checked_url,
            author_id=author.id,
            author_name=author.name,
            text=text.strip(),
            passages=await asyncio.to_thread(split_passages, text),
            admit=admit,
        )

    async def listing(self, scope_ids: Sequence[int]) -> list[StoredSource]:
        """The sources in scope (without their text), oldest first."""
        return await self.store.sources.in_scope(scope_ids, with_text=False)

    async def remove(self, source_id: int, scope_ids: Sequence[int], user_id: int, *, moderator: bool) -> StoredSource:
        """Delete source ``source_id`` if it is in scope and ``user_id`` added it (or is a ``moderator``)."""
        source = await self.store.sources.get(source_id)
        if source is None or source.scope_id not in scope_ids:
            raise SourceError(f"There is no source #{source_id} here; `/source list` shows this channel's sources.")
        if source.author_id != user_id and not moderator:
            raise SourceError(
                f"Only the person who added source #{source_id}, or someone with Manage Messages, can remove it."
            )
        await self.store.sources.delete(source_id)
        return source

    def instruction(self, question: str) -> str:
        """The instruction block's text: the question, a request to cite, and (by default) the card's caveat."""
        lines = [question.strip(), CITE]
        if self.settings.ask_dont_make_up:
            lines.append(DONT_MAKE_UP)
        return "\n".join(lines)

    @asynccontextmanager
    async def ask(
        self, author: Author, scope_ids: Sequence[int], question: str, options: ChatOptions | None = None
    ) -> AsyncIterator[Answer]:
        """Answer ``question`` from the sources of ``scope_ids``; passages are picked by bm25 if they do not fit."""
        options = options or ChatOptions()
        listed = await self.store.sources.in_scope(scope_ids, with_text=False)
        if not listed:
            raise SourceError(NO_SOURCES)
        fitter = self._fitter(question, options)
        fitted = None
        if sum(s.size for s in listed) <= _whole_chars(fitter):  # bytes: never fewer than the characters
            fitted = await self._whole(fitter, [stored_text(s) for s in await self.store.sources.in_scope(scope_ids)])
        if fitted is None:
            docs, ranked = await self._candidates(listed, scope_ids, question)
            fitted = await asyncio.to_thread(fitter.select, docs, ranked)
        async with self._generate(author, *fitted, options) as answer:
            yield answer

    async def _candidates(
        self, listed: Sequence[StoredSource], scope_ids: Sequence[int], question: str
    ) -> tuple[list[_Doc], list[tuple[int, int]]]:
        """The passages a prompt may take, read from the store: the best matches (bm25), then, if they are fewer
        than :data:`_MAX_CANDIDATES`, the first passages of each source in turn; and the ranked ones' places."""
        hits = await self.store.sources.search(scope_ids, question, limit=_MAX_CANDIDATES)
        rounds = -(-(_MAX_CANDIDATES - len(hits)) // len(listed))
        leading = await self.store.sources.passages([(s.id, seq) for seq in range(rounds) for s in listed])
        index = {s.id: i for i, s in enumerate(listed)}
        docs = [_Doc(stored_text(s), {}) for s in listed]
        for passage in [*hits, *leading]:
            if passage.source_id in index:  # else it was added since the listing
                docs[index[passage.source_id]].passages[passage.seq] = passage.text
        return docs, [(index[p.source_id], p.seq) for p in hits if p.source_id in index]

    @asynccontextmanager
    async def ask_about(
        self, author: Author, sources: Sequence[SourceText], question: str, options: ChatOptions | None = None
    ) -> AsyncIterator[Answer]:
        """Answer ``question`` from ``sources`` that are not stored (a message and its files)."""
        options = options or ChatOptions()
        if not sources:
            raise SourceError("There is no text to answer from.")
        fitter = self._fitter(question, options)
        fitted = await self._whole(fitter, list(sources))
        if fitted is None:
            docs = await asyncio.to_thread(lambda: [_Doc(s, dict(enumerate(split_passages(s.text)))) for s in sources])
            flat = [(d, seq) for d, doc in enumerate(docs) for seq in doc.passages]
            order = await self.store.sources.rank([docs[d].passages[s] for d, s in flat], question)
            fitted = await asyncio.to_thread(fitter.select, docs, [flat[i] for i in order])
        async with self._generate(author, *fitted, options) as answer:
            yield answer

    def _fitter(self, question: str, options: ChatOptions) -> _Fitter:
        if not question.strip():
            raise SourceError("Ask a question.")
        builder = self.chat.engine.variant(options.variant).builder
        return _Fitter(builder, options, self.chat.params(options).max_new_tokens, self.instruction(question))

    @staticmethod
    async def _whole(fitter: _Fitter, sources: list[SourceText]) -> tuple[str, list[SourceText]] | None:
        """Every source whole, if that fits (sources far bigger than the window are not even measured)."""
        if sum(len(s.text) for s in sources) > _whole_chars(fitter):
            return None
        text = await asyncio.to_thread(fitter.fits, sources)
        return None if text is None else (text, sources)

    @asynccontextmanager
    async def _generate(
        self, author: Author, text: str, used: list[SourceText], options: ChatOptions
    ) -> AsyncIterator[Answer]:
        async with self.chat.generate(author, [ChatMessage("user", text)], options) as reply:
            yield Answer(reply, used)


def _whole_chars(fitter: _Fitter) -> int:
    """Characters of sources beyond which they are not measured whole: far more than the window holds."""
    return fitter.builder.context_length * 8
