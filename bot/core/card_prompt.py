"""A stored character's card in usable form: its scene character, examples, greetings, lorebook and size in tokens.

The card's fields live in the store as the card gave them (:attr:`bot.store.StoredCharacter.extra`); this module
reads them leniently (a field of the wrong type counts as empty: nothing here refuses a stored card) and measures
them with the model's tokenizer:

- :func:`card_fields`: the fields a scene uses; :func:`split_examples` cuts ``mes_example`` at each ``<START>``
  (SillyTavern's ``parseMesExamples``: text before the first marker is a block too);
- :func:`scene_character`: the :class:`~bot.core.scenes.SceneCharacter` of a stored character;
- :func:`greetings`: ``first_mes`` then ``alternate_greetings`` (then, in a scene of several, V3's
  ``group_only_greetings``), macros filled: the scene's opening and its swipes;
- :func:`with_lore`: the scene with the entries its recent messages trigger in the cast's lorebooks;
- :func:`card_size` and :func:`scene_fit`: what a card, and a whole cast, take of the window. A scene's prompt must
  hold its sheet, what its lorebooks may add (``[roleplay] lorebook_tokens`` at most) and room for the conversation
  (``[roleplay] conversation_tokens``); ``/scene start`` refuses a cast that leaves less, before opening anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bot.core.cards import EXTENSION_KEY, TRIMMED_KEY
from bot.core.lorebook import Lorebook, lore_for_turn, read_lorebook
from bot.core.macros import DEFAULT_USER, fill_macros
from bot.core.prompts import PromptBuilder, merge_turns
from bot.core.scenes import Scene, SceneCharacter, card_text, example_block, scene_dialogue
from bot.store import StoredCharacter

__all__ = [
    "CardFields",
    "CardSize",
    "SceneFit",
    "card_fields",
    "card_size",
    "greetings",
    "scene_character",
    "scene_fit",
    "split_examples",
    "with_lore",
]

CountTokens = Callable[[str], int]
_START = "<start>"


@dataclass(frozen=True, slots=True)
class CardFields:
    """The fields of a card a scene uses, beyond its name, description, personality and speaking style."""

    scenario: str = ""
    first_mes: str = ""
    alternate_greetings: tuple[str, ...] = ()
    group_only_greetings: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    """``mes_example`` cut into blocks (:func:`split_examples`), macros not yet filled."""
    system_prompt: str = ""
    post_history_instructions: str = ""
    creator_notes: str = ""
    lorebook: Lorebook | None = None
    trimmed: Mapping[str, int] = field(default_factory=dict)
    """Fields cut at import, each with its length before (see :mod:`bot.core.cards`)."""


def _text(extra: Mapping[str, Any], key: str) -> str:
    value = extra.get(key)
    return value.strip() if isinstance(value, str) else ""


def _texts(extra: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = extra.get(key)
    return tuple(item.strip() for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def split_examples(mes_example: str) -> tuple[str, ...]:
    """``mes_example`` as blocks, one per ``<START>`` (any case), each its non-blank lines stripped."""
    blocks: list[str] = []
    text = mes_example.replace("\r\n", "\n")
    position = 0
    while True:
        found = text.lower().find(_START, position)
        blocks.append(text[position : len(text) if found < 0 else found])
        if found < 0:
            break
        position = found + len(_START)
    cleaned = ("\n".join(line.strip() for line in block.splitlines() if line.strip()) for block in blocks)
    return tuple(block for block in cleaned if block)


def card_fields(extra: Mapping[str, Any]) -> CardFields:
    """The card fields kept in a stored character's ``extra``.

    A ``mes_example`` equal to the card's ``extensions.airoboros_bot.speaking_style`` is the copy our own export
    makes of a speaking style (for tools that know none): it is not example dialogue.
    """
    extensions = extra.get("extensions")
    ours = extensions.get(EXTENSION_KEY) if isinstance(extensions, Mapping) else None
    trimmed = ours.get(TRIMMED_KEY) if isinstance(ours, Mapping) else None
    style = ours.get("speaking_style") if isinstance(ours, Mapping) else None
    mes_example = _text(extra, "mes_example")
    return CardFields(
        scenario=_text(extra, "scenario"),
        first_mes=_text(extra, "first_mes"),
        alternate_greetings=tuple(text for text in _texts(extra, "alternate_greetings") if text),
        group_only_greetings=tuple(text for text in _texts(extra, "group_only_greetings") if text),
        examples=() if isinstance(style, str) and mes_example == style.strip() else split_examples(mes_example),
        system_prompt=_text(extra, "system_prompt"),
        post_history_instructions=_text(extra, "post_history_instructions"),
        creator_notes=_text(extra, "creator_notes"),
        lorebook=read_lorebook(extra.get("character_book")),
        trimmed={
            key: value
            for key, value in (trimmed.items() if isinstance(trimmed, Mapping) else ())
            if isinstance(key, str) and isinstance(value, int)
        },
    )


def scene_character(character: StoredCharacter) -> SceneCharacter:
    """The sheet's character for a stored one: its description, personality and speaking style on its line, and
    the card's scenario, examples and instructions beside."""
    parts = [character.description.strip(), character.personality.strip(), character.speaking_style.strip()]
    fields = card_fields(character.extra)
    return SceneCharacter(
        character.name,
        " ".join(part for part in parts if part) or "a character.",
        scenario=fields.scenario,
        examples=fields.examples,
        system_prompt=fields.system_prompt,
        post_history=fields.post_history_instructions,
    )


