"""One turn of a scene: its prompt built in the conversation's turn, then the characters' lines streamed on screen."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import discord

from bot.core.chat import ChatOptions, ChatService, Reply
from bot.core.messages import ChatMessage, Dialogue
from bot.core.sanitize import label_key
from bot.core.scenes import Scene
from bot.core.script import NARRATOR, Say, ScriptEvent, ScriptParser, parse_script, script_text
from bot.core.turn_order import addressed_in, cast_mode, next_speaker, talkativeness
from bot.errors import BotError, PromptError
from bot.frontends.discord.features.scenes.cards import card_dialogue
from bot.frontends.discord.features.scenes.cast import Avatars, human_name, scene_character
from bot.frontends.discord.ui.feedback import NO_MENTIONS, refusal
from bot.frontends.discord.ui.rendering import STOPPED_MARK
from bot.frontends.discord.ui.replying import Replies
from bot.frontends.discord.ui.spoken import Speaker, SpokenLine
from bot.frontends.discord.ui.views import scene_view
from bot.frontends.discord.ui.voices import CharacterVoice
from bot.store import Role, SceneMember, Store, StoredCharacter, StoredMessage

_log = logging.getLogger(__name__)

HEADER = "🎭"
"""The bot's message that heads each turn and carries its buttons."""


@dataclass
class Stage:
    """What every turn of every scene plays on, shared with the scene commands."""

    chat: ChatService
    replies: Replies
    voice: CharacterVoice
    avatars: Avatars = field(default_factory=Avatars)
    turns: dict[int, Turn] = field(default_factory=dict)
    """The turn streaming in each scene thread (for Stop)."""

    @property
    def store(self) -> Store:
        return self.chat.store


