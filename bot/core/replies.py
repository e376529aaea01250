"""A reply being generated: its text as it streams, then its stored row, completed however the reply ends.

A reply's row is reserved when it starts (status ``cancelled``, no text: what a crash leaves behind is marked) and
completed in place when it ends, so the stored order is the order the platform shows. A reply that did not finish is
never stored as ``ok``: an interrupted one is ``partial`` if it has new text, else ``cancelled``; a failed one is
``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

from bot.core.engine import Variant
from bot.errors import BotError, DeliveryError, GenerationError, StoreError
from bot.inference.scheduler import Ticket
from bot.inference.types import FinishReason
from bot.store import Conversation, MessageStatus, Role, Store, StoredMessage

_log = logging.getLogger(__name__)

Mode = Literal["new", "regenerate", "continue"]
AfterStored = Callable[[BaseException | None], Awaitable[None]]
"""What the frontend does once a reply is stored (see :meth:`Reply.when_stored`)."""


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


async def reserve(store: Store, conversation: Conversation, ticket: Ticket, variant: Variant) -> Reply:
    """A new reply in ``conversation``, its row reserved (status ``cancelled``, no text) until it ends."""
    reply = Reply(ticket, variant)
    reply.stored = await store.add_message(
        conversation.id, role=Role.ASSISTANT, content="", token_count=0, status=MessageStatus.CANCELLED
    )
    return reply


@asynccontextmanager
async def finishing(store: Store, reply: Reply, mode: Mode) -> AsyncIterator[None]:
    """Store the reply however the frontend's use of it ends, then run its :meth:`Reply.when_stored` callbacks,
    all inside the conversation's lane (the caller holds it)."""
    try:
        async with _storing(store, reply, mode):
            yield
    except BaseException as error:
        reply.ticket.release()  # the model is done with it: its slot is free while the frontend shows the end
        await reply._stored(error)
        raise
    reply.ticket.release()
    await reply._stored(None)


@asynccontextmanager
async def _storing(store: Store, reply: Reply, mode: Mode) -> AsyncIterator[None]:
    """Store the reply however the frontend's use of it ends."""
    try:
        yield
    except (GenerationError, DeliveryError) as error:
        reply.error = error
        await _finish(store, reply, mode, MessageStatus.FAILED)
        raise
    except BaseException:
        await _finish(store, reply, mode, MessageStatus.CANCELLED)
        raise
    if reply.finish_reason in (FinishReason.STOP, FinishReason.LENGTH):
        await _finish(store, reply, mode, MessageStatus.OK)
    else:  # the frontend stopped reading early (Stop button)
        await _finish(store, reply, mode, MessageStatus.CANCELLED)


async def _finish(store: Store, reply: Reply, mode: Mode, status: MessageStatus) -> None:
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
        await store.update_message(
            reply.stored.id, content=text, token_count=tokens, status=status, external_ids=reply.shown_in
        )
    except StoreError:
        reply.status = reply.stored.status  # not stored (busy, disk full): the row still says what it said
        raise
