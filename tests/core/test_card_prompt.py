"""Every card field in a scene's prompt, golden: macros, scenario, examples, instructions, lorebook, V3, the fit."""

from __future__ import annotations

import dataclasses

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.card_prompt import (
    card_fields,
    card_size,
    greetings,
    scene_character,
    scene_fit,
    split_examples,
    with_lore,
)
from bot.core.cards import CardData, parse_card
from bot.core.lorebook import lore_for_turn
from bot.core.macros import fill_macros
from bot.core.messages import ChatMessage
from bot.core.prompts import AiroborosFormat, PromptBuilder
from bot.core.scenes import CARD_RULES, Scene, SceneCharacter, scene_dialogue, scene_sheet
from bot.inference.tokenizer import HFTokenizer
from tests.core._cards import card_file, stored

SYSTEM = AIROBOROS_SYSTEM_PROMPT
RULES = "".join(f"- {rule}\n" for rule in CARD_RULES)
MIRA_LINE = (
    "- Mira, Mira is the keeper of the Lantern Inn, a tavern at the edge of the Saltmarsh. She knows every "
    "traveller's secret and sells none of them. warm, sly, protective of Jon\n"
)
MIRA_EXAMPLES = (
    "Example dialogue with Mira:\n"
    "Jon: Is there a room free?\n"
    'Mira: *wipes a mug* "For you? The one with the lock that works."\n'
    "Example dialogue with Mira:\n"
    "Jon: What's out in the marsh?\n"
    'Mira: "Lights. Don\'t follow them."\n'
)


def airoboros(tokenizer: HFTokenizer, context: int = 2048) -> PromptBuilder:
    return PromptBuilder(AiroborosFormat(SYSTEM), tokenizer, context_length=context)


def mira() -> CardData:
    return parse_card(card_file("mira_v2.json"), "mira.json")


def lore(card: CardData, recent: list[str], *, user: str = "Jon", budget: int = 200) -> tuple[str, ...]:
    book = card_fields(card.extra).lorebook
    assert book is not None
    books = [(book, lambda text: fill_macros(text, char=card.name, user=user))]
    return lore_for_turn(books, recent, scan_depth=4, budget=budget, count_tokens=lambda text: len(text.split()))


def mira_scene(recent: list[str] | None = None) -> Scene:
    scene = Scene((scene_character(stored(mira())),), ("Jon",), "A storm night.")
    books = [card_fields(mira().extra).lorebook]
    return with_lore(scene, books, recent or [], scan_depth=4, budget=200, count=lambda text: len(text.split()))


def test_a_v2_cards_fields_fill_the_one_character_prompt(llama_like_tokenizer: HFTokenizer) -> None:
    """Mira alone with Jon: her system prompt (with {{original}}), sheet, examples, lore, scenario, post-history."""
    prompt = airoboros(llama_like_tokenizer).build(
        scene_dialogue(mira_scene(), [], original_system=SYSTEM), max_new_tokens=256
    )
    assert prompt.text == (
        f"Write Mira's next reply in a fictional roleplay with Jon. {SYSTEM} USER: Characters:\n{MIRA_LINE}"
        "- USER/Jon - don't generate any speech or actions on behalf of Jon\n"
        f"Rules:\n{RULES}- only generate text and actions on behalf of Mira, and never anyone else\n"
        f"{MIRA_EXAMPLES}"
        "It always rains in the Saltmarsh.\n"
        "Jon arrives at the Lantern Inn during a storm, soaked to the bone.\n"
        "A storm night.\n"
        "Generate a single line from Mira to start, with one sentence.\n"
        "Stay in character as Mira; keep replies under three paragraphs. ASSISTANT:"
    )


def test_post_history_instructions_follow_the_last_persons_line(llama_like_tokenizer: HFTokenizer) -> None:
    """Once people have spoken, the card's post-history instructions close the last user turn, not the sheet."""
    turns = [ChatMessage("assistant", 'Mira: "Shut the door."'), ChatMessage("user", "*shuts it*", "Jon")]
    prompt = airoboros(llama_like_tokenizer).build(
        scene_dialogue(mira_scene(), turns, original_system=SYSTEM), max_new_tokens=256
    )
    assert prompt.text.endswith(
        "Generate a single line from Mira to start, with one sentence. ASSISTANT: "
        'Mira: "Shut the door."</s>USER: *shuts it*\n'
        "Stay in character as Mira; keep replies under three paragraphs. ASSISTANT:"
    )


