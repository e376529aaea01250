"""Quiz questions from the model: the request, the parser, and one retry.

The model card shows airoboros' multiple-choice layout: the question, one line per option
``A) ...`` to ``D) ...``, and the answer (``C, Pluto``). The model was trained to *answer*
such questions, so the request shows it the card's own example as an earlier exchange (the
vicuna_v1.1 multi-turn layout it was trained on) and then asks for a new one; the reply is
read whole and parsed. The parser accepts the answer forms the model writes (``C``,
``C, Pluto``, ``Answer: C``, ``C) Pluto``, ``The answer is C``, in any case, with a trailing
period); a reply it cannot read is asked for again once, then refused with a clear error. The
options of a usable question are shuffled, the answer letter following its option: the model
tends to put its answer where the example has it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.core.chat import ChatService
from bot.core.chat_prompts import Author, ChatOptions
from bot.core.messages import ChatMessage
from bot.errors import GenerationError

_log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D")
DEFAULT_TOPIC = "general knowledge"
MAX_NEW_TOKENS = 256
"""A question, four options and an answer fit easily; a smaller reservation leaves the window to the prompt."""
ATTEMPTS = 2
"""The first try and one retry."""

EXAMPLE_TOPIC = "astronomy"
EXAMPLE_QUESTION = (
    "Which of the following astronomical objects is composed primarily of ice and rock, "
    "and is located in the Kuiper Belt?\n"
    "A) Mercury\n"
    "B) Venus\n"
    "C) Pluto\n"
    "D) Jupiter\n"
    "Answer: C, Pluto"
)
"""The model card's multiple-choice example, with its answer on the line after the options."""


class QuizFormatError(GenerationError):
    """The model did not write a question the bot can use (after the retry)."""


class QuizParseError(ValueError):
    """Why a reply is not a usable question (the parser's answer; the retry decides what a user sees)."""


@dataclass(frozen=True, slots=True)
class QuizQuestion:
    """A multiple-choice question: four options, ``answer`` is one of :data:`LETTERS`."""

    question: str
    options: tuple[str, str, str, str]
    answer: str

    def option(self, letter: str) -> str:
        """The text of option ``letter``."""
        return self.options[LETTERS.index(letter)]


def request(topic: str) -> str:
    """The user turn that asks for a question about ``topic``."""
    return f"Write a multiple choice question about {topic}, with four options A) to D) and the answer."


def clean_topic(topic: str | None) -> str:
    """A topic as one line of single spaces; :data:`DEFAULT_TOPIC` when there is none."""
    cleaned = " ".join((topic or "").split())
    return cleaned or DEFAULT_TOPIC


def quiz_messages(topic: str | None) -> list[ChatMessage]:
    """The card's example as an earlier exchange, then the request for ``topic``."""
    return [
        ChatMessage("user", request(EXAMPLE_TOPIC)),
        ChatMessage("assistant", EXAMPLE_QUESTION),
        ChatMessage("user", request(clean_topic(topic))),
    ]


_OPTION = re.compile(r"^\(?([A-Da-d])\s*[).:]\s*(.*)$")
_QUESTION_LABEL = re.compile(r"^(?:question|q)\s*\d*\s*[:.]\s*", re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"^(?:the\s+)?(?:correct\s+)?answer(?:\s+is)?\s*[:\-]?\s*(.*)$", re.IGNORECASE)
_LABELLED_LETTER = re.compile(r"^\(?([A-Da-d])(?:$|[\s).,:;!\-])")
_BARE_LETTER = re.compile(r"^\(?([A-Da-d])(?:$|[).,:;!\-])")
"""Without a label a letter must stand alone or be followed by punctuation: "a dog" is not an answer."""


