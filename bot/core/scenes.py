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

- :class:`SceneCharacter` and :class:`Scene`: frozen values; :class:`Scene` validates itself and raises
  :class:`~bot.errors.PromptError` with a short user-facing text (no characters, an empty or too long name, the
  same name twice, a human named like a character).
- :func:`default_rules`: the card's six rules, the last one naming the characters.
- :func:`scene_sheet`: the first user turn above.
- :func:`scene_dialogue`: the :class:`~bot.core.messages.Dialogue` to hand to ``PromptBuilder.build`` (or to
  ``ChatService.generate``): the sheet pinned first, then the scene's turns, with stop strings for the humans.
- :func:`speaker_names`: every name (and alias) to give :class:`bot.core.script.ScriptParser` for this scene.

The card names a character twice: in full on the sheet (``Homer Simpson``) and by the name it speaks under in the
rules, the opening and the model's lines (``Homer``). :attr:`SceneCharacter.full_name` holds the first when it
differs; :attr:`SceneCharacter.name` is always the speaking name.

Every name reaches the prompt as its :func:`~bot.core.sanitize.speaker_label` (no invisible characters, no colon,
one line), and the stop strings and :class:`bot.core.script.ScriptParser` match that same label: the model writes
the names it was shown, so a name like ``Dr: Wh\u200bo`` (shown as ``Dr Who``) still stops and parses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.messages import ChatMessage, Dialogue
from bot.core.sanitize import is_blank, speaker_label
from bot.errors import PromptError

CARD_RULES = (
    "be sure to use the manerisms and speaking style of the characters correctly",  # sic: the card's spelling
    "surround character actions with asterisks",
    "always put quotes around words spoken by the characters",
    "use a new line for each character's actions or speech",
    "always prefix actions/speech with the character's name and colon",
)
"""The card's first five rules, word for word; :func:`default_rules` adds the sixth, which names the characters."""

MAX_NAME_LENGTH = 40
"""Longest speaker name: the script parser only looks this far into a line for ``Name:``."""

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

    def __post_init__(self) -> None:
        if not self.characters:
            raise PromptError("A scene needs at least one character.")
        seen: set[str] = set()
        for name in [c.name for c in self.characters] + list(self.humans):
            label = _checked_label(name)
            if label.casefold() in seen:
                raise PromptError(f"The name {label!r} appears twice in the scene; every name must differ.")
            seen.add(label.casefold())


def _checked_label(name: str) -> str:
    """The name's label in the prompt; refuses a name that shows nothing or is longer than the parser reads."""
    if is_blank(name):
        raise PromptError("A name in the scene is empty.")
    label = speaker_label(name)
    if len(label) > MAX_NAME_LENGTH:
        raise PromptError(f"The name {label[:20]!r}... is too long (at most {MAX_NAME_LENGTH} characters).")
    return label


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text.strip())