def test_user_is_every_person_of_the_scene_joined_by_and() -> None:
    """With two people, {{user}} and <USER> name both."""
    scene = Scene((scene_character(stored(mira())),), ("Jon", "Ann"), "")
    sheet = scene_sheet(scene)
    assert "protective of Jon and Ann\n" in sheet
    assert "Jon and Ann arrives at the Lantern Inn" in sheet


def test_examples_give_way_to_the_conversation_when_the_window_is_tight(llama_like_tokenizer: HFTokenizer) -> None:
    """Examples are kept while every turn fits with them, the last block first to go; only then do turns go."""
    scene = mira_scene()
    turns = [ChatMessage("assistant", 'Mira: "Shut the door."')]
    for index in range(6):
        turns += [ChatMessage("user", f"line {index} " + "word " * 12, "Jon"), ChatMessage("assistant", "Mira: ok")]
    turns.append(ChatMessage("user", "last", "Jon"))
    dialogue = scene_dialogue(scene, turns, original_system=SYSTEM)
    builder = airoboros(llama_like_tokenizer)
    full = builder.build(dialogue, max_new_tokens=256)
    without_examples = builder.build(dataclasses.replace(dialogue, examples=()), max_new_tokens=256)
    first_only = builder.build(dataclasses.replace(dialogue, examples=dialogue.examples[:1]), max_new_tokens=256)
    assert full.text.count("Example dialogue with Mira:") == 2

    tight = airoboros(llama_like_tokenizer, context=len(full) + 256 - 1).build(dialogue, max_new_tokens=256)
    assert tight.text == first_only.text and tight.dropped_turns == 0

    tighter = airoboros(llama_like_tokenizer, context=len(without_examples) + 256).build(dialogue, max_new_tokens=256)
    assert tighter.text == without_examples.text and tighter.dropped_turns == 0

    tightest = airoboros(llama_like_tokenizer, context=len(without_examples) + 255).build(dialogue, max_new_tokens=256)
    assert "Example dialogue" not in tightest.text and tightest.dropped_turns > 0
    assert "line 0 " not in tightest.text and tightest.text.endswith(
        "USER: last\nStay in character as Mira; keep replies under three paragraphs. ASSISTANT:"
    )


def test_examples_are_never_pinned() -> None:
    """The examples are the dialogue's droppable examples, not among its pinned messages."""
    dialogue = scene_dialogue(mira_scene(), [])
    assert len(dialogue.examples) == 2
    assert not any("Example dialogue" in m.content for m in dialogue.messages)


def test_a_lorebook_entry_comes_in_when_its_key_is_in_the_recent_messages(llama_like_tokenizer: HFTokenizer) -> None:
    """A key in the last two messages (the book's scan depth) brings its entry after the constant one (insertion
    order 10 after 1); three messages back is too far; a case-sensitive key needs its case."""
    recent = ["What are those lights?", "*shivers*"]
    assert lore(mira(), recent) == (
        "It always rains in the Saltmarsh.",
        "The marsh lights are drowned souls; whoever follows them is never found.",
    )
    assert lore(mira(), [*recent, "Let's go in."]) == ("It always rains in the Saltmarsh.",)
    assert "lighthouse" in "\n".join(lore(mira(), ["the Lantern Inn"]))
    assert "lighthouse" not in "\n".join(lore(mira(), ["the lantern inn"]))
    sheet = scene_sheet(mira_scene(recent))
    assert (
        "never anyone else\nIt always rains in the Saltmarsh.\n"
        "The marsh lights are drowned souls; whoever follows them is never found.\n"
        "Jon arrives at the Lantern Inn"
    ) in sheet


def test_a_v3_card_reaches_the_prompt_through_its_v2_fields() -> None:
    """Vex's V3 card: description, scenario and its example (no <START>: one block) on the sheet."""
    vex = parse_card(card_file("vex_v3.json"), "vex.json")
    scene = Scene((scene_character(stored(vex)),), ("Jon",), "")
    dialogue = scene_dialogue(scene, [])
    assert dialogue.messages[0].content.startswith(
        "Characters:\n- Vex, A rogue android who hunts bounties across the ring stations for Jon. dry, exact\n"
    )
    assert dialogue.messages[1].content == (
        "Docking bay 9 of Ceres Ring.\nGenerate a single line from Vex to start, with one sentence."
    )
    assert [m.content for m in dialogue.examples] == [
        'Example dialogue with Vex:\nJon: Where to?\nVex: "Down. Always down."'
    ]