class Turn:
    """One answer of a scene's characters: its prompt, built in the conversation's turn, then its lines on screen."""

    def __init__(
        self,
        stage: Stage,
        thread: discord.Thread,
        nudge: str | None,
        *,
        owner: int,
        header: discord.Message | None = None,
        addressing: tuple[str, str | None] = ("", None),
    ) -> None:
        self.stage = stage
        self.thread = thread
        self.nudge = nudge
        self.owner = owner
        """Who started the turn (may press Stop)."""
        self.header: discord.Message | discord.PartialMessage | None = header
        """The bot's 🎭 message heading the turn (given for Regenerate: the turn is played again under it)."""
        self.opened = False
        self.stopped = False
        self._consumer: asyncio.Task[None] | None = None
        self.scene: Scene | None = None
        self.addressing = addressing
        """The person's text (characters it names answer) and the name of the character line it replies to."""
        self.max_lines: int | None = None
        self.cast: dict[str, tuple[StoredCharacter, SceneMember]] = {}
        """The scene's characters by their labels (what the model writes before a line)."""
        self.lines: dict[int, SpokenLine] = {}

    async def dialogue(self, history: Sequence[StoredMessage], options: ChatOptions) -> Dialogue:
        """The scene's sheet and lines; a person who speaks for the first time joins the scene here."""
        store = self.stage.store
        stored = await store.scenes.get(self.thread.id)
        if stored is None or not stored.active:
            raise PromptError("This scene has ended; start a new one with /scene start.")
        humans = {h.user_id: h.name for h in stored.humans}  # in the order they joined: labels stay stable
        for message in history:
            if message.role == Role.USER and message.author_id is not None and message.author_id not in humans:
                name = human_name(message.author_name or "")
                await store.scenes.add_human(self.thread.id, message.author_id, name)
                humans[message.author_id] = name
        members = []
        for member in stored.cast:
            character = await store.characters.get_by_id(member.character_id)
            if character is not None:
                members.append((character, member))
        if not members:
            raise PromptError("This scene has no characters left; bring one in with /scene add.")
        self.scene = scene = Scene(
            tuple(scene_character(c) for c, _ in members), tuple(humans.values()), stored.setting, stored.rules
        )
        self.cast = dict(zip(scene.character_labels, members, strict=True))
        people = dict(zip(humans, scene.human_labels, strict=True))
        turns = [
            ChatMessage("user", m.content, people.get(m.author_id or 0, human_name(m.author_name or "")))
            if m.role == Role.USER
            else ChatMessage("assistant", m.content)
            for m in history
        ]
        self._choose_speaker(stored.mode, history)
        if self.nudge is not None:
            # The prompt ends "ASSISTANT: Yoda:" (after the last script, if the model spoke last): Yoda speaks next.
            self.nudge = self._label_of(self.nudge)
            turns.append(ChatMessage("assistant", f"{self.nudge}:"))
        built = card_dialogue(self.stage.chat, scene, [c for c, _ in self.cast.values()], turns, options)
        return dataclasses.replace(built, continue_last=self.nudge is not None)

    def _choose_speaker(self, mode: str | None, history: Sequence[StoredMessage]) -> None:
        """Who opens the turn (:mod:`bot.core.turn_order`): a nudge, an addressed character, or the scene's mode."""
        assert self.scene is not None
        settings = self.stage.chat.engine.config.scenes
        chosen = cast_mode(mode or settings.mode)
        self.max_lines = settings.max_lines_per_turn or None
        if self.nudge is not None:
            return
        text, replied = self.addressing
        names = {character.name: label for label, (character, _) in self.cast.items()} | {
            label: label for label in self.cast
        }
        addressed = [label for label in (names.get(replied or ""),) if label] + addressed_in(text, names)
        labels = self.scene.character_labels
        heard = [who for m in history if m.role == Role.ASSISTANT for who, _ in parse_script(m.content, labels)]
        chances = {label: talkativeness(c.extra.get("extensions")) for label, (c, _) in self.cast.items()}
        self.nudge = next_speaker(chosen, labels, addressed=addressed, heard=heard, chances=chances)
        if chosen != "model":
            self.max_lines = max(1, len(addressed))  # one character answers, or each one addressed

    def _label_of(self, name: str) -> str:
        """The label of the cast member called ``name`` (its label or its character's name, in any case).

        One who left the scene since (a regenerated turn's speaker) gives way to the first of the cast.
        """
        wanted = label_key(name)
        for label, (character, _) in self.cast.items():
            if wanted in (label_key(label), label_key(character.name)):
                return label
        return next(iter(self.cast))

    async def perform(self, reply: Reply) -> None:
        """Stream the script: one character message per block; a line for a person ends the turn."""
        assert self.scene is not None
        settings = self.stage.chat.engine.config.scenes
        parser = ScriptParser.from_scene(self.scene, max_lines=self.max_lines)
        self.speakers = {
            label: await self.stage.avatars.speaker(self.thread, character, member)
            for label, (character, member) in self.cast.items()
        }
        self.speakers[NARRATOR] = Speaker(settings.narrator_name)
        earlier = [i for i in reply.shown_in if self.header is None or i != self.header.id]
        await self._open(reply)
        if earlier:  # Regenerate: the turn's old lines go (the bot's own deletion: the history keeps the turn)
            for message_id in earlier:
                self.stage.replies.deleting(message_id)
            await self.stage.voice.remove(self.thread, earlier)
        complete = False
        try:
            if self.nudge is not None:
                await self._show(parser.feed(f"{self.nudge}:"))
            self._consumer = asyncio.create_task(self._consume(reply, parser))
            try:
                await self._consumer
            except asyncio.CancelledError:
                # Stop cancelled the reading only; a shutdown cancels this task itself and must go on.
                current = asyncio.current_task()
                if not self.stopped or (current is not None and current.cancelling()):
                    raise
            if not self.stopped:
                await self._show(parser.close())
                complete = True
        finally:
            for index, line in self.lines.items():
                try:
                    await line.finish(parser.lines[index][1])
                except BotError:
                    _log.warning("A character's line could not be shown in full", exc_info=True)
            header = [self.header.id] if self.header is not None else []
            reply.shown_in = header + [i for line in self.lines.values() for i in line.message_ids]
            reply.settle(script_text(parser.lines), complete=complete and parser.stopped)

    async def _consume(self, reply: Reply, parser: ScriptParser) -> None:
        async with contextlib.aclosing(reply.deltas()) as deltas:
            async for delta in deltas:
                await self._show(parser.feed(delta))
                if parser.stopped:
                    break  # closing the stream cancels the generation

    def stop(self) -> None:
        """Stop the generation (the Stop button): the lines shown so far stay and are stored."""
        self.stopped = True
        if self._consumer is not None:
            self._consumer.cancel()

    async def _open(self, reply: Reply) -> None:
        """Head the turn with its 🎭 message offering Stop (for Regenerate: the same header, edited)."""
        self.opened = True
        self.stage.turns[self.thread.id] = self
        view = scene_view(self.thread.id, streaming=True)
        throttle = self.stage.replies.throttles(self.thread.id)
        if self.header is not None:
            with contextlib.suppress(discord.HTTPException):
                async with throttle:
                    await self.header.edit(content=HEADER, view=view)
            return
        earlier = await self.stage.chat.earlier_reply(reply)
        if earlier:  # only the latest turn keeps its buttons (a turn from before headers: the edit is refused)
            with contextlib.suppress(discord.HTTPException):
                async with throttle:
                    await self.thread.get_partial_message(earlier[0]).edit(view=None)
        try:
            async with throttle:
                self.header = await self.thread.send(HEADER, view=view, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as error:
            raise refusal(error, "write in this thread") from error

    async def close(self) -> None:
        """Once the turn is stored (or failed): its header offers Regenerate, marked if the turn was stopped."""
        if self.stage.turns.get(self.thread.id) is self:
            del self.stage.turns[self.thread.id]
        if not self.opened or self.header is None:
            return
        content = f"{HEADER} {STOPPED_MARK}" if self.stopped else HEADER
        with contextlib.suppress(discord.HTTPException):
            async with self.stage.replies.throttles(self.thread.id):
                await self.header.edit(content=content, view=scene_view(self.thread.id, streaming=False))

    async def _show(self, events: Sequence[ScriptEvent]) -> None:
        for event in events:
            if not isinstance(event, Say):
                continue  # Stop: the parser reports nothing after it
            line = self.lines.get(event.line_index)
            if line is None:
                self.lines[event.line_index] = await self.stage.voice.start(
                    self.thread, self.speakers[event.character], event.text
                )
            else:
                line.update(event.text)
