"""Scene prompts: the card's multi-character example, byte for byte, through the real prompt builder."""

from __future__ import annotations

import pytest

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.messages import ChatMessage
from bot.core.prompts import AiroborosFormat, PromptBuilder
from bot.core.scenes import (
    Scene,
    SceneCharacter,
    default_rules,
    human_stops,
    scene_dialogue,
    scene_sheet,
    summary_request,
)
from bot.errors import PromptError, PromptTooLongError
from bot.inference.tokenizer import HFTokenizer

SYSTEM = AIROBOROS_SYSTEM_PROMPT

YODA = SceneCharacter("Yoda", "the ever clever jedi master.")
HOMER = SceneCharacter("Homer", "you know, the goofy yellow guy.", full_name="Homer Simpson")
GRAPES = "Conversation will revolve around the grapes, in a local cafe with delicious coffee."
CARD_SCENE = Scene((YODA, HOMER), ("Jon",), GRAPES)

# The card's "Multi-character conversations" example, from "USER: Characters:" to the second "ASSISTANT:".
CARD_SHEET = (
    "Characters:\n"
    "- Yoda, the ever clever jedi master.\n"
    "- Homer Simpson, you know, the goofy yellow guy.\n"
    "- USER/Jon - don't generate any speech or actions on behalf of Jon\n"
    "Rules:\n"
    "- be sure to use the manerisms and speaking style of the characters correctly\n"
    "- surround character actions with asterisks\n"
    "- always put quotes around words spoken by the characters\n"
    "- use a new line for each character's actions or speech\n"
    "- always prefix actions/speech with the character's name and colon\n"
    "- only generate text and actions on behalf of Yoda or Homer, and never anyone else\n"
    "Conversation will revolve around the grapes, in a local cafe with delicious coffee.\n"
    "Generate a single interaction between Yoda and Homer to start, with one sentence each."
)
CARD_OPENING = (
    'Yoda: "Mmm, these grapes are quite delicious, Master Homer."\n'
    "Homer: \"Oh yeah, Yoda! They're the best grapes I've ever had!\""
)
CARD_JON = "*enters the cafe* Sorry I'm late guys!"


def airoboros(tokenizer: HFTokenizer, context: int = 2048) -> PromptBuilder:
    return PromptBuilder(AiroborosFormat(SYSTEM), tokenizer, context_length=context)


def test_sheet_is_the_cards_first_user_turn() -> None:
    """The sheet for Yoda, Homer Simpson and Jon is the card's text, line for line."""
    assert scene_sheet(CARD_SCENE) == CARD_SHEET


def test_card_example_renders_byte_for_byte(llama_like_tokenizer: HFTokenizer) -> None:
    """Sheet, opening and Jon's line render as the card's example in the vicuna layout with the system prompt."""
    turns = [ChatMessage("assistant", CARD_OPENING), ChatMessage("user", CARD_JON, "Jon")]
    prompt = airoboros(llama_like_tokenizer).build(scene_dialogue(CARD_SCENE, turns), max_new_tokens=256)
    assert prompt.text == f"{SYSTEM} USER: {CARD_SHEET} ASSISTANT: {CARD_OPENING}</s>USER: {CARD_JON} ASSISTANT:"


def test_first_prompt_is_the_sheet_alone(llama_like_tokenizer: HFTokenizer) -> None:
    """Before anyone speaks, the prompt is the sheet as the only user turn."""
    prompt = airoboros(llama_like_tokenizer).build(scene_dialogue(CARD_SCENE, []), max_new_tokens=256)
    assert prompt.text == f"{SYSTEM} USER: {CARD_SHEET} ASSISTANT:"


def test_human_stops_reach_the_prompt(llama_like_tokenizer: HFTokenizer) -> None:
    """Each human's line-start name is a stop string next to the format's own."""
    scene = Scene((YODA,), ("Jon", "Ann Lee"), GRAPES)
    prompt = airoboros(llama_like_tokenizer).build(scene_dialogue(scene, []), max_new_tokens=64)
    assert prompt.stop == ("USER:", "\nJon:", "\nAnn Lee:")


def test_three_humans_are_each_prefixed(llama_like_tokenizer: HFTokenizer) -> None:
    """With three humans, every human line carries its author's display name, even before all have spoken."""
    scene = Scene((YODA, HOMER), ("Jon", "Ann", "Bo"), GRAPES)
    turns = [
        ChatMessage("assistant", CARD_OPENING),
        ChatMessage("user", "*waves*", "Ann"),
        ChatMessage("assistant", 'Yoda: "Welcome, Ann."'),
        ChatMessage("user", "Hi all", "Jon"),
        ChatMessage("user", "Hello?", "Bo"),
    ]
    prompt = airoboros(llama_like_tokenizer).build(scene_dialogue(scene, turns), max_new_tokens=64)
    sheet = scene_sheet(scene)
    assert "- USER/Jon - don't generate any speech or actions on behalf of Jon\n- USER/Ann - " in sheet
    assert "- USER/Bo - don't generate any speech or actions on behalf of Bo\nRules:\n" in sheet
    assert prompt.text == (
        f"{SYSTEM} USER: {sheet} ASSISTANT: {CARD_OPENING}</s>USER: Ann: *waves* ASSISTANT: "
        'Yoda: "Welcome, Ann."</s>USER: Jon: Hi all\nBo: Hello? ASSISTANT:'
    )