def test_several_characters_carry_their_instructions_as_rules_in_cast_order() -> None:
    """With two cards, each one's system prompt then post-history instructions follow the rules; no system swap."""
    first = scene_character(stored(mira()))
    second = SceneCharacter("Bo", "a smuggler.", system_prompt="{{char}} lies to {{user}}.", post_history="Be brief.")
    dialogue = scene_dialogue(Scene((first, second), ("Jon",), ""), [], system=None, original_system=SYSTEM)
    assert dialogue.system is None
    assert (
        "- only generate text and actions on behalf of Mira or Bo, and never anyone else\n"
        "- Write Mira's next reply in a fictional roleplay with Jon.\n"
        "- Stay in character as Mira; keep replies under three paragraphs.\n"
        "- Bo lies to Jon.\n"
        "- Be brief.\n"
    ) in dialogue.messages[0].content + "\n"


def test_greetings_are_first_mes_then_alternates_with_macros_filled() -> None:
    """The opening and its swipes, for the person addressed; V3's group greetings only in a group."""
    fields = card_fields(mira().extra)
    assert greetings(fields, char="Mira", user="Jon") == (
        '*Mira looks up from the bar as the door bangs open.* "Shut that, Jon, before the marsh comes in with you."',
        '*The fire is low when Jon comes in.* "Late again, Jon."',
        '"We\'re closed," *Mira says, then sees who it is.* "...Fine. Sit."',
    )
    vex = card_fields(parse_card(card_file("vex_v3.json"), "vex.json").extra)
    assert len(greetings(vex, char="Vex")) == 1 and len(greetings(vex, char="Vex", group=True)) == 2


def test_examples_are_cut_at_each_start_marker() -> None:
    """<START> in any case splits blocks; text before the first is a block; blank lines and empty blocks go."""
    assert split_examples("intro\n<START>\n\nA: 1\n\n<start>\n<START>\nB: 2  ") == ("intro", "A: 1", "B: 2")


def test_our_exports_speaking_style_copy_is_not_taken_for_examples() -> None:
    """A mes_example equal to the speaking style our export carried is that export's copy of it: no examples."""
    ours = {"extensions": {"airoboros_bot": {"speaking_style": "Terse."}}}
    assert card_fields({"mes_example": "Terse.", **ours}).examples == ()
    assert card_fields({"mes_example": "Terse."}).examples == ("Terse.",)


def test_card_size_is_measured_with_the_llama_tokenizer(llama_tokenizer: HFTokenizer) -> None:
    """Mira's sheet, examples and lorebook reserve, counted by the LLaMA-1-style tokenizer (for a person "User")."""

    def count(text: str) -> int:
        return len(llama_tokenizer.encode_plain(text))

    size = card_size(scene_character(stored(mira())), card_fields(mira().extra).lorebook, count=count, lore_budget=256)
    line = MIRA_LINE.replace("Jon", "User").strip()
    scenario = "User arrives at the Lantern Inn during a storm, soaked to the bone."
    instructions = (
        "Write Mira's next reply in a fictional roleplay with User. ",
        "Stay in character as Mira; keep replies under three paragraphs.",
    )
    assert size.sheet == sum(count(text) for text in (line, scenario, *instructions))
    blocks = MIRA_EXAMPLES.replace("Jon", "User").rstrip("\n").split("\nExample")
    assert size.examples == count(blocks[0]) + count("Example" + blocks[1])
    assert size.lorebook == 120  # the book's own token_budget, under the 256 allowed


def test_a_cast_that_does_not_fit_is_named_card_by_card(llama_tokenizer: HFTokenizer) -> None:
    """Two long cards in a 2,048 window less 512: the refusal names each card's size and the budget."""
    long = [SceneCharacter(name, "word " * 300) for name in ("Ann", "Bo")]
    builder = PromptBuilder(AiroborosFormat(SYSTEM), llama_tokenizer, context_length=2048)
    fit = scene_fit(
        Scene(tuple(long), ("Jon",), "x"),
        builder,
        [None, None],
        max_new_tokens=512,
        system=None,
        lore_budget=256,
        conversation_tokens=256,
    )
    assert not fit.fits
    assert fit.window == 1536 and fit.prompt > 1400
    message = fit.refusal()
    assert f"Ann {fit.cards[0][1]:,}, Bo {fit.cards[1][1]:,}" in message
    assert "a prompt has 1,536 tokens (a 2,048-token window less 512 for the reply)" in message
    assert "256 are kept for the conversation" in message
    one = scene_fit(
        Scene((long[0],), ("Jon",), "x"),
        builder,
        [None],
        max_new_tokens=512,
        system=None,
        lore_budget=256,
        conversation_tokens=256,
    )
    assert one.fits
