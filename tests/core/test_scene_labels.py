"""Scene names with invisible characters or colons: the prompt, the stop strings and the parser use one label."""

import pytest

from bot.core.messages import ChatMessage
from bot.core.scenes import Scene, SceneCharacter, human_stops, scene_dialogue, scene_sheet
from bot.core.script import Say, ScriptParser, Stop, script_text

DOCTOR = SceneCharacter("Dr: Wh\u200bo", "a time lord.")
"""Shown to the model as ``Dr Who``: the colon becomes a space, the zero-width space goes."""
JON = "Jo\u200bn"
SETTING = "A police box in a field."


def test_the_sheet_shows_each_name_as_its_label() -> None:
    """Character, human, rules and opening all name ``Dr Who`` and ``Jon``, never the raw names."""
    sheet = scene_sheet(Scene((DOCTOR,), (JON,), SETTING))
    assert sheet == (
        "Characters:\n"
        "- Dr Who, a time lord.\n"
        "- USER/Jon - don't generate any speech or actions on behalf of Jon\n"
        "Rules:\n"
        "- be sure to use the manerisms and speaking style of the characters correctly\n"
        "- surround character actions with asterisks\n"
        "- always put quotes around words spoken by the characters\n"
        "- use a new line for each character's actions or speech\n"
        "- always prefix actions/speech with the character's name and colon\n"
        "- only generate text and actions on behalf of Dr Who, and never anyone else\n"
        "A police box in a field.\n"
        "Generate a single line from Dr Who to start, with one sentence."
    )


def test_the_stop_string_is_the_humans_label() -> None:
    """The model writes ``Jon:`` as shown on the sheet; that is what stops it."""
    assert human_stops(Scene((DOCTOR,), (JON, "Ann"), SETTING)) == ("\nJon:", "\nAnn:")


def test_the_parser_reads_the_labels_the_model_writes() -> None:
    """``Dr Who:`` is the character (reported under its label) and ``Jon:`` stops the reply."""
    parser = ScriptParser.from_scene(Scene((DOCTOR,), (JON,), SETTING))
    events = parser.feed('Dr Who: "Fantastic."\nJon: hello') + parser.close()
    assert events == [Say("Dr Who", '"Fantastic."', 0), Stop("the model began a line for Jon", "Jon")]


def test_the_stored_script_uses_the_labels() -> None:
    """The script kept as the assistant turn names ``Dr Who``, so the next prompt shows what the sheet shows."""
    assert script_text([(DOCTOR.name, '"Fantastic."')]) == 'Dr Who: "Fantastic."'


def test_human_lines_are_prefixed_with_their_labels() -> None:
    """With several humans, each human line in the prompt starts with the author's label."""
    scene = Scene((DOCTOR,), (JON, "Ann"), SETTING)
    dialogue = scene_dialogue(scene, [ChatMessage("user", "Hi!", JON)])
    assert dialogue.messages[1] == ChatMessage("user", "Jon: Hi!")


@pytest.mark.parametrize(
    ("characters", "humans", "character_labels", "human_labels"),
    [
        ((SceneCharacter("\u200b\u200d", "x"),), (JON,), ("Someone",), ("Jon",)),
        ((DOCTOR, SceneCharacter("dr who", "x")), (), ("Dr Who", "dr who (2)"), ()),
        ((DOCTOR,), ("Dr Who", "dr\u200b who", "Ann"), ("Dr Who",), ("Dr Who (2)", "dr who (3)", "Ann")),
        ((DOCTOR,), ("x" * 60,), ("Dr Who",), ("x" * 40,)),
    ],
)
def test_names_that_clean_to_nothing_or_to_the_same_label_get_distinct_labels(
    characters: tuple[SceneCharacter, ...],
    humans: tuple[str, ...],
    character_labels: tuple[str, ...],
    human_labels: tuple[str, ...],
) -> None:
    """A name showing nothing, two names that look the same once cleaned, a name too long: labelled, never refused."""
    scene = Scene(characters, humans, SETTING)
    assert (scene.character_labels, scene.human_labels) == (character_labels, human_labels)
