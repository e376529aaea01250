"""``/quiz start`` and ``/quiz scores``: multiple-choice questions written by the model, answered with buttons.

``/quiz start [topic] [seconds]`` asks the model for a question (:mod:`bot.core.quiz`), posts it
with buttons A to D and stores it; each person's first press counts. When the time is up the
message is edited to show the answer and who got it right, and the quiz's answers join the
guild's scoreboard (``/quiz scores``). Quizzes live in the store, the buttons carry the quiz id
in their ``custom_id``: a quiz posted before a restart still takes answers, and one whose time
ran out while the bot was down is revealed when it starts again.

The question is plain text, not an embed: a bot's embeds in a channel need the Embed Links
permission, which the invite does not ask for (the scoreboard is an interaction response,
where embeds need no permission).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.chat import Author
from bot.core.quiz import LETTERS, clean_topic, write_question
from bot.errors import BotError
from bot.frontends.discord.app.access import AccessChecked
from bot.frontends.discord.services import DiscordBot, Services
from bot.frontends.discord.ui.feedback import (
    NO_MENTIONS,
    TO_ANSWER_IN_A_CHANNEL,
    TO_ANSWER_IN_A_THREAD,
    DiscordRefusal,
    refusal,
    report,
    require,
    require_open_thread,
)
from bot.store import Answered, AnswerOutcome, Quiz, QuizAnswer, QuizScore

_log = logging.getLogger(__name__)

MIN_SECONDS = 10
"""The shortest time a quiz may run (a module constant so tests can shorten it instead of waiting)."""
MAX_SECONDS = 300
SCOREBOARD_SIZE = 10
QUESTION_LIMIT = 900
OPTION_LIMIT = 150
WINNERS_SHOWN = 40
"""Mentions listed in a reveal; with the limits above the message stays under Discord's 2000 characters."""


