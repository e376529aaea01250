"""The model's trained skills as slash commands: ``/code``, ``/joke``, ``/riddle`` and the riddle's Guess button.

``/code`` and ``/joke`` stream a one-off answer into the command's public response
(:meth:`Replies.show_once`). A code answer is shown in a code block tagged with its language; one
too long for a message is previewed as the tail of the code while it streams and then replaced by
a short note with the whole code attached as a file (``answer.py``), never split over messages.

``/riddle`` is not streamed: the model's reply is parsed first (``QUESTION: ...``, ``ANSWER: ...``
and its reasoning), stored, and posted with the answer and the reasoning behind spoilers and a
persistent Guess button. A guess is judged (a normalized match, else the model's yes/no on the
quoted guess); the first right guess is announced in the
channel and recorded, later guesses are told who solved it. Every interaction is acknowledged
before the store or the model is touched; every refusal goes through
:func:`~bot.frontends.discord.ui.feedback.report`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author, Reply
from bot.core.messages import ChatMessage
from bot.core.skills import (
    LANGUAGES,
    Language,
    Riddle,
    as_code_block,
    code_of,
    code_prompt,
    joke_prompt,
    judge_guess,
    make_riddle,
)
from bot.errors import BotError, GenerationError, PromptError
from bot.frontends.discord.app.access import AccessChecked
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import NO_MENTIONS, DiscordRefusal, report
from bot.frontends.discord.ui.splitting import MESSAGE_LIMIT
from bot.store import StoredRiddle

_log = logging.getLogger(__name__)

PREVIEW_LINES = 30
"""Lines of code a long answer's preview shows while it streams (the latest ones)."""
GUESS_LIMIT = 200


# -- /code's display -----------------------------------------------------------------------------


def attached_note(language: Language) -> str:
    """What a long code answer's message says once the code is attached as a file."""
    return f"📎 The code is too long for one message, so it is attached as `{language.filename}`."


def is_long(text: str, language: Language) -> bool:
    """Whether the answer, shown as a code block, is too long for one Discord message."""
    return len(as_code_block(text, language)) > MESSAGE_LIMIT


def code_display(text: str, language: Language, finished: bool) -> str:
    """What /code's message shows: the code block; for a long answer, its tail while streaming, then the note."""
    if not is_long(text, language):
        return as_code_block(text, language)
    if finished:
        return attached_note(language)
    # Fence lines of the model's own are dropped so the preview stays one well-formed block.
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("```")]
    header = f"✍️ *writing… {len(lines)} lines so far; the whole code will be attached as a file*\n"
    tail = lines[-PREVIEW_LINES:]
    while tail and len(header) + len("\n".join(tail)) + len(language.fence) + 10 > MESSAGE_LIMIT:
        tail = tail[1:]
    body = "\n".join(tail)[-(MESSAGE_LIMIT - len(header) - len(language.fence) - 10) :]
    return f"{header}```{language.fence}\n{body}\n```"


# -- /riddle's message and Guess button ----------------------------------------------------------


def _spoiler(text: str) -> str:
    return "||" + text.replace("|", "\\|") + "||"


def riddle_text(riddle: StoredRiddle) -> str:
    """The riddle's message: the question, the answer (and the model's reasoning) behind spoilers, who solved it."""
    solved = ""
    if riddle.solved:
        solved = f"\n✅ Solved by **{discord.utils.escape_markdown(riddle.solved_by_name or 'someone')}**"
    why = f"\n**Why:** {_spoiler(riddle.explanation)}" if riddle.explanation else ""
    answer = f"\n\n**Answer:** {_spoiler(riddle.answer)}"
    question = f"🧩 **Riddle**\n{riddle.question}"
    room = MESSAGE_LIMIT - len(answer) - len(solved)
    if len(question) + len(why) > room:  # the reasoning gives way first; a spoiler is never cut open
        why = ""
    if len(question) > room:
        question = question[: room - 1] + "…"
    return question + answer + why + solved


