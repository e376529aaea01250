"""Conversations: history from the store, a prompt within budget, a streamed reply, its status stored.

Frontends call :meth:`ChatService.respond` and never touch SQL or the model.

One conversation, one order. All work on a conversation goes through its *lane*: a short
``record`` lock under which messages are stored in the order they arrived, and a ``reply``
lock that lets one reply at a time stream. A message is stored as soon as it arrives (a
crash loses no user message); the reply that starts next answers every message stored
since the last reply, so in a busy thread two people posting while a reply streams are
answered together, once, with both messages in the prompt. A reply's row is reserved
when it starts (status ``cancelled``, no text: what a crash leaves behind is marked) and
completed in place when it ends, so the stored order is the order the platform shows.
A reply that did not finish is never stored as ``ok``.

A too-long message is refused before anything is stored; a full queue refuses the reply,
and a message that opens a new conversation (``key`` is a :data:`KeyFactory`) is then
not stored either, so nothing is lost and nothing half-made is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Literal

from bot.config import GenerationConfig
from bot.core.engine import Engine, Variant
from bot.core.messages import ChatMessage, Dialogue
from bot.core.sanitize import is_blank
from bot.core.settings import ChannelSettings, Place
from bot.errors import BotError, DeliveryError, GenerationError, PromptError, PromptTooLongError, StoreError
from bot.inference.scheduler import Ticket
from bot.inference.telemetry import Outcome
from bot.inference.types import FinishReason, Prompt, SamplingParams
from bot.store import Conversation, MessageStatus, Role, Store, StoredMessage

_log = logging.getLogger(__name__)

Mode = Literal["new", "regenerate", "continue"]
KeyFactory = Callable[[], Awaitable[str]]
"""Opens a new conversation (a Discord thread, say) once the request is admitted, and returns its key."""
DialogueBuilder = Callable[[Sequence[StoredMessage], "ChatOptions"], Awaitable[Dialogue]]
"""Builds the dialogue of a conversation whose prompt is not the plain history (a scene: its sheet first), from
the history :meth:`ChatService.respond` loaded; called in the conversation's turn, so what it reads is current."""
AfterStored = Callable[[BaseException | None], Awaitable[None]]
"""What the frontend does once a reply is stored (see :meth:`Reply.when_stored`)."""
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


class Reply:
    """A reply being generated: queue position, then text deltas; ``status`` once it ends.

    The frontend records where it shows the reply in :attr:`shown_in` (platform message ids);
    they are stored with the reply, so buttons find it again after a restart.
    """

    def __init__(self, ticket: Ticket, variant: Variant, prefix: str = "") -> None:
        self.ticket = ticket
        self.variant = variant
        self.prefix = prefix
        self.text = prefix
        self.status: MessageStatus | None = None
        self.finish_reason: FinishReason | None = None
        self.completion_tokens = 0
        self.error: BotError | None = None
        self.shown_in: list[int] = []
        self.stored: StoredMessage | None = None
        """The stored row of this reply (reserved when it starts, completed when it ends)."""
        self._when_stored: list[AfterStored] = []

    @property
    def position(self) -> int:
        """0 while generating, otherwise the place in the queue."""
        return self.ticket.position

    @property
    def new_text(self) -> str:
        """What this reply added (for Continue: without the text it continues)."""
        return self.text[len(self.prefix) :]

    def settle(self, text: str, *, complete: bool) -> None:
        """Keep ``text`` as this reply instead of the model's raw output (a scene keeps the lines it showed).

        ``complete`` says the frontend ended the reply where it should end, as a stop string would (a scene stops at
        a line for a person): it is then stored ``ok``, not ``partial``.
        """
        self.text = self.prefix + text
        if complete and self.finish_reason is None:
            self.finish_reason = FinishReason.STOP

    def when_stored(self, callback: AfterStored) -> None:
        """Run ``callback`` once the reply is stored, still in the conversation's turn: the frontend's last edit.

        It gets the error that ended the reply's use, if any (a :class:`StoreError` when it could not be stored).
        The next reply of the conversation waits for it, so a reply is shown whole before the next one appears.
        """
        self._when_stored.append(callback)

    async def _stored(self, error: BaseException | None) -> None:
        for callback in self._when_stored:
            try:
                await callback(error)
            except Exception:
                _log.exception("Showing the end of a reply failed")

    async def deltas(self) -> AsyncGenerator[str, None]:
        """The reply's text as it arrives; raises :class:`GenerationError` if the model fails."""
        async for chunk in self.ticket.stream():
            self.completion_tokens = chunk.completion_tokens
            if chunk.finish_reason is not None:
                self.finish_reason = chunk.finish_reason
            if chunk.text:
                self.text += chunk.text
                yield chunk.text


