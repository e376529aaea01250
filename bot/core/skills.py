"""What the model was trained to do beyond chat: code, jokes, riddles (model card, DESIGN.md section 3).

Prompt builders give the exact user-turn text the card shows (``Tell me a joke about bananas.``,
a coding task with `` PLAINFORMAT`` appended after one space); the chat service wraps it in the
model's layout. Parsers read what the model wrote back: a riddle with its ``Answer:`` line, a
yes/no verdict. :func:`make_riddle` and :func:`judge_guess` run the model through
:meth:`ChatService.generate` and read the whole reply (nothing is streamed or stored: their
output has to be parsed before anyone sees it).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import string
import unicodedata
from dataclasses import dataclass

from bot.core.chat import ChatService
from bot.core.chat_prompts import Author, ChatOptions
from bot.core.messages import ChatMessage
from bot.errors import BotError

_log = logging.getLogger(__name__)

PLAINFORMAT = "PLAINFORMAT"
"""The card's marker for bare code: appended to a coding prompt after a single space."""


# -- code ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Language:
    """A programming language /code offers: its name in prompts, file extension and code-fence tag."""

    label: str
    extension: str
    fence: str

    @property
    def filename(self) -> str:
        """The name of the file a long answer is attached as (``answer.py``)."""
        return f"answer.{self.extension}"


LANGUAGES: dict[str, Language] = {
    "python": Language("Python", "py", "python"),
    "javascript": Language("JavaScript", "js", "javascript"),
    "typescript": Language("TypeScript", "ts", "typescript"),
    "c": Language("C", "c", "c"),
    "cpp": Language("C++", "cpp", "cpp"),
    "csharp": Language("C#", "cs", "csharp"),
    "java": Language("Java", "java", "java"),
    "kotlin": Language("Kotlin", "kt", "kotlin"),
    "go": Language("Go", "go", "go"),
    "rust": Language("Rust", "rs", "rust"),
    "swift": Language("Swift", "swift", "swift"),
    "ruby": Language("Ruby", "rb", "ruby"),
    "php": Language("PHP", "php", "php"),
    "perl": Language("Perl", "pl", "perl"),
    "lua": Language("Lua", "lua", "lua"),
    "r": Language("R", "r", "r"),
    "haskell": Language("Haskell", "hs", "haskell"),
    "scala": Language("Scala", "scala", "scala"),
    "bash": Language("Bash", "sh", "bash"),
    "powershell": Language("PowerShell", "ps1", "powershell"),
    "sql": Language("SQL", "sql", "sql"),
    "html": Language("HTML", "html", "html"),
    "css": Language("CSS", "css", "css"),
}
"""Every language /code offers, by its choice value (Discord allows at most 25 choices)."""


def code_prompt(task: str, language: Language, *, plain: bool = False) -> str:
    """The coding instruction: ``Create a solution in {Language} for the following task: {task}``.

    With ``plain``, the card's `` PLAINFORMAT`` (one space, then the marker) asks for bare code.
    """
    prompt = f"Create a solution in {language.label} for the following task: {task.strip()}"
    return f"{prompt} {PLAINFORMAT}" if plain else prompt


_FENCE_LINE = re.compile(r"^\s*```", re.MULTILINE)
_FENCED_BLOCK = re.compile(r"^\s*```[^\n]*\n(.*?)(?:^\s*```\s*$|\Z)", re.MULTILINE | re.DOTALL)


def has_fence(text: str) -> bool:
    """Whether the model wrote its own code fence (then its reply is shown as written)."""
    return _FENCE_LINE.search(text) is not None


def as_code_block(text: str, language: Language) -> str:
    """``text`` in a code block tagged with the language, unless the reply already has a fence."""
    text = text.strip("\n")
    return text if has_fence(text) else f"```{language.fence}\n{text}\n```"


def code_of(text: str) -> str:
    """The code in a reply, for a file: the fenced blocks' contents (joined), or the whole reply if it has none."""
    blocks = [block.strip("\n") for block in _FENCED_BLOCK.findall(text)] if has_fence(text) else []
    code = "\n\n".join(block for block in blocks if block.strip())
    return (code or text.strip("\n")) + "\n"


# -- jokes ---------------------------------------------------------------------------------------


def joke_prompt(topic: str | None = None) -> str:
    """``Tell me a joke about {topic}.`` as in the card; without a topic, ``Tell me a joke.``"""
    topic = _topic(topic)
    return f"Tell me a joke about {topic}." if topic else "Tell me a joke."


def _topic(topic: str | None) -> str:
    """A topic as it goes inside a sentence: one line, no end punctuation of its own."""
    return " ".join((topic or "").split()).rstrip(".!?")


# -- riddles -------------------------------------------------------------------------------------


class RiddleFormatError(BotError):
    """The model's reply is not a riddle followed by its answer."""


@dataclass(frozen=True, slots=True)
class Riddle:
    """A riddle and its answer, as parsed from the model's reply."""

    question: str
    answer: str


def riddle_prompt(topic: str | None = None) -> str:
    """Ask for a riddle, then its answer on a last line of its own that starts with ``Answer:``."""
    topic = _topic(topic)
    ask = f"Tell me a riddle about {topic}." if topic else "Tell me a riddle."
    return f'{ask} Write the riddle, then its answer on a last line of its own that starts with "Answer:".'


