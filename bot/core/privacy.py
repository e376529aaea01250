"""Privacy: forgetting a person safely, exporting a conversation's history as a file.

Frontends call :func:`forget_user` and :class:`HistoryExport`; they never touch SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.core.chat import ChatService
from bot.errors import BotError
from bot.store import Role, Store, StoredMessage, UserData

__all__ = [
    "ExportFile",
    "ExportFormat",
    "ExportTooLargeError",
    "HistoryExport",
    "NoConversationError",
    "forget_user",
    "json_export",
    "markdown_export",
]

ExportFormat = Literal["json", "markdown"]
_EXTENSIONS: dict[ExportFormat, str] = {"json": "json", "markdown": "md"}
_PAGE = 500
"""Messages read per query: a long history is read page by page and stops once the file would be too large."""


class NoConversationError(BotError):
    """There is no stored conversation where the export was asked for."""


class ExportTooLargeError(BotError):
    """The history does not fit in one file of the allowed size."""


@dataclass(frozen=True, slots=True)
class ExportFile:
    """An exported history: the file's name, its bytes (UTF-8) and how many messages it holds."""

    filename: str
    data: bytes
    messages: int


async def forget_user(chat: ChatService, user_id: int) -> UserData:
    """Delete what is stored about ``user_id``, once no reply runs in any conversation it changes.

    The conversations' lanes are held during the deletion, so no message is stored and no reply is started in them
    half-way through; a reply that was running is finished (and stored) before, then deleted if it answered them.
    """
    keys = await chat.store.privacy.conversation_keys(user_id)
    async with chat.quiet(keys):
        return await chat.store.privacy.forget(user_id)


def _time(created_at: float, *, markdown: bool) -> str:
    moment = datetime.fromtimestamp(created_at, UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if markdown else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _author(message: StoredMessage) -> str:
    if message.role == Role.ASSISTANT:
        return message.author_name or "Assistant"
    return message.author_name or "Someone"


def _json_message(message: StoredMessage) -> str:
    return json.dumps(
        {
            "id": message.id,
            "role": message.role.value,
            "author_name": _author(message),
            "author_id": message.author_id,
            "time": _time(message.created_at, markdown=False),
            "status": message.status.value,
            "content": message.content,
        },
        ensure_ascii=False,
    )


def _markdown_message(message: StoredMessage) -> str:
    status = "" if message.status.value == "ok" else f" · {message.status.value}"
    heading = f"## {_author(message)} · {_time(message.created_at, markdown=True)}{status}"
    return f"{heading}\n\n{message.content or '*(no text)*'}\n"


def _json_head(key: str, exported_at: float) -> str:
    head = json.dumps({"conversation": key, "exported_at": _time(exported_at, markdown=False)}, ensure_ascii=False)
    return head[:-1] + ', "messages": ['


def _markdown_head(key: str, exported_at: float) -> str:
    return f"# Conversation {key}\n\nExported {_time(exported_at, markdown=True)}.\n"


def json_export(key: str, messages: Sequence[StoredMessage], exported_at: float) -> str:
    """The history as one JSON object: ``conversation``, ``exported_at`` and ``messages``, one message a line."""
    body = ",\n".join(_json_message(m) for m in messages)
    return f"{_json_head(key, exported_at)}\n{body}\n]}}\n" if body else f"{_json_head(key, exported_at)}]}}\n"


def markdown_export(key: str, messages: Sequence[StoredMessage], exported_at: float) -> str:
    """The history as Markdown: a ``## author · time`` heading over each message (its status unless ok)."""
    return "\n".join([_markdown_head(key, exported_at), *(_markdown_message(m) for m in messages)])


class HistoryExport:
    """A conversation's whole stored history (every status) as a file no larger than ``max_bytes``."""

    def __init__(self, store: Store, *, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes

    async def export(self, key: str, fmt: ExportFormat, *, now: float) -> ExportFile:
        """The file for conversation ``key``; raises :class:`NoConversationError` or :class:`ExportTooLargeError`.

        Messages are read a page at a time and counted as they come, so an enormous history is refused without
        being loaded whole.
        """
        conversation = await self.store.privacy.conversation(key)
        if conversation is None:
            raise NoConversationError("There is no stored history here yet.")
        render = _json_message if fmt == "json" else _markdown_message
        # The head, the separators and the tail together are far below this margin.
        size, after = 1024 + len(key.encode()), 0
        messages: list[StoredMessage] = []
        while page := await self.store.privacy.messages_page(conversation.id, after=after, limit=_PAGE):
            for message in page:
                size += len(render(message).encode()) + 2
                if size > self.max_bytes:
                    raise ExportTooLargeError(
                        f"This conversation's history is too large to send as one file"
                        f" (over {self.max_bytes / 2**20:g} MiB)."
                    )
            messages += page
            after = page[-1].id
        text = json_export(key, messages, now) if fmt == "json" else markdown_export(key, messages, now)
        place = key.rsplit(":", 1)[-1]  # the thread's or DM channel's id, as Discord shows it
        return ExportFile(f"conversation-{place}.{_EXTENSIONS[fmt]}", text.encode(), len(messages))