def greetings(fields: CardFields, *, char: str, user: str = DEFAULT_USER, group: bool = False) -> tuple[str, ...]:
    """The card's greetings with macros filled: ``first_mes``, the ``alternate_greetings`` (its swipes), and with
    ``group`` (a scene of several characters) the ``group_only_greetings``; empty ones are left out."""
    texts = (fields.first_mes, *fields.alternate_greetings, *(fields.group_only_greetings if group else ()))
    return tuple(fill_macros(text, char=char, user=user) for text in texts if text.strip())


def with_lore(
    scene: Scene,
    books: Sequence[Lorebook | None],
    recent: Sequence[str],
    *,
    scan_depth: int,
    budget: int,
    count: CountTokens,
) -> Scene:
    """``scene`` with the entries of its cast's lorebooks (``books``, in cast order) that the ``recent`` messages
    (oldest first) trigger, within ``budget`` tokens (:func:`bot.core.lorebook.lore_for_turn`)."""
    fills = [
        (book, partial(card_text, scene, character))
        for character, book in zip(scene.characters, books, strict=True)
        if book is not None
    ]
    lore = lore_for_turn(fills, recent, scan_depth=scan_depth, budget=budget, count_tokens=count)
    return dataclasses.replace(scene, lore=lore)


@dataclass(frozen=True, slots=True)
class CardSize:
    """What a card takes of a scene's prompt, in tokens."""

    sheet: int
    """Its line, scenario and instructions: always in the prompt."""
    examples: int
    """Its example dialogue: in the prompt while there is room."""
    lorebook: int
    """The most its lorebook entries may add to one turn."""


def _lore_reserve(book: Lorebook | None, budget: int, count: CountTokens) -> int:
    """The most ``book``'s entries can take in one turn: all of them, within its budget and ``budget``."""
    if book is None:
        return 0
    whole = sum(count(entry.content) + 1 for entry in book.entries)
    return min(whole, budget, book.token_budget or budget)


def card_size(
    character: SceneCharacter, lorebook: Lorebook | None, *, count: CountTokens, lore_budget: int
) -> CardSize:
    """The sizes of one card, with ``{{user}}`` as the default name (a person's name changes them a little)."""

    def filled(text: str) -> str:
        return fill_macros(text, char=character.name.strip(), user=DEFAULT_USER, original="")

    texts = [f"- {character.sheet_name}, {character.description}", character.scenario]
    texts += [character.system_prompt, character.post_history]
    sheet = sum(count(filled(text)) for text in texts if text.strip())
    examples = sum(count(example_block(character.name, filled(block))) for block in character.examples)
    return CardSize(sheet, examples, _lore_reserve(lorebook, lore_budget, count))


@dataclass(frozen=True, slots=True)
class SceneFit:
    """How a scene's first prompt fits the model's window, in tokens (see :func:`scene_fit`)."""

    cards: tuple[tuple[str, int], ...]
    """Each character's name and the size of its card on the sheet."""
    prompt: int
    """The scene's first prompt: system prompt, sheet and markers, without examples or lorebook entries."""
    lorebooks: int
    """Kept for the lorebooks' entries."""
    conversation: int
    """Kept for the conversation."""
    window: int
    """What a prompt may take: the model's context window less the reply's tokens."""
    context: int
    reply: int

    @property
    def fits(self) -> bool:
        return self.prompt + self.lorebooks + self.conversation <= self.window

    def refusal(self) -> str:
        """Why the cast does not fit, naming each card's size and the budget."""
        sizes = ", ".join(f"{name} {size:,}" for name, size in self.cards)
        rest = self.prompt - sum(size for _, size in self.cards)
        parts = [f"the scene's sheet takes {self.prompt:,} tokens (the cards: {sizes}"]
        parts[0] += f"; the rules, people and setting: {rest:,})" if rest > 0 else ")"
        if self.lorebooks:
            parts.append(f"their lorebooks may add {self.lorebooks:,}")
        parts.append(f"and {self.conversation:,} are kept for the conversation")
        return (
            f"This cast does not fit the model's window: {', '.join(parts)}, but a prompt has {self.window:,} tokens "
            f"(a {self.context:,}-token window less {self.reply:,} for the reply). "
            "Leave a character out, or shorten a card."
        )


def scene_fit(
    scene: Scene,
    builder: PromptBuilder,
    books: Sequence[Lorebook | None],
    *,
    max_new_tokens: int,
    system: str | None,
    lore_budget: int,
    conversation_tokens: int,
) -> SceneFit:
    """Measure ``scene``'s first prompt with the model's ``builder`` (``system``: the channel's system prompt, None
    for the format's), and what its cast's lorebooks (``books``, in cast order) and the conversation need."""

    def count(text: str) -> int:
        return len(builder.tokenizer.encode_plain(text))

    dialogue = scene_dialogue(scene, [], system=system, original_system=builder.format.default_system)
    _, ids = builder.render(dialogue.system, merge_turns(dialogue.messages))
    sizes = tuple(
        (c.name, card_size(c, book, count=count, lore_budget=lore_budget).sheet)
        for c, book in zip(scene.characters, books, strict=True)
    )
    lore = min(lore_budget, sum(_lore_reserve(book, lore_budget, count) for book in books))
    return SceneFit(
        sizes,
        len(ids),
        lore,
        conversation_tokens,
        builder.context_length - max_new_tokens,
        builder.context_length,
        max_new_tokens,
    )
