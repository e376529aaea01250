"""`CatchUp`: which conversations may have missed messages while the bot was away from the gateway.

Discord does not replay the messages sent while a bot's session was lost (or the bot was down); the frontend reads
the recent history of each conversation active lately, after the newest platform message the store knows for it,
and answers what it finds there (see ``bot/frontends/discord/app/catchup.py``).

"The newest person's message" is a mark kept on the conversation (``seen_up_to``), raised by every person's
message stored and never lowered: a message deleted since (``/forget-me``, ``/reset``, a deletion on Discord) was
stored before, so it lies at or below the mark, and the catch-up, reading only after it, cannot bring it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["CatchUp", "RecentConversation"]


@dataclass(frozen=True, slots=True)
class RecentConversation:
    """A conversation with a message since some time, and where its history on the platform is known up to."""

    key: str
    guild_id: int | None
    """The server it is in (None for a DM)."""
    last_user_external_id: int | None
    """The newest platform message id of a person's message ever stored in it, deleted ones included (None if
    none had one)."""
    last_external_id: int | None
    """The newest platform message id of any message stored in it, replies included (None if none has one)."""


class CatchUp:
    """The store's side of catching up after a gateway outage or a restart."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def recent(self, since: float, *, limit: int) -> list[RecentConversation]:
        """Up to ``limit`` conversations with a message stored at or after ``since`` (a Unix time), the most
        recently active first."""
        async with self._store._use("find the recent conversations") as db:
            rows = await db.execute_fetchall(
                "SELECT c.key, c.guild_id, NULLIF(MAX(COALESCE(c.seen_up_to, 0),"
                "  COALESCE(MAX(CASE WHEN m.role = 'user' THEN l.external_id END), 0)), 0), MAX(l.external_id)"
                " FROM conversations c"
                " JOIN messages m ON m.conversation_id = c.id"
                " LEFT JOIN message_links l ON l.message_id = m.id"
                " GROUP BY c.id HAVING MAX(m.created_at) >= ?"
                " ORDER BY MAX(m.created_at) DESC LIMIT ?",
                (since, limit),
            )
        return [RecentConversation(str(key), _id(guild), _id(user), _id(any_)) for key, guild, user, any_ in rows]


def _id(value: Any) -> int | None:
    return None if value is None else int(value)
