"""Skills: golden prompts (code, jokes, riddles, judging), riddle and verdict parsing, riddle retries, judging."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.chat import Author, ChatOptions, ChatService
from bot.core.messages import ChatMessage, Dialogue
from bot.core.prompts import AiroborosFormat, PromptBuilder
from bot.core.skills import (
    LANGUAGES,
    Riddle,
    RiddleFormatError,
    answers_match,
    as_code_block,
    code_of,
    code_prompt,
    joke_prompt,
    judge_guess,
    judge_prompt,
    make_riddle,
    normalize_answer,
    parse_riddle,
    parse_verdict,
    riddle_prompt,
)
from bot.inference.tokenizer import HFTokenizer
from bot.inference.types import Prompt
from tests.doubles import ScriptedBackend

ALICE = Author(1, "Alice")
PYTHON = LANGUAGES["python"]
BOTTLE = Riddle("What has a neck but no head?", "A bottle")


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], delay=0.0)


def replies(*texts: str) -> Callable[[Prompt], str]:
    """A script that answers with ``texts`` in turn (the last one again once they run out)."""
    queue = list(texts)
    return lambda prompt: queue.pop(0) if len(queue) > 1 else queue[0]


# -- golden prompts ------------------------------------------------------------------------------


def test_a_joke_prompt_is_the_cards_wording() -> None:
    """/joke bananas asks exactly "Tell me a joke about bananas." (the card's example)."""
    assert joke_prompt("bananas") == "Tell me a joke about bananas."
    assert joke_prompt("  rubber\n ducks. ") == "Tell me a joke about rubber ducks."


def test_a_joke_without_topic_asks_for_any_joke() -> None:
    """Without a topic the prompt is "Tell me a joke."."""
    assert joke_prompt(None) == joke_prompt("  ") == "Tell me a joke."


def test_plainformat_is_appended_after_one_space() -> None:
    """plain adds " PLAINFORMAT" to the task, as the card says; without it nothing is added."""
    assert code_prompt("FizzBuzz", PYTHON, plain=True) == (
        "Create a solution in Python for the following task: FizzBuzz PLAINFORMAT"
    )
    assert code_prompt(" FizzBuzz \n", PYTHON) == "Create a solution in Python for the following task: FizzBuzz"


def test_the_joke_goes_into_the_cards_layout_byte_for_byte(llama_like_tokenizer: HFTokenizer) -> None:
    """Wrapped in the airoboros layout, the joke prompt is the card's training prompt."""
    builder = PromptBuilder(AiroborosFormat(AIROBOROS_SYSTEM_PROMPT), llama_like_tokenizer, context_length=2048)
    dialogue = Dialogue(None, (ChatMessage("user", joke_prompt("bananas")),))
    text = builder.build(dialogue, max_new_tokens=64).text
    assert text == f"{AIROBOROS_SYSTEM_PROMPT} USER: Tell me a joke about bananas. ASSISTANT:"


def test_a_riddle_prompt_asks_for_an_answer_line() -> None:
    """The riddle prompt names the topic and the "Answer:" line the parser reads."""
    assert riddle_prompt("the sea") == (
        "Tell me a riddle about the sea. "
        'Write the riddle, then its answer on a last line of its own that starts with "Answer:".'
    )
    assert riddle_prompt(None).startswith("Tell me a riddle. ")


def test_the_judge_prompt_is_a_yes_no_question() -> None:
    """The judge sees the riddle, the correct answer and the guess, and is asked for yes or no."""
    assert judge_prompt(BOTTLE, "  a  jar ") == (
        "Riddle: What has a neck but no head?\n"
        "Correct answer: A bottle\n"
        "Proposed answer: a jar\n"
        "Is the proposed answer correct? Answer yes or no."
    )


# -- code blocks ---------------------------------------------------------------------------------


def test_a_reply_without_a_fence_is_wrapped_with_the_language_tag() -> None:
    """Bare code (PLAINFORMAT) is shown in a code block tagged with the language."""
    assert as_code_block("print(1)\n", PYTHON) == "```python\nprint(1)\n```"


def test_a_reply_with_a_fence_keeps_it() -> None:
    """A reply that has its own fence is shown as written."""
    text = "Here it is:\n```py\nprint(1)\n```\nDone."
    assert as_code_block(text, PYTHON) == text


def test_the_file_holds_the_code_of_the_fenced_blocks() -> None:
    """A long answer's file holds the code inside the fences, or the whole reply when it has none."""
    assert code_of("Here:\n```python\nprint(1)\n```\nand\n```\nprint(2)\n```\nbye") == "print(1)\n\nprint(2)\n"
    assert code_of("print(1)\nprint(2)") == "print(1)\nprint(2)\n"
    assert code_of("```python\nprint(1)\n") == "print(1)\n"  # a fence the model never closed


def test_languages_have_extensions_and_fit_discords_choices() -> None:
    """Each language has its file name; there are at most 25 (Discord's limit of choices)."""
    assert len(LANGUAGES) <= 25
    assert (LANGUAGES["rust"].filename, LANGUAGES["cpp"].fence, LANGUAGES["bash"].filename) == (
        "answer.rs",
        "cpp",
        "answer.sh",
    )


# -- riddle parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "What has a neck but no head?\nAnswer: A bottle.",
        "What has a neck but no head?\n\nanswer - a bottle",
        "Q: What has a neck but no head?\nA: A bottle",
        "Riddle: What has a neck but no head?\n**Answer:** *A bottle*",
        "What has a neck but no head?\nAnswer:\nA bottle.",
        "What has a neck but no head? Answer: A bottle.",
        'What has a neck but no head?\nANSWER — "A bottle"',
    ],
)
def test_each_answer_form_is_read(text: str) -> None:
    """Answer:, answer -, A:, bold labels, the answer on its own line or inline: the same riddle."""
    riddle = parse_riddle(text)
    assert riddle.question == "What has a neck but no head?"
    assert riddle.answer.lower() == "a bottle"


