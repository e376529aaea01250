"""Conversations: people's messages stored in the order they arrived, each turn answered once, its reply stored.

Frontends call :meth:`ChatService.respond` and never touch SQL or the model. What a request asks the model (the
place's settings, the history shown, the prompt) is :mod:`bot.core.chat_prompts`; a reply and its stored row,
:mod:`bot.core.replies`.

One conversation, one order. All work on a conversation goes through its *lane*: a short
``record`` lock under which messages are stored in the order they arrived, and a ``reply``
lock that lets one reply at a time stream. A message is stored as soon as it arrives (a
crash loses no user message); the reply that starts next answers every message stored
since the last reply, so in a busy thread two people posting while a reply streams are
answered together, once, with both messages in the prompt. A reply's row is reserved
when it starts and completed in place when it ends, so the stored order is the order the platform shows.

A too-long message is refused before anything is stored; a full queue refuses the reply,
and a message that opens a new conversation (``key`` is a :data:`KeyFactory`) is then
not stored either, so nothing is lost and nothing half-made is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from bot.config import GenerationConfig
from bot.core.chat_prompts import Author, ChatOptions, ChatPrompts, DialogueBuilder, no_parent
from bot.core.engine import Engine, Variant
from bot.core.messages import ChatMessage
from bot.core.replies import Reply, finishing, reserve
from bot.core.sanitize import is_blank
from bot.errors import PromptError
from bot.store import Conversation, MessageStatus, Role, Store, StoredMessage

# Author, ChatOptions, Reply and no_parent are re-exported: bot/frontends/discord imports them from here.
__all__ = ["Author", "ChatOptions", "ChatService", "KeyFactory", "Reply", "no_parent"]

_log = logging.getLogger(__name__)

KeyFactory = Callable[[], Awaitable[str]]
"""Opens a new conversation (a Discord thread, say) once the request is admitted, and returns its key."""


@dataclass(slots=True)
class _Lane:
    """The locks that serialize one conversation (see the module docstring)."""

    record: asyncio.Lock = field(default_factory=asyncio.Lock)
    reply: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ChatService(ChatPrompts):
    """The conversation logic shared by the terminal and Discord frontends (prompts: :class:`ChatPrompts`)."""

    def __init__(self, store: Store, engine: Engine, generation: GenerationConfig, *, history_limit: int = 200) -> None:
        super().__init__(store, engine, generation, history_limit=history_limit)
        self._lanes: dict[str, _Lane] = {}

    @asynccontextmanager
    async def generate(
        self, author: Author, messages: Sequence[ChatMessage], options: ChatOptions = ChatOptions()
    ) -> AsyncIterator[Reply]:
        """One answer outside any conversation (a joke, a quiz question, a grounded answer); nothing is stored.

        Raises :class:`PromptTooLongError` or :class:`BusyError` before anything runs.
        """
        variant = self.engine.variant(options.variant)
        with self._reported(variant, author, None):
            prompt = self._prompt(variant, messages, options)
        async with variant.scheduler.submit(str(author.id), prompt, self.params(options)) as ticket:
            yield Reply(ticket, variant)

    def replying(self, key: str) -> bool:
        """Whether a reply is streaming (or about to) in conversation ``key``."""
        lane = self._lanes.get(key)
        return lane is not None and lane.reply.locked()

    @asynccontextmanager
    async def _lane(self, key: str) -> AsyncIterator[_Lane]:
        """The lane of ``key``, kept while anyone uses it and dropped after."""
        lane = self._lanes.setdefault(key, _Lane())
        lane.users += 1
        try:
            yield lane
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    async def _record(
        self,
        key: str,
        variant: Variant,
        author: Author,
        content: str,
        *,
        external_id: int | None,
        guild_id: int | None,
        channel_id: int | None,
    ) -> Conversation:
        """Store a person's message in conversation ``key`` (created if new); returns the conversation."""
        conversation = await self.store.get_or_create_conversation(
            key, guild_id=guild_id, channel_id=channel_id, owner_id=author.id
        )
        await self.store.add_message(
            conversation.id,
            role=Role.USER,
            content=content,
            author_id=author.id,
            author_name=author.name,
            token_count=len(variant.builder.tokenizer.encode_plain(content)),
            external_ids=[external_id] if external_id is not None else (),
        )
        return conversation

    @asynccontextmanager
    async def respond(
        self,
        key: str | KeyFactory,
        author: Author,
        content: str | None,
        options: ChatOptions | None = None,
        *,
        external_id: int | None = None,
        guild_id: int | None = None,
        channel_id: int | None = None,
        dialogue: DialogueBuilder | None = None,
    ) -> AsyncIterator[Reply | None]:
        """Store ``content`` by ``author`` in conversation ``key`` and answer it; the reply is stored on exit.

        Yields ``None`` when there is nothing left to answer: a reply that ran while this one
        waited for its turn already had the message in its prompt, or the message (``external_id``) is stored
        already (the platform delivered it twice). ``key`` may be a
        :data:`KeyFactory` for a conversation that does not exist yet: it is called once the
        request is admitted. Raises :class:`PromptTooLongError` or :class:`PromptError` before
        anything is stored, :class:`BusyError` when the queue is full.

        ``content`` None stores no message and answers the conversation as it stands (a scene's opening, a
        character nudged to speak); ``key`` must then be a string. ``dialogue`` builds the prompt from the history
        when the conversation is not a plain chat (see :data:`DialogueBuilder`).
        """
        if not isinstance(key, str):
            if content is None or dialogue is not None:
                raise ValueError("a new conversation opens with a person's message and a plain dialogue")
            if await self._stored_already(external_id):
                yield None
                return
            options = options or await self.options_for(guild_id, channel_id)
            variant = self.engine.variant(options.variant)
            async with self._open(
                key,
                author=author,
                content=content,
                options=options,
                variant=variant,
                external_id=external_id,
                guild_id=guild_id,
                channel_id=channel_id,
            ) as opened:
                yield opened
            return
        async with self._lane(key) as lane:
            async with lane.record:  # the first await: messages take their place in the order they arrived
                # Checked and stored under one hold of the lock, so a message delivered twice is stored once.
                duplicate = await self._stored_already(external_id)
                if not duplicate:
                    # The place's settings are read in turn too (``options`` None: from :meth:`options_for`).
                    options = options or await self.options_for(guild_id, channel_id)
                    variant = self.engine.variant(options.variant)
                    if content is None:
                        conversation = await self.store.get_or_create_conversation(
                            key, guild_id=guild_id, channel_id=channel_id, owner_id=author.id
                        )
                    else:
                        with self._reported(variant, author, key):
                            self._alone(variant, author, content, options)
                        conversation = await self._record(
                            key,
                            variant,
                            author,
                            content,
                            external_id=external_id,
                            guild_id=guild_id,
                            channel_id=channel_id,
                        )
            if duplicate:
                yield None
                return
            assert options is not None
            async with lane.reply, AsyncExitStack() as stack:
                reply: Reply | None = None
                async with lane.record:
                    last = await self.store.last_message(conversation.id)
                    # Otherwise a reply that ran while this message waited had it in its prompt: nothing to do.
                    if content is None or (last is not None and last.role == Role.USER):
                        history = await self._history(conversation.id, options)
                        with self._reported(variant, author, key):
                            prompt = await self._built(variant, history, options, dialogue)
                        ticket = await stack.enter_async_context(
                            variant.scheduler.submit(str(author.id), prompt, self.params(options), conversation=key)
                        )
                        reply = await reserve(self.store, conversation, ticket, variant)
                if reply is None:
                    yield None
                    return
                async with finishing(self.store, reply, "new"):
                    yield reply

    async def _stored_already(self, external_id: int | None) -> bool:
        """Whether the platform message ``external_id`` is stored already (delivered twice): it is answered once."""
        if external_id is None or await self.store.message_by_external_id(external_id) is None:
            return False
        _log.info("Message %d is stored already; it is not stored or answered again", external_id)
        return True

    @asynccontextmanager
    async def _open(
        self,
        key: KeyFactory,
        *,
        author: Author,
        content: str,
        options: ChatOptions,
        variant: Variant,
        external_id: int | None,
        guild_id: int | None,
        channel_id: int | None,
    ) -> AsyncIterator[Reply]:
        """Start a new conversation: admitted first, then opened (a thread, say), then stored."""
        with self._reported(variant, author, None):
            prompt = self._alone(variant, author, content, options)
        async with variant.scheduler.submit(str(author.id), prompt, self.params(options)) as ticket:
            new_key = await key()
            ticket.conversation = new_key  # opened only now: its report names it
            async with self._lane(new_key) as lane, lane.reply:
                async with lane.record:
                    conversation = await self._record(
                        new_key,
                        variant,
                        author,
                        content,
                        external_id=external_id,
                        guild_id=guild_id,
                        channel_id=channel_id,
                    )
                    reply = await reserve(self.store, conversation, ticket, variant)
                async with finishing(self.store, reply, "new"):
                    yield reply

    @asynccontextmanager
    async def redo(
        self,
        key: str,
        author: Author,
        target: StoredMessage,
        mode: Literal["regenerate", "continue"],
        options: ChatOptions = ChatOptions(),
        *,
        dialogue: DialogueBuilder | None = None,
    ) -> AsyncIterator[Reply]:
        """Regenerate or continue ``target``, which must still be the conversation's latest message.

        The reply is completed in place: Regenerate replaces ``target``, Continue extends it. ``dialogue`` builds
        the prompt as for :meth:`respond` (a scene's turn), from the history before ``target`` (with ``target`` last
        for Continue, whose open ending the built :class:`Dialogue` then has to ask for).
        """
        variant = self.engine.variant(options.variant)
        async with self._lane(key) as lane, lane.reply, AsyncExitStack() as stack:
            async with lane.record:
                last = await self.store.last_message(target.conversation_id)
                verb = "regenerated" if mode == "regenerate" else "continued"
                if last is None or last.id != target.id or last.role != Role.ASSISTANT:
                    raise PromptError(f"Only the latest reply can be {verb}.")
                history = await self._history(target.conversation_id, options, before=target.id)
                if mode == "continue":
                    if target.status not in (MessageStatus.OK, MessageStatus.PARTIAL) or not target.content:
                        raise PromptError("There is no reply text to continue.")
                    history.append(target)
                with self._reported(variant, author, key):
                    if dialogue is None:
                        prompt = self._prompt(variant, history, options, continue_last=mode == "continue")
                    else:
                        prompt = await self._built(variant, history, options, dialogue)
                ticket = await stack.enter_async_context(
                    variant.scheduler.submit(str(author.id), prompt, self.params(options), conversation=key)
                )
                reply = Reply(ticket, variant, prefix=target.content if mode == "continue" else "")
                reply.stored = target
                reply.shown_in = await self.store.external_ids(target.id)
            async with finishing(self.store, reply, mode):
                yield reply

    async def shown_in_part(self, reply: Reply) -> None:
        """The end of a finished reply could not be shown (the platform failed): it is stored ``partial``."""
        if reply.stored is not None and reply.status == MessageStatus.OK:
            reply.status = MessageStatus.PARTIAL
            await self.store.update_message(reply.stored.id, status=MessageStatus.PARTIAL)

    async def show_in(self, reply: Reply, external_ids: Sequence[int]) -> None:
        """Record that a finished reply is now shown in ``external_ids`` (its last edit added or removed parts)."""
        if reply.stored is not None and list(external_ids) != reply.shown_in:
            reply.shown_in = list(external_ids)
            await self.store.update_message(reply.stored.id, external_ids=reply.shown_in)

    async def history_of(self, key: str) -> list[StoredMessage]:
        """The stored history of conversation ``key`` (oldest first; empty if it has none)."""
        conversation = await self.store.get_conversation(key)
        return [] if conversation is None else await self.store.history(conversation.id, limit=self.history_limit)

    async def exists(self, key: str) -> bool:
        """Whether conversation ``key`` has been started."""
        return await self.store.get_conversation(key) is not None

    async def earlier_reply(self, reply: Reply) -> list[int]:
        """Where the reply before ``reply`` is shown (to retire its buttons: only the latest reply has them)."""
        stored = reply.stored
        if stored is None:
            return []
        earlier = await self.store.last_message(stored.conversation_id, role=Role.ASSISTANT, before=stored.id)
        return [] if earlier is None else await self.store.external_ids(earlier.id)

    async def discard(self, reply: Reply) -> None:
        """The reply's messages were deleted before it ended: it leaves the history."""
        if reply.stored is not None and reply.prefix == "":
            await self.store.delete_message(reply.stored.id)

    async def find(self, external_id: int) -> StoredMessage | None:
        """The stored message shown by platform message ``external_id``."""
        return await self.store.message_by_external_id(external_id)

    async def edit(self, external_id: int, content: str) -> bool:
        """A person edited a message: the history changes with it; False if it is not in any conversation (or the new
        text is blank)."""
        message = await self.store.message_by_external_id(external_id)
        if message is None or message.role != Role.USER or message.content == content or is_blank(content):
            return False  # an edit into invisible text is not taken: the model keeps reading what was there
        tokens = len(self.engine.variant().builder.tokenizer.encode_plain(content))
        return await self.store.update_message(message.id, content=content, token_count=tokens)

    async def forget(self, external_id: int) -> bool:
        """A message was deleted where it was shown: it leaves the history; False if it was not in one."""
        message = await self.store.message_by_external_id(external_id)
        if message is None:
            return False
        await self.store.delete_message(message.id)
        return True

    async def drop_conversation(self, key: str) -> bool:
        """The place of a conversation is gone (a deleted thread): forget it entirely."""
        return await self.store.delete_conversation(key)

    @asynccontextmanager
    async def quiet(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Wait until no reply runs in any of the conversations ``keys``, and keep new work out of them inside.

        Lanes are taken in sorted order and every other task holds one lane at a time, so this cannot deadlock.
        """
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                lane = await stack.enter_async_context(self._lane(key))
                await stack.enter_async_context(lane.reply)
                await stack.enter_async_context(lane.record)
            yield

    async def reset(self, key: str, *, by: int | None = None) -> int | None:
        """Forget the history of conversation ``key`` (after the reply in flight); returns how many messages went.

        ``by`` is who asks, when they are no moderator: unless they started the conversation, a history holding
        another person's message is then kept, and the answer is None.
        """
        async with self._lane(key) as lane, lane.reply, lane.record:
            conversation = await self.store.get_conversation(key)
            if conversation is None:
                return 0
            if by is not None and by != conversation.owner_id and await self.store.authors(conversation.id) - {by}:
                return None
            return await self.store.reset_conversation(conversation.id)
