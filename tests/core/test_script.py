"""The scene script parser: blocks per character, streamed exactly, stopping at a human's line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.scenes import Scene, SceneCharacter
from bot.core.script import NARRATOR, Say, ScriptEvent, ScriptParser, Stop, parse_script, script_text

CHARACTERS = ("Yoda", "Homer")
HUMANS = ("Jon",)

# The card's second reply (after ASSISTANT:, so it starts with a space).
CARD_REPLY = (
    ' Yoda: "No need to apologize, Jon. We were just enjoying these delightful grapes."\n'
    'Homer: "Yeah, man! It\'s not every day you get to eat grapes with a real-life Jedi Master!"\n'
    "*Yoda raises an eyebrow*"
)


def parser() -> ScriptParser:
    return ScriptParser(CHARACTERS, HUMANS)


def run(text_chunks: list[str], script: ScriptParser | None = None) -> list[ScriptEvent]:
    script = script or parser()
    events: list[ScriptEvent] = []
    for chunk in text_chunks:
        events += script.feed(chunk)
    return events + script.close()


def test_card_reply_gives_each_character_its_lines() -> None:
    """The card's reply is Yoda's line, Homer's line, then Yoda's action (his, not Homer's)."""
    assert parse_script(CARD_REPLY, CHARACTERS, HUMANS) == [
        ("Yoda", '"No need to apologize, Jon. We were just enjoying these delightful grapes."'),
        ("Homer", '"Yeah, man! It\'s not every day you get to eat grapes with a real-life Jedi Master!"'),
        ("Yoda", "*Yoda raises an eyebrow*"),
    ]


def test_blocks_grow_as_tokens_arrive() -> None:
    """Each Say carries the whole block so far and a line index that grows with each new block."""
    events = run(["Yoda: Mm", "m, grapes.", "\nHomer: D", "oh!"])
    assert events == [
        Say("Yoda", "Mm", 0),
        Say("Yoda", "Mmm, grapes.", 0),
        Say("Homer", "D", 1),
        Say("Homer", "Doh!", 1),
    ]


def test_multi_line_speech_stays_one_block() -> None:
    """Lines without a name, blank ones included, continue the previous speaker."""
    text = 'Yoda: "Patience.\n\nMuch to learn, you have."\nHomer: "Mmm."'
    assert parse_script(text, CHARACTERS) == [
        ("Yoda", '"Patience.\n\nMuch to learn, you have."'),
        ("Homer", '"Mmm."'),
    ]


def test_action_line_with_a_colon_is_not_a_name() -> None:
    """A line opening with a single asterisk is an action, even with a colon inside: Yoda's, as it names him."""
    text = "Homer: Woohoo!\n*Yoda: frowns, unimpressed*\n*sighs: deeply*"
    assert parse_script(text, CHARACTERS) == [
        ("Homer", "Woohoo!"),
        ("Yoda", "*Yoda: frowns, unimpressed*\n*sighs: deeply*"),
    ]


def test_human_line_stops_and_is_discarded() -> None:
    """A line for a human ends the script with Stop; nothing after it is reported."""
    events = run(["Yoda: Hello.\nJon: *sits down*\nHomer: Hi!"])
    assert events == [Say("Yoda", "Hello.", 0), Stop("the model began a line for Jon", "Jon")]


def test_feed_after_stop_returns_nothing() -> None:
    """Once stopped, the parser ignores further text."""
    script = parser()
    script.feed("Jon: hi\n")
    assert script.stopped
    assert script.feed("Yoda: more") == []
    assert script.close() == []


def test_human_name_split_across_deltas_is_held_back() -> None:
    """ "Jo" at a line start is not shown until "n: hi" shows it is Jon's line."""
    script = parser()
    assert script.feed("Yoda: Welcome.\n") == [Say("Yoda", "Welcome.", 0)]
    assert script.feed("Jo") == []
    assert script.feed("n: hi") == [Stop("the model began a line for Jon", "Jon")]


def test_held_back_text_that_is_no_name_continues_the_block() -> None:
    """A held-back line start that turns out to be speech joins the current block."""
    script = parser()
    script.feed("Yoda: Welcome.\n")
    assert script.feed("Jo") == []
    assert script.feed("lly good.\n") == [Say("Yoda", "Welcome.\nJolly good.", 0)]


def test_unknown_names_are_dropped_until_a_known_speaker() -> None:
    """A line for a name not in the scene, and its continuation, are never reported."""
    text = "Yoda: Hm.\nDarth Vader: I am your father.\n*breathes*\nHomer: D'oh!"
    assert parse_script(text, CHARACTERS, HUMANS) == [("Yoda", "Hm."), ("Homer", "D'oh!")]


def test_names_match_loosely() -> None:
    """Names match whatever their case, bold markers, quotes, spaces or a USER/ prefix."""
    text = '**yoda:** one\n"HOMER": two\n  **Yoda** : three\n__Homer__: four\nUSER/Jon: five'
    assert parse_script(text, CHARACTERS, HUMANS) == [
        ("Yoda", "one"),
        ("Homer", "two"),
        ("Yoda", "three"),
        ("Homer", "four"),
    ]


def test_names_with_spaces_and_aliases() -> None:
    """A speaker named with spaces is matched whole, and a scene's full name counts as its character."""
    scene = Scene(
        (
            SceneCharacter("Homer", "the goofy guy.", full_name="Homer Simpson"),
            SceneCharacter("Jean Luc", "a captain."),
        ),
        ("Ann Lee",),
        "",
    )
    events = run(["Homer Simpson: Mmm.\nJean Luc: Engage.\nAnn Lee: hi"], ScriptParser.from_scene(scene))
    assert events == [
        Say("Homer", "Mmm.", 0),
        Say("Jean Luc", "Engage.", 1),
        Stop("the model began a line for Ann Lee", "Ann Lee"),
    ]


def test_text_before_the_first_name_is_narration() -> None:
    """An unnamed opening is the narrator's block when several characters could have said it."""
    assert parse_script("*The cafe hums*\nHomer: Hi.", CHARACTERS) == [(NARRATOR, "*The cafe hums*"), ("Homer", "Hi.")]


def test_an_unnamed_reply_in_a_one_character_scene_is_that_characters() -> None:
    """A small model that forgets the name in a one-character scene still speaks as the character."""
    assert parse_script('*nods slowly* "Yes."', ["Yoda"], HUMANS) == [("Yoda", '*nods slowly* "Yes."')]


def test_colon_inside_speech_is_not_a_name() -> None:
    """A colon later in a continuation line, or after lowercase words, does not start a block."""
    text = 'Yoda: Listen.\n"Three things: patience, focus, grapes."\nso basically: yes'
    assert parse_script(text, CHARACTERS) == [
        ("Yoda", 'Listen.\n"Three things: patience, focus, grapes."\nso basically: yes')
    ]


def test_long_unnamed_line_streams_before_its_end() -> None:
    """A line longer than any name is shown before its line break arrives."""
    script = parser()
    script.feed("Yoda: Hm.\n")
    assert script.feed("word " * 25) == [Say("Yoda", "Hm.\n" + ("word " * 25).strip(), 0)]


def test_script_text_rebuilds_the_script() -> None:
    """Parsed blocks print back as Name: text lines."""
    assert script_text(parse_script(CARD_REPLY, CHARACTERS, HUMANS)).startswith('Yoda: "No need to apologize')


def final_blocks(events: list[ScriptEvent]) -> tuple[dict[int, Say], list[Stop]]:
    blocks: dict[int, Say] = {}
    for event in events:
        if isinstance(event, Say):
            # A block only ever grows: each Say extends the one before it.
            assert event.line_index not in blocks or event.text.startswith(blocks[event.line_index].text)
            blocks[event.line_index] = event
    return blocks, [e for e in events if isinstance(e, Stop)]


SAMPLE = (
    'Yoda: "Hm.\nPatient, be."\n**Homer:** Mmm *drools*\n\nDarth: ignore me\n*waves*\n'
    'yoda : "Jon: sit."\nJo\nJon Snow: not a human here\nHOMER Doh\nHomer: '
    + "long " * 20
    + "\n"
    + "Then " * 14
    + ": late colon\nJon: stop here\nYoda: lost"
)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_result(data: st.DataObject) -> None:
    """Feeding a script in any pieces yields the same blocks and Stop as feeding it whole."""
    text = data.draw(st.sampled_from([SAMPLE, CARD_REPLY, SAMPLE.replace("Jon: stop here\n", "")]))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert final_blocks(run(chunks)) == final_blocks(run([text]))


SHAPES_7B = [
    ('Homer (whispering): "Psst"', [("Homer", '*whispering* "Psst"')]),
    ('Homer [aside]: "Not now."', [("Homer", '*aside* "Not now."')]),
    ('1. Yoda: "Hm."\n2. Homer: "Doh."', [("Yoda", '"Hm."'), ("Homer", '"Doh."')]),
    ('- Yoda: "Hm."\n* Homer: "Doh."', [("Yoda", '"Hm."'), ("Homer", '"Doh."')]),
    ('Yoda - "Patience, you must have."', [("Yoda", '"Patience, you must have."')]),
    ('Homer — "Woohoo!"', [("Homer", '"Woohoo!"')]),
    ("**Homer**: Mmm, grapes.", [("Homer", "Mmm, grapes.")]),
    ("Narrator: The door creaks open.\nYoda: Hm.", [(NARRATOR, "The door creaks open."), ("Yoda", "Hm.")]),
    ("The cafe is quiet.\nYoda: Hm.", [(NARRATOR, "The cafe is quiet."), ("Yoda", "Hm.")]),
    ('Yoda: "Hm."\n\nThe lights flicker.', [("Yoda", '"Hm."'), (NARRATOR, "The lights flicker.")]),
    ('Yoda: "Long ago,\n\nthe clones came."', [("Yoda", '"Long ago,\n\nthe clones came."')]),
    ('Yoda: "Sit."\n*Jon sits down*\nHomer: Hi.', [("Yoda", '"Sit."'), ("Homer", "Hi.")]),
    ('Homer: "Hi."\n*Yoda strokes his chin*', [("Homer", '"Hi."'), ("Yoda", "*Yoda strokes his chin*")]),
    ('Yoda: "Hm."\n*Yoda strokes his chin*', [("Yoda", '"Hm."\n*Yoda strokes his chin*')]),
    ('Yoda: "Sit."\nJon - "No."', [("Yoda", '"Sit."')]),
    ('Yoda: "Sit."\nJon (angrily): No.', [("Yoda", '"Sit."')]),
    ("Yoda: a - b - c", [("Yoda", "a - b - c")]),
    ("Homer: Well - Yoda: no", [("Homer", "Well - Yoda: no")]),
]


@pytest.mark.parametrize(("text", "lines"), SHAPES_7B, ids=[text[:24] for text, _ in SHAPES_7B])
def test_what_7b_models_write_goes_to_the_right_speaker(text: str, lines: list[tuple[str, str]]) -> None:
    """Asides, numbers, bullets, dashes, bold names, narration and a person's action: each line to its speaker."""
    assert parse_script(text, CHARACTERS, HUMANS) == lines


def test_a_line_for_a_person_in_any_shape_stops_the_script() -> None:
    """``Jon - ...`` and ``Jon (angrily):`` are lines for a person: the script stops there."""
    for text in ('Yoda: "Sit."\nJon - "No."', "Yoda: Sit.\n2. Jon (angrily): No."):
        assert run([text])[-1] == Stop("the model began a line for Jon", "Jon")


def test_the_turn_stops_after_max_lines_character_lines() -> None:
    """With ``max_lines=2`` the third character line stops the script; narration is not counted."""
    events = run(["Yoda: a\n\nThe wind.\nHomer: b\nYoda: c\nHomer: d"], ScriptParser(CHARACTERS, max_lines=2))
    assert events == [
        Say("Yoda", "a", 0),
        Say(NARRATOR, "The wind.", 1),
        Say("Homer", "b", 2),
        Stop("the turn has all its lines", ""),
    ]


def test_script_text_writes_narration_bare() -> None:
    """Narration goes back into the stored script as the model wrote it, without a name."""
    assert script_text([(NARRATOR, "The wind."), ("Yoda", "Hm.")]) == "The wind.\nYoda: Hm."


SHAPES_SAMPLE = "\n".join(text for text, _ in SHAPES_7B if "Jon" not in text) + '\nHomer: "bye"\nJon - "No."\nYoda: x'


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_chunking_of_7b_shapes_gives_the_same_result(data: st.DataObject) -> None:
    """The 7B shapes, fed in any pieces, give the same blocks and Stop as fed whole."""
    cuts = sorted(data.draw(st.sets(st.integers(0, len(SHAPES_SAMPLE)), max_size=12)))
    chunks = [SHAPES_SAMPLE[a:b] for a, b in zip([0, *cuts], [*cuts, len(SHAPES_SAMPLE)], strict=True)]
    assert final_blocks(run(chunks)) == final_blocks(run([SHAPES_SAMPLE]))