def test_a_multi_line_riddle_keeps_its_lines() -> None:
    """Every line before the answer line is the riddle."""
    riddle = parse_riddle("I speak without a mouth\nand hear without ears.\nWhat am I?\nAnswer: An echo")
    assert riddle == Riddle("I speak without a mouth\nand hear without ears.\nWhat am I?", "An echo")


@pytest.mark.parametrize(
    "text", ["", "What has a neck but no head?", "Answer: A bottle", "A bottle.\nWhat has a neck?", "Answer: "]
)
def test_a_reply_without_riddle_or_answer_is_refused(text: str) -> None:
    """No answer line, or no riddle before it: a RiddleFormatError."""
    with pytest.raises(RiddleFormatError):
        parse_riddle(text)


async def test_an_unreadable_riddle_is_asked_again_once(chat: ChatService, backend: ScriptedBackend) -> None:
    """The first reply has no answer line; the second is used."""
    backend.script = replies("I am a riddle with no answer.", "What has a neck but no head?\nAnswer: A bottle")
    assert await make_riddle(chat, ALICE, "bottles", ChatOptions()) == BOTTLE
    assert len(backend.prompts) == 2
    assert riddle_prompt("bottles") in backend.prompts[0].text


async def test_two_unreadable_riddles_end_in_a_clear_error(chat: ChatService, backend: ScriptedBackend) -> None:
    """After the retry, the person is told the model wrote no readable riddle; no third try."""
    backend.script = replies("No riddle here.")
    with pytest.raises(RiddleFormatError, match="did not write a riddle"):
        await make_riddle(chat, ALICE, None, ChatOptions())
    assert len(backend.prompts) == 2


# -- judging -------------------------------------------------------------------------------------


def test_normalization_ignores_case_punctuation_articles_and_spacing() -> None:
    """ "The  Bottle!" and "a bottle" are the same answer; "bottles" is not."""
    assert normalize_answer("  The  Bottle! ") == "bottle"
    assert answers_match("a bottle", "The Bottle.")
    assert answers_match("An   ECHO", "echo")
    assert not answers_match("bottles", "a bottle")
    assert not answers_match("the", "the")  # nothing left to compare


@pytest.mark.parametrize(
    ("text", "verdict"),
    [("Yes.", True), ("no", False), ("No, it is not.", False), ("Yes, a jar has a neck.", True), ("Maybe", None)],
)
def test_the_verdict_is_the_first_yes_or_no(text: str, verdict: bool | None) -> None:
    """The model's first yes/no word decides; neither gives None."""
    assert parse_verdict(text) is verdict


async def test_a_normalized_match_needs_no_model(chat: ChatService, backend: ScriptedBackend) -> None:
    """A guess equal to the answer once normalized is right without asking the model."""
    assert await judge_guess(chat, ALICE, BOTTLE, "bottle!", ChatOptions())
    assert backend.prompts == []


async def test_the_model_judges_other_guesses(chat: ChatService, backend: ScriptedBackend) -> None:
    """Another wording is right if the model says yes, wrong if it says no."""
    backend.script = replies("Yes.", "No.")
    assert await judge_guess(chat, ALICE, BOTTLE, "a glass bottle", ChatOptions(temperature=0.9))
    assert not await judge_guess(chat, ALICE, BOTTLE, "a giraffe", ChatOptions())
    assert judge_prompt(BOTTLE, "a glass bottle") in backend.prompts[0].text
    assert len(backend.prompts) == 2


async def test_a_verdict_that_is_neither_counts_as_no(chat: ChatService, backend: ScriptedBackend) -> None:
    """A model that answers neither yes nor no does not solve the riddle."""
    backend.script = replies("Hmm, perhaps.")
    assert not await judge_guess(chat, ALICE, BOTTLE, "a vase", ChatOptions())
