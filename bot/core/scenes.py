"""Roleplay scenes: the card's "Multi-character conversations" prompt (DESIGN.md section 3).

A scene is a few model-played characters, the humans taking part, a setting and rules. The
first user turn is the *scene sheet*, byte for byte the card's example::

    Characters:
    - Yoda, the ever clever jedi master.
    - Homer Simpson, you know, the goofy yellow guy.
    - USER/Jon - don't generate any speech or actions on behalf of Jon
    Rules:
    - be sure to use the manerisms and speaking style of the characters correctly
    - surround character actions with asterisks
    - always put quotes around words spoken by the characters
    - use a new line for each character's actions or speech
    - always prefix actions/speech with the character's name and colon
    - only generate text and actions on behalf of Yoda or Homer, and never anyone else
    Conversation will revolve around the grapes, in a local cafe with delicious coffee.
    Generate a single interaction between Yoda and Homer to start, with one sentence each.

Public API (all pure: no Discord, no store, no tokenizer):

- :class:`SceneCharacter` and :class:`Scene`: frozen values. A scene needs a character
  (:class:`~bot.errors.PromptError` otherwise) and refuses nothing else: every name gets a distinct label
  (:attr:`Scene.character_labels`, :attr:`Scene.human_labels`), so no name a person picks can break a scene.
- :func:`default_rules`: the card's six rules, the last one naming the characters.
- :func:`scene_sheet`: the first user turn above.
- :func:`scene_dialogue`: the :class:`~bot.core.messages.Dialogue` to hand to ``PromptBuilder.build`` (or to
  ``ChatService.generate``): the sheet pinned first, then the scene's turns, with stop strings for the humans.
- :func:`speaker_names`: every name (and alias) to give :class:`bot.core.script.ScriptParser` for this scene.

A character from a Character Card brings more than its line (:mod:`bot.core.card_prompt` reads the card), laid out
in this order (macros filled: ``{{char}}`` the character, ``{{user}}`` the scene's people joined by "and"):

1. ``Characters:``, one line per character (description, personality, speaking style), then the ``USER/`` lines;
2. ``Rules:``, the scene's rules, then, with several characters, each card's ``system_prompt`` and
   ``post_history_instructions`` as further rules, in cast order (with one character they take the places the
   specs give them: the card's ``system_prompt`` replaces the system prompt, ``{{original}}`` standing for the one it
   replaces, and ``post_history_instructions`` follows the last person's line);
3. the cards' example dialogue (``mes_example``), one ``Example dialogue with {name}:`` block per ``<START>``: not
   pinned, the first thing the token budget drops (:class:`~bot.core.messages.Dialogue` ``examples``);
4. the lorebook entries this turn triggered (:attr:`Scene.lore`, chosen by :mod:`bot.core.lorebook`);
5. each card's ``scenario``, then the scene's setting (the ``/scene start`` text adds to the cards' scenarios);
6. the opening instruction.

The card names a character twice: in full on the sheet (``Homer Simpson``) and by the name it speaks under in the
rules, the opening and the model's lines (``Homer``). :attr:`SceneCharacter.full_name` holds the first when it
differs; :attr:`SceneCharacter.name` is always the speaking name.

Every name reaches the prompt as a label (:func:`~bot.core.sanitize.distinct_labels`: no invisible characters, no
colon, one line, at most 40 characters, and distinct: characters keep theirs, a person whose name clashes with a
character's or an earlier person's reads ``Alex (2)``), and the stop strings and
:class:`bot.core.script.ScriptParser` match those same labels: the model writes the names it was shown, so a name
like ``Dr: Wh\u200bo`` (shown as ``Dr Who``) still stops and parses. A person's lines are defused against every
label of the scene (:func:`~bot.core.sanitize.defuse_labels`), so ``Yoda: I surrender`` typed by Jon stays Jon's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.macros import fill_macros, user_name
from bot.core.messages import ChatMessage, Dialogue
from bot.core.sanitize import MAX_LABEL_LENGTH, defuse_labels, distinct_labels, speaker_label
from bot.errors import PromptError

CARD_RULES = (
    "be sure to use the manerisms and speaking style of the characters correctly",  # sic: the card's spelling
    "surround character actions with asterisks",
    "always put quotes around words spoken by the characters",
    "use a new line for each character's actions or speech",
    "always prefix actions/speech with the character's name and colon",
)
"""The card's first five rules, word for word; :func:`default_rules` adds the sixth, which names the characters."""

