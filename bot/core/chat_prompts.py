"""What a chat request asks the model: the settings of its place, the history its prompt shows, the prompt itself.

:class:`ChatPrompts` is the half of :class:`~bot.core.chat.ChatService` that turns options and stored history into
sampling parameters and a prompt within the model's token budget; the service orders and stores the turns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bot.config import GenerationConfig
from bot.core.engine import Engine, Variant
from bot.core.messages import ChatMessage, Dialogue
from bot.core.sanitize import is_blank
from bot.core.settings import ChannelSettings, Place
from bot.errors import PromptError, PromptTooLongError
from bot.inference.telemetry import Outcome
from bot.inference.types import Prompt, SamplingParams
from bot.store import Role, Store, StoredMessage

DialogueBuilder = Callable[[Sequence[StoredMessage], "ChatOptions"], Awaitable[Dialogue]]
"""Builds the dialogue of a conversation whose prompt is not the plain history (a scene: its sheet first), from the
history :meth:`~bot.core.chat.ChatService.respond` loaded; called in the conversation's turn, so what it reads is
current."""
ParentLookup = Callable[[int], Awaitable[int | None]]
"""The channel a channel sits in (a thread's parent), or None; the frontend that knows provides it."""


async def no_parent(channel_id: int) -> int | None:
    """The default :data:`ParentLookup`: every channel stands alone."""
    return None


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a message: a stable id and the display name the model sees."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """Per-request settings; ``None`` fields fall back to ``[generation]``."""

    variant: str | None = None
    history: bool | None = None
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    seed: int | None = None


class ChatPrompts:
    """Sampling parameters and prompts for requests in a place, from its settings and a conversation's history."""

    def __init__(self, store: Store, engine: Engine, generation: GenerationConfig, *, history_limit: int = 200) -> None:
        self.store = store
        self.engine = engine
        self.generation = generation
        self.history_limit = history_limit
        self.parent_of: ParentLookup = no_parent
        """Where a channel sits, so a thread inherits its parent channel's settings (see :meth:`options_for`)."""

    def params(self, options: ChatOptions) -> SamplingParams:
        """Sampling parameters for ``options`` over the configured defaults."""
        g = self.generation
        return SamplingParams(
            max_new_tokens=options.max_new_tokens or g.max_new_tokens,
            temperature=g.temperature if options.temperature is None else options.temperature,
            top_p=g.top_p if options.top_p is None else options.top_p,
            repetition_penalty=g.repetition_penalty,
            seed=g.seed if options.seed is None else options.seed,
        )

    async def options_for(self, guild_id: int | None, channel_id: int | None) -> ChatOptions:
        """The settings that apply in a channel: its own, else (in a thread) its parent channel's, else its guild's,
        else the config's ``[generation]`` defaults (``None`` fields).

        Every command that generates calls this with the place it runs in and passes the options on.
        """
        parent = await self.parent_of(channel_id) if guild_id is not None and channel_id is not None else None
        place = Place(guild_id, channel_id, parent)
        found = (await ChannelSettings(self.store, self.engine, self.generation).effective(place)).overrides
        return ChatOptions(
            variant=found.variant,
            history=found.history,
            system=found.system_prompt,
            temperature=found.temperature,
            top_p=found.top_p,
            max_new_tokens=found.max_new_tokens,
        )

    @contextmanager
    def _reported(self, variant: Variant, author: Author, key: str | None) -> Iterator[None]:
        """Report a prompt that cannot fit as a ``too_long`` request (the scheduler reports every other end)."""
        try:
            yield
        except PromptTooLongError:
            variant.scheduler.log.refused(str(author.id), Outcome.TOO_LONG, conversation=key)
            raise

    async def _history(
        self, conversation_id: int, options: ChatOptions, *, before: int | None = None
    ) -> list[StoredMessage]:
        """The messages the prompt shows: the history (up to ``before``), or with history off only the turn
        being answered (the people's messages since the last reply)."""
        history = await self.store.history(conversation_id, limit=self.history_limit)
        if before is not None:
            history = [m for m in history if m.id < before]
        if self.generation.history if options.history is None else options.history:
            return history
        turn = len(history)
        while turn > 0 and history[turn - 1].role == Role.USER:
            turn -= 1
        return history[turn:]

    def _prompt(
        self,
        variant: Variant,
        history: Sequence[StoredMessage | ChatMessage],
        options: ChatOptions,
        *,
        continue_last: bool = False,
    ) -> Prompt:
        messages = tuple(
            m if isinstance(m, ChatMessage) else ChatMessage(m.role.value, m.content, m.author_name, m.author_id)
            for m in history
        )
        dialogue = Dialogue(options.system, messages, continue_last=continue_last)
        return variant.builder.build(dialogue, max_new_tokens=self.params(options).max_new_tokens)

    async def _built(
        self, variant: Variant, history: Sequence[StoredMessage], options: ChatOptions, dialogue: DialogueBuilder | None
    ) -> Prompt:
        """The prompt of ``history``: the plain conversation, or what ``dialogue`` makes of it."""
        if dialogue is None:
            return self._prompt(variant, history, options)
        built = await dialogue(history, options)
        return variant.builder.build(built, max_new_tokens=self.params(options).max_new_tokens)

    def _alone(self, variant: Variant, author: Author, content: str, options: ChatOptions) -> Prompt:
        """The prompt of ``content`` with no history; refuses an empty message or one that cannot fit at all."""
        if is_blank(content):
            raise PromptError("There is nothing to answer: the message is empty.")
        return self._prompt(variant, [ChatMessage("user", content, author.name, author.id)], options)