def join_names(names: Sequence[str], conjunction: str) -> str:
    """``A``, ``A and B``, ``A, B and C`` (with ``conjunction`` ``"and"`` or ``"or"``)."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def default_rules(scene: Scene) -> tuple[str, ...]:
    """The card's six rules; the last one names the scene's characters (``... on behalf of Yoda or Homer, ...``)."""
    names = join_names([speaker_label(c.name) for c in scene.characters], "or")
    return (*CARD_RULES, f"only generate text and actions on behalf of {names}, and never anyone else")


def opening_instruction(scene: Scene) -> str:
    """The sheet's last line: the card's sentence for two characters or more, its one-character form otherwise."""
    names = [speaker_label(c.name) for c in scene.characters]
    if len(names) == 1:
        return f"Generate a single line from {names[0]} to start, with one sentence."
    return f"Generate a single interaction between {join_names(names, 'and')} to start, with one sentence each."


def scene_sheet(scene: Scene) -> str:
    """The scene's first user turn, laid out exactly as the card's example (no trailing newline)."""
    lines = ["Characters:"]
    lines += [f"- {speaker_label(c.sheet_name)}, {_one_line(c.description)}" for c in scene.characters]
    lines += [
        f"- USER/{human} - don't generate any speech or actions on behalf of {human}"
        for human in (speaker_label(h) for h in scene.humans)
    ]
    rules = default_rules(scene) if scene.rules is None else scene.rules
    if rules:
        lines.append("Rules:")
        lines += [f"- {_one_line(rule)}" for rule in rules]
    if scene.setting.strip():
        lines.append(scene.setting.strip())
    lines.append(opening_instruction(scene))
    return "\n".join(lines)


def human_stops(scene: Scene) -> tuple[str, ...]:
    """Stop strings that end generation when the model starts a line for a human: ``"\\n{name}:"`` each.

    Stop strings match anywhere in the text, so a bare ``"Jon:"`` would also cut a line such as
    ``Yoda: "Sit, young Jon: rest."``; only the line-start form is a stop. A human's name on the reply's very
    first line is caught by :class:`bot.core.script.ScriptParser`, whose ``Stop`` event tells the caller to cancel.
    """
    return tuple(f"\n{speaker_label(human)}:" for human in scene.humans)


def scene_dialogue(scene: Scene, messages: Sequence[ChatMessage], *, system: str | None = None) -> Dialogue:
    """The dialogue for the scene so far, ready for ``PromptBuilder.build``.

    ``messages`` are the turns after the sheet, oldest first: ``assistant`` messages hold the model's script as it
    wrote it (``Yoda: "..."\\nHomer: "..."``; :func:`bot.core.script.script_text` rebuilds it from parsed lines),
    ``user`` messages a human's line with the author's display name in ``name``. When the scene has several
    humans, each human line is prefixed ``{display name}: ``; with one human, that human's lines are left bare as in
    the card (a line from anyone else in the thread is still prefixed). The sheet is the first user message and is
    pinned, so the token budget drops old turns but never the sheet; if ``messages`` starts with a user line it
    joins the sheet's turn. ``system`` is the channel's system prompt (``None``: the format's default).
    ``extra_stops`` is :func:`human_stops`.
    """
    sole = speaker_label(scene.humans[0]) if len(scene.humans) == 1 else None
    turns = [ChatMessage("user", scene_sheet(scene))]
    for message in messages:
        name = speaker_label(message.name) if message.name and not is_blank(message.name) else None
        if message.role == "user" and name and name != sole:
            turns.append(ChatMessage("user", f"{name}: {message.content}"))
        else:
            # The name is dropped once applied, so the builder does not prefix the line a second time.
            turns.append(ChatMessage(message.role, message.content))
    return Dialogue(system, tuple(turns), pinned=1, extra_stops=human_stops(scene))


def speaker_names(scene: Scene) -> dict[str, str]:
    """Every name the model may write a character's line under, mapped to the character's speaking name.

    Pass it as ``aliases`` to :class:`bot.core.script.ScriptParser` (the full name ``Homer Simpson`` then counts
    as ``Homer``). The keys are the labels the prompt shows; the values the names as given, which the frontend knows.
    """
    names = {speaker_label(c.name): c.name.strip() for c in scene.characters}
    names.update({speaker_label(c.full_name): c.name.strip() for c in scene.characters if c.full_name})
    return names


SUMMARY_INSTRUCTION = "Summarize the scene above in two or three sentences, in the past tense."
"""What ``/scene end`` asks the model after the transcript."""


def summary_request(scene: Scene, transcript: Sequence[str]) -> str:
    """The one user turn asking for a summary of a finished scene: the setting, the lines as they were said, the ask.

    ``transcript`` holds the scene's lines in order (``Yoda: "..."``, ``Jon: *waves*``).
    """
    parts = [f"Setting: {scene.setting.strip()}" if scene.setting.strip() else "", "\n".join(transcript).strip()]
    return "\n\n".join([part for part in parts if part] + [SUMMARY_INSTRUCTION])