MAX_NAME_LENGTH = MAX_LABEL_LENGTH
"""Longest speaker label: the script parser only looks this far into a line for ``Name:`` (longer names are cut)."""

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


@dataclass(frozen=True, slots=True)
class SceneCharacter:
    """A character the model plays.

    ``name`` is the name the character speaks under (``Homer``): the rules, the opening instruction and the
    model's ``Name:`` lines use it. ``description`` follows it on the sheet as given (the card's
    ``the ever clever jedi master.`` keeps its full stop). ``full_name`` (``Homer Simpson``) replaces ``name`` on
    the sheet's character line only, when set; the script parser accepts it as an alias.
    """

    name: str
    description: str
    full_name: str | None = None
    scenario: str = ""
    """The card's ``scenario``, a line of the sheet before the setting."""
    examples: tuple[str, ...] = ()
    """The card's example dialogue, one block of ``Name: line`` lines per ``<START>``."""
    system_prompt: str = ""
    """The card's ``system_prompt`` (see the module docstring for where it goes)."""
    post_history: str = ""
    """The card's ``post_history_instructions``."""

    @property
    def sheet_name(self) -> str:
        """The name on the sheet's character line."""
        return self.full_name or self.name


@dataclass(frozen=True, slots=True)
class Scene:
    """A roleplay scene: characters the model plays, humans it must never speak for, a setting, rules.

    ``humans`` are the display names the people in the scene speak under. ``rules`` of ``None`` means
    :func:`default_rules`; an empty tuple leaves the ``Rules:`` section out. Line breaks inside a description or a
    rule are folded into one space (each is one line of the sheet); the setting may span lines.

    Raises :class:`~bot.errors.PromptError` (text fit for a user) when the scene cannot be prompted.
    """

    characters: tuple[SceneCharacter, ...]
    humans: tuple[str, ...]
    setting: str
    rules: tuple[str, ...] | None = None
    lore: tuple[str, ...] = ()
    """The lorebook entries this turn triggered, in prompt order (:func:`bot.core.lorebook.lore_for_turn`)."""
    character_labels: tuple[str, ...] = field(init=False)
    """What each character is called in the prompt, in order: its name as a label (a clash gets ``(2)``)."""
    human_labels: tuple[str, ...] = field(init=False)
    """What each person is called in the prompt, in order: a clash with a character or an earlier person: ``(2)``."""

    def __post_init__(self) -> None:
        if not self.characters:
            raise PromptError("A scene needs at least one character.")
        characters = distinct_labels([c.name for c in self.characters])
        object.__setattr__(self, "character_labels", tuple(characters))
        object.__setattr__(self, "human_labels", tuple(distinct_labels(self.humans, taken=characters)))

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label in the scene: the characters', then the people's."""
        return self.character_labels + self.human_labels


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text.strip())


def join_names(names: Sequence[str], conjunction: str) -> str:
    """``A``, ``A and B``, ``A, B and C`` (with ``conjunction`` ``"and"`` or ``"or"``)."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def default_rules(scene: Scene) -> tuple[str, ...]:
    """The card's six rules; the last one names the scene's characters (``... on behalf of Yoda or Homer, ...``)."""
    names = join_names(list(scene.character_labels), "or")
    return (*CARD_RULES, f"only generate text and actions on behalf of {names}, and never anyone else")


def opening_instruction(scene: Scene) -> str:
    """The sheet's last line: the card's sentence for two characters or more, its one-character form otherwise."""
    names = list(scene.character_labels)
    if len(names) == 1:
        return f"Generate a single line from {names[0]} to start, with one sentence."
    return f"Generate a single interaction between {join_names(names, 'and')} to start, with one sentence each."