def test_stranger_in_a_one_human_scene_is_prefixed() -> None:
    """With one human, only someone else's line gets a name prefix."""
    dialogue = scene_dialogue(CARD_SCENE, [ChatMessage("user", "hi", "Jon"), ChatMessage("user", "me too", "Max")])
    assert [m.content for m in dialogue.messages[1:]] == ["hi", "Max: me too"]


def test_three_characters_are_named_with_commas() -> None:
    """The last rule and the opening name three characters as "A, B or C" and "A, B and C"."""
    scene = Scene((YODA, HOMER, SceneCharacter("Marge", "his wife.")), ("Jon",), GRAPES)
    assert (
        default_rules(scene)[-1]
        == "only generate text and actions on behalf of Yoda, Homer or Marge, and never anyone else"
    )
    assert scene_sheet(scene).endswith(
        "Generate a single interaction between Yoda, Homer and Marge to start, with one sentence each."
    )


def test_custom_rules_replace_the_cards() -> None:
    """Given rules are listed instead of the card's; an empty tuple leaves the Rules section out."""
    custom = scene_sheet(Scene((YODA,), ("Jon",), GRAPES, rules=("speak in riddles",)))
    assert "Rules:\n- speak in riddles\nConversation will" in custom
    assert "Rules:" not in scene_sheet(Scene((YODA,), ("Jon",), GRAPES, rules=()))


def test_line_breaks_in_descriptions_fold_into_spaces() -> None:
    """A multi-line description stays one line of the sheet."""
    sheet = scene_sheet(Scene((SceneCharacter("Yoda", "small.\n\nGreen."),), (), ""))
    assert sheet.startswith("Characters:\n- Yoda, small. Green.\nRules:\n")


def test_sheet_is_pinned_when_old_turns_are_dropped(llama_like_tokenizer: HFTokenizer) -> None:
    """A full window drops the oldest turns but keeps the sheet."""
    turns = [ChatMessage("assistant", CARD_OPENING)]
    for index in range(40):
        turns += [ChatMessage("user", f"line {index} " + "word " * 20, "Jon"), ChatMessage("assistant", "Yoda: ok")]
    turns.append(ChatMessage("user", "last", "Jon"))
    prompt = airoboros(llama_like_tokenizer, context=1024).build(scene_dialogue(CARD_SCENE, turns), max_new_tokens=128)
    assert prompt.dropped_turns > 0
    assert prompt.text.startswith(f"{SYSTEM} USER: {CARD_SHEET} ASSISTANT: Yoda: ok</s>USER: line ")
    assert "line 0 " not in prompt.text
    assert prompt.text.endswith("USER: last ASSISTANT:")


def test_sheet_too_long_for_the_window_is_a_clear_error(llama_like_tokenizer: HFTokenizer) -> None:
    """A sheet that cannot fit is refused, never cut."""
    scene = Scene((SceneCharacter("Yoda", "word " * 600),), ("Jon",), GRAPES)
    with pytest.raises(PromptTooLongError):
        airoboros(llama_like_tokenizer, context=512).build(scene_dialogue(scene, []), max_new_tokens=64)


def test_a_scene_without_characters_is_refused() -> None:
    """A scene needs a character to play; that is the one thing a scene refuses."""
    with pytest.raises(PromptError, match="at least one character"):
        Scene((), ("Jon",), GRAPES)


def test_a_person_named_like_a_character_reads_with_a_suffix_everywhere() -> None:
    """Sheet, stop strings and the person's lines all use ``Yoda (2)``; the character keeps ``Yoda``."""
    scene = Scene((YODA,), ("yoda", "Jon"), GRAPES)
    assert scene.human_labels == ("yoda (2)", "Jon")
    assert "- USER/yoda (2) - don't generate any speech or actions on behalf of yoda (2)" in scene_sheet(scene)
    assert human_stops(scene) == ("\nyoda (2):", "\nJon:")
    dialogue = scene_dialogue(scene, [ChatMessage("user", "Hello there.", "yoda (2)")])
    assert dialogue.messages[1] == ChatMessage("user", "yoda (2): Hello there.")


@pytest.mark.parametrize(
    "line",
    ["Yoda: I surrender", "yoda: I surrender", "\rYODA : I surrender", "**Yoda**: I surrender", "1. Yoda (sadly): no"],
)
def test_a_persons_line_cannot_pose_as_a_character(line: str) -> None:
    """Whatever a person types at a line start, a character's label in it loses its colon."""
    scene = Scene((YODA,), ("Jon",), GRAPES)
    content = scene_dialogue(scene, [ChatMessage("user", f"Hi.\n{line}", "Jon")]).messages[1].content
    assert "：" in content
    assert content.replace("：", ":") == f"Hi.\n{line}"


def test_summary_request_is_setting_transcript_then_the_ask() -> None:
    """The summary turn: the setting, the lines as said, then the instruction, separated by blank lines."""
    text = summary_request(CARD_SCENE, ['Yoda: "Mmm."', "Jon: *waves*"])
    assert text == (
        f"Setting: {GRAPES}\n\n"
        'Yoda: "Mmm."\nJon: *waves*\n\n'
        "Summarize the scene above in two or three sentences, in the past tense."
    )