_ANSWER_LINE = re.compile(r"^[\s*_>]*(?:answer|a)[\s*_]*(?::|-|–|—)[\s*_]*(?P<answer>.+)$", re.IGNORECASE)
_ANSWER_INLINE = re.compile(r"^(?P<question>.+?)\s*[(\[]?[\s*_]*answer[\s*_]*(?::|-|–|—)\s*(?P<answer>.+)$", re.I)
_ANSWER_LABEL = re.compile(r"^[\s*_>]*(?:answer|a)[\s*_]*(?::|-|–|—)[\s*_]*$", re.IGNORECASE)
_QUESTION_LABEL = re.compile(r"^[\s*_]*(?:riddle|question|q)[\s*_]*(?::|-|–|—)[\s*_]*", re.IGNORECASE)


def parse_riddle(text: str) -> Riddle:
    """Read a riddle whose answer is on the last line: ``Answer: ...``, ``answer - ...`` or ``A: ...``.

    A ``Riddle:``/``Q:`` label on the question is dropped; so are markdown emphasis and end
    punctuation around the answer. Raises :class:`RiddleFormatError` when there is no such line
    or nothing before it.
    """
    lines = [line.rstrip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise RiddleFormatError("The model wrote nothing.")
    last = lines[-1]
    match = _ANSWER_LINE.match(last)
    if match is not None:
        question_lines, answer = lines[:-1], match["answer"]
    elif len(lines) > 2 and _ANSWER_LABEL.match(lines[-2]):  # "Answer:" alone, the answer on the line after
        question_lines, answer = lines[:-2], last
    else:
        inline = _ANSWER_INLINE.match(last)  # "What has a neck but no head? Answer: a bottle."
        if inline is None:
            raise RiddleFormatError("The model's reply has no answer line.")
        question_lines, answer = [*lines[:-1], inline["question"]], inline["answer"]
    question = "\n".join(question_lines).strip()
    question = _QUESTION_LABEL.sub("", question, count=1).strip()
    answer = answer.strip().strip("*_").strip().rstrip(")]").strip().strip("\"'“”").strip().rstrip(".").strip()
    if not question or not answer:
        raise RiddleFormatError("The model's reply has no riddle before its answer.")
    return Riddle(question, answer)


RIDDLE_TOKENS = 256
"""Room for a riddle and its answer line (a riddle is short; a rambling reply is cut and retried)."""


async def make_riddle(chat: ChatService, author: Author, topic: str | None, options: ChatOptions) -> Riddle:
    """Ask the model for a riddle and parse it; an unreadable reply is asked again once.

    Raises :class:`RiddleFormatError` (with a message for the user) when both replies are unreadable.
    """
    options = dataclasses.replace(options, max_new_tokens=min(options.max_new_tokens or RIDDLE_TOKENS, RIDDLE_TOKENS))
    prompt = riddle_prompt(topic)
    for attempt in (1, 2):
        text = await _whole_reply(chat, author, prompt, options)
        try:
            return parse_riddle(text)
        except RiddleFormatError as error:
            _log.info("Riddle reply %d could not be read (%s): %r", attempt, error, text[:200])
    raise RiddleFormatError("The model did not write a riddle with an answer I could read (twice). Please try again.")


# -- judging guesses -----------------------------------------------------------------------------

_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation + "“”‘’«»…–—¿¡"})


def normalize_answer(text: str) -> str:
    """An answer reduced for comparison: case, punctuation, the articles a/an/the and spacing don't count."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION)
    return " ".join(word for word in text.split() if word not in _ARTICLES)


def answers_match(guess: str, answer: str) -> bool:
    """Whether ``guess`` is ``answer`` once both are normalized (and the guess is not empty)."""
    normalized = normalize_answer(guess)
    return bool(normalized) and normalized == normalize_answer(answer)


def judge_prompt(riddle: Riddle, guess: str) -> str:
    """The yes/no question that asks the model whether a guess answers a riddle."""
    return (
        f"Riddle: {riddle.question}\n"
        f"Correct answer: {riddle.answer}\n"
        f"Proposed answer: {' '.join(guess.split())}\n"
        "Is the proposed answer correct? Answer yes or no."
    )


_VERDICT = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """The model's yes/no: its first ``yes`` or ``no`` word; None when it says neither."""
    match = _VERDICT.search(text)
    return None if match is None else match[1].lower() == "yes"


JUDGE_TOKENS = 16
"""A verdict is a word; the rest of a chatty reply is not read."""


async def judge_guess(chat: ChatService, author: Author, riddle: Riddle, guess: str, options: ChatOptions) -> bool:
    """Whether ``guess`` solves ``riddle``: a normalized match, else the model's yes/no (neither counts as no)."""
    if answers_match(guess, riddle.answer):
        return True
    if not normalize_answer(guess):
        return False
    # Greedy and short: the same guess gets the same verdict, and a verdict is one word.
    options = dataclasses.replace(options, temperature=0.0, max_new_tokens=JUDGE_TOKENS)
    text = await _whole_reply(chat, author, judge_prompt(riddle, guess), options)
    verdict = parse_verdict(text)
    if verdict is None:
        _log.info("The model's verdict on a guess could not be read; counted as no: %r", text[:200])
    return bool(verdict)


async def _whole_reply(chat: ChatService, author: Author, prompt: str, options: ChatOptions) -> str:
    """The model's whole answer to ``prompt`` (no history, nothing stored)."""
    async with chat.generate(author, [ChatMessage("user", prompt)], options) as reply:
        async for _ in reply.deltas():
            pass
    return reply.text.strip()
