"""Quiz questions: the request prompt (golden string), the parser, the shuffle, the retry."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.chat import ChatService
from bot.core.chat_prompts import Author
from bot.core.messages import Dialogue
from bot.core.prompts import AiroborosFormat, PromptBuilder
from bot.core.quiz import (
    LETTERS,
    QuizFormatError,
    QuizParseError,
    QuizQuestion,
    parse_question,
    quiz_messages,
    shuffled,
    write_question,
)
from bot.inference.tokenizer import HFTokenizer
from tests.doubles import ScriptedBackend

ALICE = Author(1, "Alice")
PLUTO = (
    "Which of the following astronomical objects is composed primarily of ice and rock, "
    "and is located in the Kuiper Belt?\nA) Mercury\nB) Venus\nC) Pluto\nD) Jupiter"
)
VOLCANO = "Which gas do volcanoes release most?\nA) Oxygen\nB) Water vapour\nC) Helium\nD) Neon\nAnswer: B"


def airoboros_prompt(tokenizer: HFTokenizer, topic: str | None) -> str:
    builder = PromptBuilder(AiroborosFormat(AIROBOROS_SYSTEM_PROMPT), tokenizer, context_length=2048)
    return builder.build(Dialogue(None, tuple(quiz_messages(topic))), max_new_tokens=256).text


def test_request_is_the_card_example_then_the_topic(llama_like_tokenizer: HFTokenizer) -> None:
    """The prompt is the vicuna layout: the card's example as an earlier exchange, then the request."""
    assert airoboros_prompt(llama_like_tokenizer, "volcanoes") == (
        f"{AIROBOROS_SYSTEM_PROMPT} USER: Write a multiple choice question about astronomy, with four options A) to D)"
        f" and the answer. ASSISTANT: {PLUTO}\nAnswer: C, Pluto</s>USER: Write a multiple choice question about"
        " volcanoes, with four options A) to D) and the answer. ASSISTANT:"
    )


def test_request_without_topic_asks_for_general_knowledge(llama_like_tokenizer: HFTokenizer) -> None:
    """No topic (or only spaces) asks about general knowledge; a topic's line breaks become spaces."""
    assert airoboros_prompt(llama_like_tokenizer, "  ").endswith(
        "question about general knowledge, with four options A) to D) and the answer. ASSISTANT:"
    )
    assert "question about Roman\nhistory" not in airoboros_prompt(llama_like_tokenizer, "Roman\nhistory")
    assert "question about Roman history, with" in airoboros_prompt(llama_like_tokenizer, "Roman\nhistory")


@pytest.mark.parametrize(
    "answer",
    [
        "C",
        "C, Pluto",
        "Answer: C",
        "C) Pluto",
        "The answer is C",
        "c",
        "c, pluto",
        "answer: c.",
        "The answer is C.",
        "The correct answer is C) Pluto.",
        "C.",
        "(C) Pluto",
        "**Answer:** C",
        "Answer:\nC, Pluto",
        "\nAnswer: C, Pluto\nPluto is a dwarf planet.",
    ],
)
def test_every_answer_form_is_read(answer: str) -> None:
    """Each way the model writes the answer gives letter C."""
    quiz = parse_question(f"{PLUTO}\n{answer}")
    assert quiz.answer == "C"
    assert quiz.question.startswith("Which of the following astronomical objects")
    assert quiz.options == ("Mercury", "Venus", "Pluto", "Jupiter")