def parse_question(text: str) -> QuizQuestion:
    """Read a question in the card's layout; :class:`QuizParseError` says what is missing."""
    lines = [line.replace("*", "").strip() for line in text.strip().splitlines()]
    first = next((i for i, line in enumerate(lines) if _OPTION.match(line)), None)
    if first is None:
        raise QuizParseError("no options A) to D)")
    question = "\n".join(line for line in lines[:first] if line)
    question = _QUESTION_LABEL.sub("", question).strip()
    if not question:
        raise QuizParseError("no question before the options")
    options: dict[str, str] = {}
    index = first
    while index < len(lines) and len(options) < len(LETTERS):
        line = lines[index]
        match = _OPTION.match(line)
        if line and match is None:
            break
        index += 1
        if match is None:
            continue  # a blank line between options
        letter = match[1].upper()
        if letter in options:
            raise QuizParseError(f"option {letter} appears twice")
        if not match[2].strip():
            raise QuizParseError(f"option {letter} is empty")
        options[letter] = match[2].strip()
    if len(options) < len(LETTERS):
        raise QuizParseError(f"only {len(options)} options")
    answer = _answer(lines[index:])
    if answer is None:
        raise QuizParseError("no answer letter after the options")
    a, b, c, d = (options[letter] for letter in LETTERS)
    return QuizQuestion(question, (a, b, c, d), answer)


def _answer(lines: Sequence[str]) -> str | None:
    """The first answer letter in ``lines`` (a label alone on its line applies to the next one)."""
    labelled = False
    for line in lines:
        text = line
        if not text:
            continue
        label = _ANSWER_LABEL.match(text)
        if label is not None:
            text, labelled = label[1].strip(), True
            if not text:
                continue
        match = (_LABELLED_LETTER if labelled else _BARE_LETTER).match(text)
        if match is not None:
            return match[1].upper()
        labelled = False
    return None


_REFERS_TO_LETTERS = re.compile(
    r"\b[A-D]\)?\s*(?:,|&|\band\b|\bor\b)\s*\(?[A-D]\b|\b(?:options?|answers?|both|either|neither)\s+\(?[A-D]\b"
)
"""An option that names others by letter ("A and C", "Both B and D"): shuffling would make it wrong."""
_OF_THE_ABOVE = re.compile(r"\bof\s+the\s+above\b", re.IGNORECASE)
""""All of the above", "None of the above": such an option keeps its place (it reads as the last word)."""


def shuffled(question: QuizQuestion, rng: random.Random) -> QuizQuestion:
    """The options in a random order, the answer letter following its option.

    A 7B model copies where the example put its answer (C), so the order it writes says little; shuffling
    spreads the right letter evenly. "All/None of the above" stays where it was, and a question whose options
    name others by letter ("A and C") is left as written.
    """
    if any(_REFERS_TO_LETTERS.search(option) for option in question.options):
        return question
    movable = [i for i, option in enumerate(question.options) if not _OF_THE_ABOVE.search(option)]
    order = list(range(len(LETTERS)))
    targets = movable[:]
    rng.shuffle(targets)
    for source, target in zip(movable, targets, strict=True):
        order[target] = source
    a, b, c, d = (question.options[source] for source in order)
    answer = LETTERS[order.index(LETTERS.index(question.answer))]
    return QuizQuestion(question.question, (a, b, c, d), answer)


async def write_question(
    chat: ChatService,
    author: Author,
    topic: str | None,
    options: ChatOptions | None = None,
    *,
    rng: random.Random | None = None,
) -> QuizQuestion:
    """Ask the model for a question about ``topic``; a reply that cannot be read is asked for once more.

    The options come back shuffled (:func:`shuffled`, with ``rng``; default a fresh unseeded one).
    Raises :class:`QuizFormatError` when neither reply is usable, and whatever
    :meth:`ChatService.generate` raises (busy, the model failed).
    """
    rng = rng or random.Random()
    options = options or ChatOptions()
    limit = options.max_new_tokens or chat.generation.max_new_tokens
    options = replace(options, max_new_tokens=min(limit, MAX_NEW_TOKENS))
    seed = chat.generation.seed if options.seed is None else options.seed
    problem = ""
    for attempt in range(ATTEMPTS):
        # A fixed seed would write the same unusable reply again: the retry samples with the next one.
        tried = options if seed is None else replace(options, seed=seed + attempt)
        async with chat.generate(author, quiz_messages(topic), tried) as reply:
            async for _ in reply.deltas():
                pass
        try:
            question = parse_question(reply.text)
        except QuizParseError as error:
            problem = str(error)
            _log.info("Quiz reply %d was not usable (%s): %r", attempt + 1, problem, reply.text[:500])
        else:
            return shuffled(question, rng)
    raise QuizFormatError(f"The model did not write a usable quiz question ({problem}). Please try again.")