def scene_sheet(scene: Scene) -> str:
    """The scene's first user turn, laid out exactly as the card's example (no trailing newline)."""
    scene = _cards_filled(scene)
    lines = ["Characters:"]
    lines += [
        f"- {speaker_label(c.full_name) if c.full_name else label}, {_one_line(c.description)}"
        for c, label in zip(scene.characters, scene.character_labels, strict=True)
    ]
    lines += [
        f"- USER/{human} - don't generate any speech or actions on behalf of {human}" for human in scene.human_labels
    ]
    rules = default_rules(scene) if scene.rules is None else scene.rules
    rules = (*rules, *_card_rules(scene))
    if rules:
        lines.append("Rules:")
        lines += [f"- {_one_line(rule)}" for rule in rules]
    return "\n".join(lines + _sheet_tail(scene))


def _sheet_tail(scene: Scene) -> list[str]:
    """The sheet's lines after its rules: lorebook entries, the cards' scenarios, the setting, the opening."""
    lines = [entry.strip() for entry in scene.lore if entry.strip()]
    lines += [c.scenario.strip() for c in scene.characters if c.scenario.strip()]
    if scene.setting.strip():
        lines.append(scene.setting.strip())
    lines.append(opening_instruction(scene))
    return lines


def card_text(scene: Scene, character: SceneCharacter, text: str, *, original: str | None = None) -> str:
    """A card's ``text`` with its macros filled for this scene (:func:`bot.core.macros.fill_macros`)."""
    people = user_name(list(scene.human_labels))
    label = scene.character_labels[scene.characters.index(character)]
    return fill_macros(text, char=label, user=people, original=original)


def _cards_filled(scene: Scene) -> Scene:
    """The scene with the macros of its characters' descriptions, scenarios and examples filled."""
    characters = tuple(
        dataclasses.replace(
            c,
            description=card_text(scene, c, c.description),
            scenario=card_text(scene, c, c.scenario),
            examples=tuple(card_text(scene, c, block) for block in c.examples),
        )
        for c in scene.characters
    )
    return dataclasses.replace(scene, characters=characters)


def _card_rules(scene: Scene) -> tuple[str, ...]:
    """With several characters, each card's ``system_prompt`` and ``post_history_instructions``, as rules."""
    if len(scene.characters) < 2:
        return ()
    texts = [(c, text) for c in scene.characters for text in (c.system_prompt, c.post_history)]
    return tuple(card_text(scene, c, text, original="") for c, text in texts if text.strip())


def example_block(name: str, block: str) -> str:
    """One block of a card's example dialogue as the sheet shows it, headed ``Example dialogue with {name}:``."""
    return f"Example dialogue with {speaker_label(name)}:\n{block}"


def example_blocks(scene: Scene) -> tuple[str, ...]:
    """The cast's example dialogue, macros filled, in cast order (:func:`example_block`)."""
    filled = _cards_filled(scene)
    return tuple(
        example_block(label, block)
        for c, label in zip(filled.characters, filled.character_labels, strict=True)
        for block in c.examples
    )


def _with_card(scene: Scene, dialogue: Dialogue, original_system: str | None) -> Dialogue:
    """``dialogue`` with what the cards add: examples between the rules and the rest of the sheet; with one
    character, its ``system_prompt`` as the system prompt and its ``post_history_instructions`` after the last
    person's line."""
    messages = list(dialogue.messages)
    examples = tuple(ChatMessage("user", block) for block in example_blocks(scene))
    if examples:  # the sheet in two pinned parts, the examples between them
        sheet = messages[0].content
        tail = "\n".join(_sheet_tail(_cards_filled(scene)))
        head = sheet[: len(sheet) - len(tail)].rstrip("\n")
        messages[:1] = [ChatMessage("user", head), ChatMessage("user", tail)]
    system = dialogue.system
    if len(scene.characters) == 1:
        (character,) = scene.characters
        if character.system_prompt.strip():
            original = system if system is not None else original_system
            system = card_text(scene, character, character.system_prompt.strip(), original=original or "")
        after = card_text(scene, character, character.post_history.strip(), original="")
        last = max(i for i, message in enumerate(messages) if message.role == "user")
        if after:
            messages[last] = dataclasses.replace(messages[last], content=f"{messages[last].content}\n{after}")
    return dataclasses.replace(
        dialogue,
        system=system,
        messages=tuple(messages),
        pinned=dialogue.pinned + (1 if examples else 0),
        examples=examples,
        examples_at=1 if examples else None,
    )


