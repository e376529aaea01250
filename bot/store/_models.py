"""The rows the store hands out: immutable value objects, never live database handles."""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["Conversation", "MessageStatus", "Role", "StoredMessage"]


class MessageStatus(enum.StrEnum):
    """How a stored message ended.

    Only ``OK`` and ``PARTIAL`` messages are fed back to the model as history; a ``CANCELLED`` or ``FAILED`` reply
    is kept for the record but never shown to the model as if it had been said.
    """

    OK = "ok"
    PARTIAL = "partial"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Role(enum.StrEnum):
    """Who spoke a message."""

    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class Conversation:
    """One conversation, keyed by where it happens (``"thread:123"``, ``"dm:456"``, ``"terminal:1"``)."""

    id: int
    key: str
    guild_id: int | None
    channel_id: int | None
    owner_id: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a conversation; messages are ordered by ``id``."""

    id: int
    conversation_id: int
    role: Role
    content: str
    author_id: int | None
    author_name: str | None
    token_count: int | None
    status: MessageStatus
    created_at: float


# The column lists below and the converters after them must stay in the same order.
CONVERSATION_COLUMNS = "id, key, guild_id, channel_id, owner_id, created_at"
MESSAGE_COLUMNS = "id, conversation_id, role, content, author_id, author_name, token_count, status, created_at"


def conversation_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Conversation:
    """Build a `Conversation` from a row selected with `CONVERSATION_COLUMNS`."""
    id_, key, guild_id, channel_id, owner_id, created_at = row
    return Conversation(
        id=id_, key=key, guild_id=guild_id, channel_id=channel_id, owner_id=owner_id, created_at=created_at
    )


def message_from_row(row: sqlite3.Row | tuple[Any, ...]) -> StoredMessage:
    """Build a `StoredMessage` from a row selected with `MESSAGE_COLUMNS`."""
    id_, conversation_id, role, content, author_id, author_name, token_count, status, created_at = row
    return StoredMessage(
        id=id_,
        conversation_id=conversation_id,
        role=Role(role),
        content=content,
        author_id=author_id,
        author_name=author_name,
        token_count=token_count,
        status=MessageStatus(status),
        created_at=created_at,
    )