def solved_text(name: str, riddle: StoredRiddle) -> str:
    """The channel's announcement of a solved riddle: who, the answer, and the model's reasoning if it gave one."""
    text = f"🎉 **{name}** solved the riddle! The answer was **{discord.utils.escape_markdown(riddle.answer)}**."
    if riddle.explanation:
        text += f"\n{discord.utils.escape_markdown(riddle.explanation)}"
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


class GuessButton(
    AccessChecked, discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"airoboros:riddle:(?P<riddle>\d+)"
):
    """The Guess button under a riddle; the riddle's id is in its ``custom_id``, so it works after a restart."""

    def __init__(self, riddle_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Guess", emoji="💡", style=discord.ButtonStyle.primary, custom_id=f"airoboros:riddle:{riddle_id}"
            )
        )
        self.riddle_id = riddle_id

    def reaches_model(self) -> bool:
        """A guess may be judged by the model: someone at their rate limit is told before typing one."""
        return True

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GuessButton:
        return cls(int(match["riddle"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # The modal is the acknowledgement: nothing is read before it opens.
        await interaction.response.send_modal(GuessModal(self.riddle_id))


class GuessModal(discord.ui.Modal, title="Guess the riddle"):
    """A text box for one guess; the submission is dispatched as the ``riddle_guess`` event."""

    guess: discord.ui.TextInput[GuessModal] = discord.ui.TextInput(
        label="Your answer", placeholder="What is it?", custom_id="guess", min_length=1, max_length=GUESS_LIMIT
    )

    def __init__(self, riddle_id: int) -> None:
        super().__init__(custom_id=f"airoboros:riddle-guess:{riddle_id}", timeout=30 * 60)
        self.riddle_id = riddle_id

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        interaction.client.dispatch("riddle_guess", interaction, self.riddle_id, self.guess.value)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await report(interaction, error)


def riddle_view(riddle_id: int) -> discord.ui.View:
    """The persistent Guess button of riddle ``riddle_id``."""
    view = discord.ui.View(timeout=None)
    view.add_item(GuessButton(riddle_id))
    return view


# -- the cog -------------------------------------------------------------------------------------


class Skills(commands.Cog):
    """Code, jokes and riddles: what the model was trained to do."""

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.replies = services.replies
        self._judging: set[tuple[int, int]] = set()
        """(riddle, person) pairs with a guess being judged: a second guess meanwhile is refused."""

    @app_commands.command(name="code")
    @app_commands.describe(
        task="What the code should do",
        language="The programming language",
        plain="Only the code, without explanations or backticks (the model's PLAINFORMAT)",
    )
    @app_commands.choices(
        language=[app_commands.Choice(name=language.label, value=key) for key, language in LANGUAGES.items()]
    )
    async def code_command(
        self,
        interaction: discord.Interaction[Any],
        task: app_commands.Range[str, 1, 4000],
        language: app_commands.Choice[str],
        plain: bool = False,
    ) -> None:
        """Ask the model to write code; a long answer comes as a file."""
        await interaction.response.defer(thinking=True)
        chosen = LANGUAGES[language.value]
        reply = await self._stream(
            interaction,
            code_prompt(task, chosen, plain=plain),
            returned=task,
            transform=lambda text, finished: code_display(text, chosen, finished),
        )
        if reply is None or not reply.text.strip() or not is_long(reply.text, chosen):
            return
        code = discord.File(io.BytesIO(code_of(reply.text).encode()), chosen.filename)
        try:
            await interaction.edit_original_response(attachments=[code], allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            _log.warning("Could not attach a long code answer", exc_info=True)

    @app_commands.command(name="joke")
    @app_commands.describe(topic="What the joke is about (optional)")
    async def joke_command(
        self, interaction: discord.Interaction[Any], topic: app_commands.Range[str, 1, 200] | None = None
    ) -> None:
        """Ask the model for a joke."""
        await interaction.response.defer(thinking=True)
        await self._stream(interaction, joke_prompt(topic))

    @app_commands.command(name="riddle")
    @app_commands.describe(topic="What the riddle is about (optional)")
    async def riddle_command(
        self, interaction: discord.Interaction[Any], topic: app_commands.Range[str, 1, 200] | None = None
    ) -> None:
        """Ask the model for a riddle; press Guess to answer it."""
        await interaction.response.defer(thinking=True)
        author = self._author(interaction)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        riddle: Riddle = await make_riddle(self.chat, author, topic, options)
        stored = await self.chat.store.riddles.add(
            author_id=author.id,
            question=riddle.question,
            answer=riddle.answer,
            explanation=riddle.explanation,
            topic=topic,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )
        await interaction.edit_original_response(
            content=riddle_text(stored), view=riddle_view(stored.id), allowed_mentions=NO_MENTIONS
        )

    @commands.Cog.listener()
    async def on_riddle_guess(self, interaction: discord.Interaction[Any], riddle_id: int, guess: str) -> None:
        """Judge a guess submitted in the Guess modal (sent by the modal as an event)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        pair = (riddle_id, interaction.user.id)
        if pair in self._judging:
            await report(interaction, DiscordRefusal("Your previous guess is still being judged; wait for it."))
            return
        self._judging.add(pair)
        try:
            await self._judge(interaction, riddle_id, guess)
        except Exception as error:  # a listener's errors reach no handler: this is the one error path
            await report(interaction, error)
        finally:
            self._judging.discard(pair)

    async def _judge(self, interaction: discord.Interaction[Any], riddle_id: int, guess: str) -> None:
        riddles = self.chat.store.riddles
        stored = await riddles.get(riddle_id)
        if stored is None:
            raise DiscordRefusal("This riddle is no longer available.")
        if not stored.solved:
            author = self._author(interaction)
            options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
            riddle = Riddle(stored.question, stored.answer)
            if not await judge_guess(self.chat, author, riddle, guess, options):
                await _private(interaction, "❌ Not quite. Try again!")
                return
            solved = await riddles.solve(riddle_id, author.id, author.name)
            if solved is None:
                raise DiscordRefusal("This riddle is no longer available.")
            stored = solved
            if stored.solved_by == author.id and stored.solved_at is not None:
                await self._announce(interaction, stored)
                return
        name = discord.utils.escape_markdown(stored.solved_by_name or "someone")
        await _private(interaction, f"This riddle was already solved by **{name}**.")

    async def _announce(self, interaction: discord.Interaction[Any], riddle: StoredRiddle) -> None:
        """The winner hears it privately; the channel hears who solved it; the riddle shows it."""
        await _private(interaction, "✅ Correct, you solved it!")
        name = discord.utils.escape_markdown(riddle.solved_by_name or "someone")
        await interaction.followup.send(solved_text(name, riddle), allowed_mentions=NO_MENTIONS)
        if interaction.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await interaction.message.edit(content=riddle_text(riddle), allowed_mentions=NO_MENTIONS)

    async def _stream(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        *,
        returned: str | None = None,
        transform: Callable[[str, bool], str] | None = None,
    ) -> Reply | None:
        """Stream the model's answer to ``prompt`` into the deferred response; None if it was refused.

        A refused prompt (``returned``: the person's own text) comes back as a file, so nothing is lost.
        """
        author = self._author(interaction)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        try:
            async with self.chat.generate(author, [ChatMessage("user", prompt)], options) as reply:
                try:
                    await self.replies.show_once(interaction, reply, transform=transform)
                except GenerationError:
                    _log.info("A one-off answer failed in the model; the user sees why")
        except BotError as error:  # a prompt too long for the model, a full queue
            await report(interaction, error, returned=returned if isinstance(error, PromptError) else None)
            return None
        return reply

    @staticmethod
    def _author(interaction: discord.Interaction[Any]) -> Author:
        return Author(interaction.user.id, interaction.user.display_name)


async def _private(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer a deferred ephemeral interaction with ``text``."""
    await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/code``, ``/joke``, ``/riddle`` and the riddle's guess button."""
    bot.add_dynamic_items(GuessButton)
    await bot.add_cog(Skills(bot, services))