@dataclass(slots=True)
class _Lane:
    """The locks that serialize one conversation (see the module docstring)."""

    record: asyncio.Lock = field(default_factory=asyncio.Lock)
    reply: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ChatService:
    """The conversation logic shared by the terminal and Discord frontends."""

    def __init__(self, store: Store, engine: Engine, generation: GenerationConfig, *, history_limit: int = 200) -> None:
        self.store = store
        self.engine = engine
        self.generation = generation
        self.history_limit = history_limit
        self._lanes: dict[str, _Lane] = {}
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

    @contextmanager
    def _reported(self, variant: Variant, author: Author, key: str | None) -> Iterator[None]:
        """Report a prompt that cannot fit as a ``too_long`` request (the scheduler reports every other end)."""
        try:
            yield
        except PromptTooLongError:
            variant.scheduler.log.refused(str(author.id), Outcome.TOO_LONG, conversation=key)
            raise

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
            m if isinstance(m, ChatMessage) else ChatMessage(m.role.value, m.content, m.author_name) for m in history
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
        return self._prompt(variant, [ChatMessage("user", content, author.name)], options)

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

    async def _reserve(self, conversation: Conversation, ticket: Ticket, variant: Variant) -> Reply:
        reply = Reply(ticket, variant)
        reply.stored = await self.store.add_message(
            conversation.id, role=Role.ASSISTANT, content="", token_count=0, status=MessageStatus.CANCELLED
        )
        return reply

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
                        reply = await self._reserve(conversation, ticket, variant)
                if reply is None:
                    yield None
                    return
                async with self._finishing(reply, "new"):
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
                    reply = await self._reserve(conversation, ticket, variant)
                async with self._finishing(reply, "new"):
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
            async with self._finishing(reply, mode):
                yield reply

    @asynccontextmanager
    async def _finishing(self, reply: Reply, mode: Mode) -> AsyncIterator[None]:
        """Store the reply however the frontend's use of it ends, then run its :meth:`Reply.when_stored` callbacks,
        all inside the conversation's lane (the caller holds it)."""
        try:
            async with self._storing(reply, mode):
                yield
        except BaseException as error:
            reply.ticket.release()  # the model is done with it: its slot is free while the frontend shows the end
            await reply._stored(error)
            raise
        reply.ticket.release()
        await reply._stored(None)

    @asynccontextmanager
    async def _storing(self, reply: Reply, mode: Mode) -> AsyncIterator[None]:
        """Store the reply however the frontend's use of it ends."""
        try:
            yield
        except (GenerationError, DeliveryError) as error:
            reply.error = error
            await self._finish(reply, mode, MessageStatus.FAILED)
            raise
        except BaseException:
            await self._finish(reply, mode, MessageStatus.CANCELLED)
            raise
        if reply.finish_reason in (FinishReason.STOP, FinishReason.LENGTH):
            await self._finish(reply, mode, MessageStatus.OK)
        else:  # the frontend stopped reading early (Stop button)
            await self._finish(reply, mode, MessageStatus.CANCELLED)

    async def _finish(self, reply: Reply, mode: Mode, status: MessageStatus) -> None:
        """Complete the reply's row; an interrupted reply is ``partial`` if it has new text, else ``cancelled``."""
        assert reply.stored is not None
        if status == MessageStatus.CANCELLED and reply.new_text.strip():
            status = MessageStatus.PARTIAL
        reply.status = status
        if mode == "continue" and status not in (MessageStatus.OK, MessageStatus.PARTIAL):
            return  # the reply being continued stays as it was
        text = reply.text.strip()
        tokens = len(reply.variant.builder.tokenizer.encode_plain(text)) if text else 0
        try:
            await self.store.update_message(
                reply.stored.id, content=text, token_count=tokens, status=status, external_ids=reply.shown_in
            )
        except StoreError:
            reply.status = reply.stored.status  # not stored (busy, disk full): the row still says what it said
            raise

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
        """A person edited a message: the history changes with it; False if it is not in any conversation."""
        message = await self.store.message_by_external_id(external_id)
        if message is None or message.role != Role.USER or message.content == content:
            return False
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

    async def reset(self, key: str) -> int:
        """Forget the history of conversation ``key`` (after the reply in flight); returns how many messages went."""
        async with self._lane(key) as lane, lane.reply, lane.record:
            conversation = await self.store.get_conversation(key)
            return 0 if conversation is None else await self.store.reset_conversation(conversation.id)