def test_question_label_and_blank_lines_are_tolerated() -> None:
    """A "Question:" label, blank lines and lower-case option letters still parse."""
    quiz = parse_question("Question: What is 2 + 2?\n\na) 3\nb) 4\n\nc) 5\nd) 22\n\nThe answer is B.")
    assert (quiz.question, quiz.options, quiz.answer) == ("What is 2 + 2?", ("3", "4", "5", "22"), "B")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A) Mercury\nB) Venus\nC) Pluto\nD) Jupiter\nAnswer: C", "no question"),
        ("Which planet is icy?\nAnswer: Pluto", "no options"),
        ("Which planet is icy?\nA) Mercury\nB) Venus\nC) Pluto\nAnswer: C", "only 3 options"),
        (f"{PLUTO}\nPluto, obviously.", "no answer letter"),
        (f"{PLUTO}\n", "no answer letter"),
        ("Which planet is icy?\nA) Mercury\nB) Venus\nB) Pluto\nD) Jupiter\nAnswer: B", "option B appears twice"),
        ("Which planet is icy?\nA) Mercury\nB)\nC) Pluto\nD) Jupiter\nAnswer: C", "option B is empty"),
        (f"{PLUTO}\na dwarf planet, C", "no answer letter"),
    ],
)
def test_malformed_replies_say_what_is_missing(text: str, problem: str) -> None:
    """A reply without a question, four distinct options or an answer letter is refused with the reason."""
    with pytest.raises(QuizParseError, match=problem):
        parse_question(text)


@pytest.fixture
def backend(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], delay=0.0)


async def test_an_unusable_reply_is_asked_for_again(chat: ChatService, backend: ScriptedBackend) -> None:
    """The first reply has no answer; the retry's reply is used."""
    replies = iter([PLUTO, VOLCANO])
    backend.script = lambda prompt: next(replies)
    quiz = await write_question(chat, ALICE, "volcanoes")
    assert quiz.option(quiz.answer) == "Water vapour"
    assert len(backend.prompts) == 2
    assert "about volcanoes" in backend.prompts[1].text


async def test_two_unusable_replies_end_in_a_clear_error(chat: ChatService, backend: ScriptedBackend) -> None:
    """After the retry also fails, the error says what was wrong and to try again."""
    backend.script = lambda prompt: "I don't know any questions."
    with pytest.raises(QuizFormatError, match=r"did not write a usable quiz question \(no options A\) to D\)\)"):
        await write_question(chat, ALICE, None)
    assert len(backend.prompts) == 2


# -- the shuffle ---------------------------------------------------------------------------------

CARD = QuizQuestion("Which object is in the Kuiper Belt?", ("Mercury", "Venus", "Pluto", "Jupiter"), "C")


def test_shuffling_moves_the_answer_letter_with_its_option() -> None:
    """Whatever the order, the answer letter points at the same option and every option is kept once."""
    for seed in range(50):
        quiz = shuffled(CARD, random.Random(seed))
        assert quiz.option(quiz.answer) == "Pluto"
        assert sorted(quiz.options) == sorted(CARD.options)
        assert quiz.question == CARD.question


def test_all_of_the_above_keeps_its_place() -> None:
    """ "All of the above" stays at D; the other options move."""
    quiz = QuizQuestion("Which are planets?", ("Mars", "Venus", "Earth", "All of the above"), "D")
    orders = {shuffled(quiz, random.Random(seed)).options for seed in range(30)}
    assert all(order[3] == "All of the above" for order in orders)
    assert len(orders) > 1
    assert {shuffled(quiz, random.Random(seed)).answer for seed in range(30)} == {"D"}


def test_options_that_name_letters_are_left_as_written() -> None:
    """An option like "Both A and C" would be wrong after a shuffle, so the question keeps its order."""
    quiz = QuizQuestion("Which are gases?", ("Neon", "Iron", "Argon", "Both A and C"), "D")
    assert shuffled(quiz, random.Random(1)) == quiz


async def test_the_right_letter_is_spread_evenly_over_many_quizzes(chat: ChatService, backend: ScriptedBackend) -> None:
    """A model that always answers C (the example's letter): over 200 quizzes each letter is right about as often."""
    backend.script = lambda prompt: f"{PLUTO}\nAnswer: C, Pluto"
    rng = random.Random(2024)
    letters: Counter[str] = Counter()
    for _ in range(200):
        quiz = await write_question(chat, ALICE, "space", rng=rng)
        assert quiz.option(quiz.answer) == "Pluto"
        letters[quiz.answer] += 1
    assert set(letters) == set(LETTERS)
    assert all(30 <= count <= 70 for count in letters.values()), letters  # 50 expected; 3 standard deviations
