"""Conversations: history from the store, a prompt within budget, a streamed reply, its status stored.

Frontends call :meth:`ChatService.respond` and never touch SQL or the model. The order
of events is the durability contract (DESIGN.md section 6): the prompt is built and the
request admitted first (a too-long message or a full queue loses nothing and stores
nothing), then the user's message is stored, then the reply streams, then the reply is
stored with its status. A reply that did not finish is never stored as ``ok``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from bot.config import GenerationConfig
from bot.core.engine import Engine, Variant
from bot.core.messages import ChatMessage, Dialogue
from bot.errors import BotError, GenerationError, PromptError
from bot.inference.scheduler import Ticket
from bot.inference.types import FinishReason, SamplingParams
from bot.store import MessageStatus, Role, Store, StoredMessage

_log = logging.getLogger(__name__)

Mode = Literal["new", "regenerate", "continue"]
KeyFactory = Callable[[], Awaitable[str]]
"""Opens a new conversation (a Discord thread, say) once the request is admitted, and returns its key."""


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
    max_new_tokens: int | None = None


class Reply:
    """A reply being generated: queue position, then text deltas; ``status`` once it ends."""

    def __init__(self, ticket: Ticket, variant: Variant, prefix: str = "") -> None:
        self.ticket = ticket
        self.variant = variant
        self.text = prefix
        self.status: MessageStatus | None = None
        self.finish_reason: FinishReason | None = None
        self.completion_tokens = 0
        self.error: BotError | None = None

    @property
    def position(self) -> int:
        """0 while generating, otherwise the place in the queue."""
        return self.ticket.position

    async def deltas(self) -> AsyncIterator[str]:
        """The reply's text as it arrives; raises :class:`GenerationError` if the model fails."""
        async for chunk in self.ticket.stream():
            self.completion_tokens = chunk.completion_tokens
            if chunk.finish_reason is not None:
                self.finish_reason = chunk.finish_reason
            if chunk.text:
                self.text += chunk.text
                yield chunk.text


class ChatService:
    """The conversation logic shared by the terminal and Discord frontends."""

    def __init__(self, store: Store, engine: Engine, generation: GenerationConfig, *, history_limit: int = 200) -> None:
        self.store = store
        self.engine = engine
        self.generation = generation
        self.history_limit = history_limit

    def params(self, options: ChatOptions) -> SamplingParams:
        """Sampling parameters for ``options`` over the configured defaults."""
        g = self.generation
        return SamplingParams(
            max_new_tokens=options.max_new_tokens or g.max_new_tokens,
            temperature=g.temperature if options.temperature is None else options.temperature,
            top_p=g.top_p,
            repetition_penalty=g.repetition_penalty,
            seed=g.seed,
        )

    async def _history(self, conversation_id: int, options: ChatOptions) -> list[StoredMessage]:
        use_history = self.generation.history if options.history is None else options.history
        if not use_history:
            return []
        return await self.store.history(conversation_id, limit=self.history_limit)

    @asynccontextmanager
    async def respond(
        self,
        key: str | KeyFactory,
        author: Author,
        content: str,
        options: ChatOptions = ChatOptions(),
        *,
        mode: Mode = "new",
        guild_id: int | None = None,
        channel_id: int | None = None,
    ) -> AsyncIterator[Reply]:
        """Answer ``content`` by ``author`` in conversation ``key``; the reply is stored on exit.

        ``key`` may be a :data:`KeyFactory` for a conversation that does not exist yet: it is
        called once the request is admitted. ``mode="regenerate"`` replaces the last reply;
        ``mode="continue"`` extends it. Raises :class:`PromptTooLongError` or
        :class:`BusyError` before anything is stored or the factory is called.
        """
        if mode == "new" and not content.strip():
            raise PromptError("There is nothing to answer: the message is empty.")
        variant = self.engine.variant(options.variant)
        existing = await self.store.get_conversation(key) if isinstance(key, str) else None
        history = await self._history(existing.id, options) if existing else []
        if mode == "continue" and not (history and history[-1].role == Role.ASSISTANT):
            raise PromptError("There is no reply to continue yet.")
        replaced: StoredMessage | None = None
        if mode == "regenerate":
            if not history or history[-1].role != Role.ASSISTANT:
                raise PromptError("There is no reply to regenerate yet.")
            replaced, history = history[-1], history[:-1]
        messages = [ChatMessage(m.role.value, m.content, m.author_name) for m in history]
        if mode == "new":
            messages.append(ChatMessage("user", content, author.name))
        params = self.params(options)
        dialogue = Dialogue(options.system, tuple(messages), continue_last=mode == "continue")
        prompt = variant.builder.build(dialogue, max_new_tokens=params.max_new_tokens)
        ticket = variant.scheduler.submit(str(author.id), prompt, params)
        async with ticket:
            conversation = existing or await self.store.get_or_create_conversation(
                key if isinstance(key, str) else await key(),
                guild_id=guild_id,
                channel_id=channel_id,
                owner_id=author.id,
            )
            if mode == "new":
                await self.store.add_message(
                    conversation.id,
                    role=Role.USER,
                    content=content,
                    author_id=author.id,
                    author_name=author.name,
                    token_count=len(variant.builder.tokenizer.encode_plain(content)),
                )
            continued = history[-1] if mode == "continue" else None
            reply = Reply(ticket, variant, prefix=continued.content if continued else "")
            try:
                yield reply
            except GenerationError as error:
                reply.error = error
                await self._finish(conversation.id, reply, replaced, continued, MessageStatus.FAILED)
                raise
            except BaseException:
                await self._finish(conversation.id, reply, replaced, continued, MessageStatus.CANCELLED)
                raise
            if reply.finish_reason in (FinishReason.STOP, FinishReason.LENGTH):
                await self._finish(conversation.id, reply, replaced, continued, MessageStatus.OK)
            else:  # the frontend stopped reading early (Stop button)
                await self._finish(conversation.id, reply, replaced, continued, MessageStatus.CANCELLED)

    async def _finish(
        self,
        conversation_id: int,
        reply: Reply,
        replaced: StoredMessage | None,
        continued: StoredMessage | None,
        status: MessageStatus,
    ) -> None:
        """Store the reply; an interrupted one is ``partial`` if it has new text, else ``cancelled``."""
        text = reply.text.strip()
        grew = text != (continued.content if continued else "")
        if status == MessageStatus.CANCELLED and grew and text:
            status = MessageStatus.PARTIAL
        reply.status = status
        kept = status in (MessageStatus.OK, MessageStatus.PARTIAL)
        if continued is not None and not kept:
            return  # the reply being continued stays as it was
        for old in (replaced, continued):
            if old is not None and kept:
                await self.store.delete_message(old.id)
        tokens = len(reply.variant.builder.tokenizer.encode_plain(text)) if text else 0
        await self.store.add_message(
            conversation_id, role=Role.ASSISTANT, content=text, token_count=tokens, status=status
        )

    async def reset(self, key: str) -> int:
        """Forget the history of conversation ``key``; returns how many messages went."""
        conversation = await self.store.get_conversation(key)
        return 0 if conversation is None else await self.store.reset_conversation(conversation.id)
