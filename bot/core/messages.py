"""What a conversation is to the core: who said what, before any prompt format applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation; ``name`` is the author's display name and ``author_id`` who they are (humans).

    Two people may go by the same display name: with ``author_id`` given they still get distinct labels.
    """

    role: Role
    content: str
    name: str | None = None
    author_id: int | None = None


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A conversation ready to be rendered as a prompt.

    ``pinned`` counts the leading messages the token budget never drops (a scene sheet,
    chosen sources); the rest are dropped oldest first when the window is full.
    ``continue_last`` leaves the final assistant message open so the model goes on with it.
    ``examples`` (a character card's example dialogue) go between ``messages[examples_at - 1]`` and
    ``messages[examples_at]`` (``None``: after the pinned messages; never further); they are never pinned: the
    budget drops them, the last first, before it drops any other message.
    """

    system: str | None
    messages: tuple[ChatMessage, ...]
    pinned: int = 0
    continue_last: bool = False
    extra_stops: tuple[str, ...] = field(default=())
    examples: tuple[ChatMessage, ...] = field(default=())
    examples_at: int | None = None