def human_stops(scene: Scene) -> tuple[str, ...]:
    """Stop strings that end generation when the model starts a line for a human: ``"\\n{name}:"`` each.

    Stop strings match anywhere in the text, so a bare ``"Jon:"`` would also cut a line such as
    ``Yoda: "Sit, young Jon: rest."``; only the line-start form is a stop. A human's name on the reply's very
    first line is caught by :class:`bot.core.script.ScriptParser`, whose ``Stop`` event tells the caller to cancel.
    """
    return tuple(f"\n{human}:" for human in scene.human_labels)


def scene_dialogue(
    scene: Scene, messages: Sequence[ChatMessage], *, system: str | None = None, original_system: str | None = None
) -> Dialogue:
    """The dialogue for the scene so far, ready for ``PromptBuilder.build``.

    ``messages`` are the turns after the sheet, oldest first: ``assistant`` messages hold the model's script as it
    wrote it (``Yoda: "..."\\nHomer: "..."``; :func:`bot.core.script.script_text` rebuilds it from parsed lines),
    ``user`` messages a human's line with the author's display name in ``name``. When the scene has several
    humans, each human line is prefixed ``{display name}: ``; with one human, that human's lines are left bare as in
    the card (a line from anyone else in the thread is still prefixed). The sheet is the first user message and is
    pinned, so the token budget drops old turns but never the sheet; if ``messages`` starts with a user line it
    joins the sheet's turn. ``system`` is the channel's system prompt (``None``: the format's default).
    ``extra_stops`` is :func:`human_stops`. What the cards add (examples, a one-character scene's system prompt and
    post-history instructions) is laid out as the module docstring says; ``original_system`` is the format's default
    system prompt, which a card's ``{{original}}`` stands for when ``system`` is None.
    """
    sole = scene.human_labels[0] if len(scene.human_labels) == 1 else None
    labels = set(scene.labels)
    turns = [ChatMessage("user", scene_sheet(scene))]
    for message in messages:
        if message.role == "assistant":
            turns.append(ChatMessage("assistant", message.content))
            continue
        name = person_label(scene, message.name) if message.name else None
        content = defuse_labels(message.content, labels | {name} if name else labels)
        # The name is dropped once applied, so the builder does not prefix the line a second time.
        turns.append(ChatMessage("user", f"{name}: {content}" if name and name != sole else content))
    return _with_card(scene, Dialogue(system, tuple(turns), pinned=1, extra_stops=human_stops(scene)), original_system)


def person_label(scene: Scene, name: str) -> str:
    """The label of a person's line: ``name`` if it is a label of the scene's people, else a fresh distinct label.

    The frontend names each line by the person's label (:attr:`Scene.human_labels`); a line from someone not in the
    scene still never reads as a character's or a participant's.
    """
    if name in scene.human_labels:
        return name
    label = speaker_label(name)[:MAX_LABEL_LENGTH].strip()
    if label in scene.human_labels:
        return label  # a display name given as it is, not yet as a label
    return distinct_labels([name], taken=scene.labels)[0]


def speaker_names(scene: Scene) -> dict[str, str]:
    """Every name the model may write a character's line under, mapped to the character's label.

    Pass it as ``aliases`` to :class:`bot.core.script.ScriptParser` (the full name ``Homer Simpson`` then counts as
    ``Homer``). Keys and values are labels as the prompt shows them; the frontend maps a label back to its
    character with :attr:`Scene.character_labels`.
    """
    names = {label: label for label in scene.character_labels}
    for character, label in zip(scene.characters, scene.character_labels, strict=True):
        if character.full_name:
            names.setdefault(speaker_label(character.full_name), label)
    return names


SUMMARY_INSTRUCTION = "Summarize the scene above in two or three sentences, in the past tense."
"""What ``/scene end`` asks the model after the transcript."""


def summary_request(scene: Scene, transcript: Sequence[str]) -> str:
    """The one user turn asking for a summary of a finished scene: the setting, the lines as they were said, the ask.

    ``transcript`` holds the scene's lines in order (``Yoda: "..."``, ``Jon: *waves*``).
    """
    parts = [f"Setting: {scene.setting.strip()}" if scene.setting.strip() else "", "\n".join(transcript).strip()]
    return "\n\n".join([part for part in parts if part] + [SUMMARY_INSTRUCTION])