class QuizButton(
    AccessChecked,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"airoboros:quiz:(?P<quiz>\d+):(?P<letter>[A-D])",
):
    """One answer button; the quiz id and the letter live in ``custom_id``, so it works after a restart."""

    def __init__(
        self,
        quiz_id: int,
        letter: str,
        *,
        style: discord.ButtonStyle = discord.ButtonStyle.primary,
        disabled: bool = False,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=letter, style=style, custom_id=f"airoboros:quiz:{quiz_id}:{letter}", disabled=disabled
            )
        )
        self.quiz_id = quiz_id
        self.letter = letter

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> QuizButton:
        return cls(int(match["quiz"]), match["letter"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        interaction.client.dispatch("quiz_button", interaction, self.quiz_id, self.letter)


def quiz_view(quiz_id: int, *, answer: str | None = None) -> discord.ui.View:
    """Buttons A to D; once ``answer`` is known they are all disabled and the right one is green."""
    view = discord.ui.View(timeout=None)
    for letter in LETTERS:
        if answer is None:
            view.add_item(QuizButton(quiz_id, letter))
        else:
            style = discord.ButtonStyle.success if letter == answer else discord.ButtonStyle.secondary
            view.add_item(QuizButton(quiz_id, letter, style=style, disabled=True))
    return view


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _header(quiz: Quiz) -> str:
    topic = f" on *{_cut(quiz.topic, 100)}*" if quiz.topic else ""
    return f"🧠 **Quiz**{topic}, asked by <@{quiz.author_id}>"


def question_text(quiz: Quiz) -> str:
    """The message that asks the question."""
    lines = [_header(quiz), _cut(quiz.question, QUESTION_LIMIT)]
    lines += [f"**{letter})** {_cut(quiz.option(letter), OPTION_LIMIT)}" for letter in LETTERS]
    lines.append(f"Answer with a button; one answer each. The answer is revealed <t:{int(quiz.ends_at)}:R>.")
    return "\n".join(lines)


def reveal_text(quiz: Quiz, answers: list[QuizAnswer]) -> str:
    """The message once time is up: the right option marked, and who got it right."""
    lines = [_header(quiz), _cut(quiz.question, QUESTION_LIMIT)]
    for letter in LETTERS:
        option = f"{letter}) {_cut(quiz.option(letter), OPTION_LIMIT)}"
        lines.append(f"✅ **{option}**" if letter == quiz.answer else f"▫️ {option}")
    winners = [a.user_id for a in answers if a.letter == quiz.answer]
    count = f"{len(answers)} answer{'s' if len(answers) != 1 else ''}"
    if not answers:
        lines.append(f"Time is up: the answer was **{quiz.answer}**. Nobody answered.")
    elif not winners:
        lines.append(f"Time is up: the answer was **{quiz.answer}**. Nobody got it right ({count}).")
    else:
        names = ", ".join(f"<@{user}>" for user in winners[:WINNERS_SHOWN])
        if len(winners) > WINNERS_SHOWN:
            names += f" and {len(winners) - WINNERS_SHOWN} more"
        lines.append(f"Time is up: the answer was **{quiz.answer}**. Right ({len(winners)} of {count}): {names}")
    return "\n".join(lines)


def scoreboard_embed(scores: list[QuizScore], guild_name: str) -> discord.Embed:
    """The top of a guild's scoreboard."""
    embed = discord.Embed(title=f"Quiz scores: {_cut(guild_name, 200)}", colour=discord.Colour.blurple())
    if not scores:
        embed.description = "No quiz has been answered here yet. Start one with /quiz start."
        return embed
    medals = {1: "🥇", 2: "🥈", 3: "🥉"}
    embed.description = "\n".join(
        f"{medals.get(rank, f'{rank}.')} <@{score.user_id}>: **{score.correct}** right of {score.answered}"
        for rank, score in enumerate(scores, start=1)
    )
    return embed


def answered_text(result: Answered) -> str:
    """What a press says to the person who pressed; refusals raise :class:`DiscordRefusal`."""
    quiz = result.quiz
    if quiz is None or result.outcome is AnswerOutcome.UNKNOWN:
        raise DiscordRefusal("This quiz no longer exists.")
    if result.outcome is AnswerOutcome.REVEALED:
        raise DiscordRefusal(f"This quiz is over: the answer was {quiz.answer}) {_cut(quiz.option(quiz.answer), 200)}.")
    if result.outcome is AnswerOutcome.LATE:
        raise DiscordRefusal("Time is up for this quiz: the answer is about to be revealed.")
    if result.outcome is AnswerOutcome.ALREADY:
        raise DiscordRefusal(f"You already answered {result.letter}.")
    return f"You answered **{result.letter}**. The answer is revealed <t:{int(quiz.ends_at)}:R>."


@app_commands.guild_only()
class QuizCog(commands.GroupCog, group_name="quiz", group_description="Multiple-choice questions from the model"):
    """Quizzes: the model asks, everyone answers with buttons, the answer is revealed when time is up."""

    def __init__(self, bot: DiscordBot, services: Services) -> None:
        self.bot = bot
        self.chat = services.chat
        self.quizzes = self.chat.store.quizzes
        self.default_seconds = self.chat.engine.config.skills.quiz_seconds
        self._timers: dict[int, asyncio.Task[None]] = {}
        """The reveal waiting for each quiz in play."""
        self._resuming: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        """Reveal the quizzes whose time ran out while the bot was down; schedule the others."""
        self._resuming = asyncio.create_task(self._resume())

    async def cog_unload(self) -> None:
        """Stop waiting: quizzes still running are revealed at the next start."""
        tasks = [*self._timers.values(), *([self._resuming] if self._resuming else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resume(self) -> None:
        try:
            pending = await self.quizzes.pending()
        except BotError:
            _log.exception("Could not load the quizzes still in play")
            return
        if pending:
            _log.info("%d quiz(zes) still in play: revealing or scheduling them", len(pending))
        for quiz in pending:
            self._schedule(quiz)

    def _schedule(self, quiz: Quiz) -> None:
        if quiz.id in self._timers:
            return
        task = asyncio.create_task(self._reveal_when_due(quiz))
        self._timers[quiz.id] = task
        task.add_done_callback(lambda _: self._timers.pop(quiz.id, None))

    async def _reveal_when_due(self, quiz: Quiz) -> None:
        await asyncio.sleep(max(0.0, quiz.ends_at - time.time()))
        try:
            await self.reveal(quiz.id)
        except Exception:
            _log.exception("Could not reveal quiz %d", quiz.id)

    async def reveal(self, quiz_id: int) -> None:
        """Show the answer and who got it right on the quiz's message, then count it on the scoreboard.

        The message is edited before the quiz is marked revealed: a bot stopped in between edits it again
        at the next start rather than leaving a question that never shows its answer.
        """
        quiz = await self.quizzes.get(quiz_id)
        if quiz is None or quiz.revealed_at is not None:
            return
        answers = await self.quizzes.answers(quiz_id)
        if quiz.message_id is not None:
            channel = self.bot.get_partial_messageable(quiz.channel_id, guild_id=quiz.guild_id)
            try:
                await channel.get_partial_message(quiz.message_id).edit(
                    content=reveal_text(quiz, answers),
                    view=quiz_view(quiz.id, answer=quiz.answer),
                    allowed_mentions=NO_MENTIONS,
                )
            except discord.HTTPException as error:  # a deleted message or channel: the scores still count
                _log.warning("Could not show the answer of quiz %d: %s", quiz_id, error)
        await self.quizzes.mark_revealed(quiz_id)

    # -- commands --------------------------------------------------------------------------------

    @app_commands.command(name="start")
    @app_commands.describe(
        topic="What the question is about (default: general knowledge)",
        seconds=f"How long everyone has to answer, {MIN_SECONDS} to {MAX_SECONDS} seconds",
    )
    async def start_command(
        self,
        interaction: discord.Interaction[Any],
        topic: app_commands.Range[str, 1, 200] | None = None,
        seconds: int | None = None,
    ) -> None:
        """Ask the model for a multiple-choice question; everyone answers with the buttons."""
        limit = self.default_seconds if seconds is None else seconds
        if not MIN_SECONDS <= limit <= MAX_SECONDS:
            raise DiscordRefusal(f"The time must be {MIN_SECONDS} to {MAX_SECONDS} seconds; you asked for {limit}.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel = interaction.channel
        permissions = interaction.app_permissions
        require(permissions, TO_ANSWER_IN_A_THREAD if isinstance(channel, discord.Thread) else TO_ANSWER_IN_A_CHANNEL)
        require_open_thread(channel, permissions)
        if not isinstance(channel, discord.abc.Messageable) or interaction.channel_id is None:
            raise DiscordRefusal("Use /quiz start in a text channel or a thread.")
        author = Author(interaction.user.id, interaction.user.display_name)
        options = await self.chat.options_for(interaction.guild_id, interaction.channel_id)
        question = await write_question(self.chat, author, topic, options)
        quiz = await self.quizzes.create(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            author_id=author.id,
            topic=clean_topic(topic) if topic else None,
            question=question.question,
            options=question.options,
            answer=question.answer,
            seconds=limit,
        )
        try:
            message = await channel.send(question_text(quiz), view=quiz_view(quiz.id), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            await self.quizzes.delete(quiz.id)
            raise refusal(error, "post the quiz") from error
        await self.quizzes.set_message(quiz.id, message.id)
        self._schedule(replace(quiz, message_id=message.id))
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()  # the question in the channel says it all

    @app_commands.command(name="scores")
    async def scores_command(self, interaction: discord.Interaction[Any]) -> None:
        """Show this server's quiz scoreboard (the top 10)."""
        await interaction.response.defer(thinking=True)
        assert interaction.guild_id is not None  # the group is guild-only
        scores = await self.quizzes.scoreboard(interaction.guild_id, limit=SCOREBOARD_SIZE)
        name = interaction.guild.name if interaction.guild is not None else "this server"
        await interaction.edit_original_response(embed=scoreboard_embed(scores, name))

    # -- buttons ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_quiz_button(self, interaction: discord.Interaction[Any], quiz_id: int, letter: str) -> None:
        """Record a press of A to D (sent by the buttons as an event); only a person's first answer counts."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            result = await self.quizzes.answer(quiz_id, interaction.user.id, letter)
            await interaction.edit_original_response(content=answered_text(result))
        except BotError as error:
            await report(interaction, error)


async def setup(bot: DiscordBot, services: Services) -> None:
    """``/quiz`` and its answer buttons."""
    bot.add_dynamic_items(QuizButton)
    await bot.add_cog(QuizCog(bot, services))
