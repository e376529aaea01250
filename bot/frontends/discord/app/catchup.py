"""Messages Discord never delivered: those sent in a conversation while the bot's gateway session was lost.

After a RESUME Discord replays what the bot missed; after a new session (IDENTIFY: a session Discord ended, or a
restart) it does not. So on every new session the conversations cog reads, for each conversation active lately, the
thread's (or DM's) history after the newest person's message the store ever held there (a mark that deleting
messages never lowers: what ``/forget-me``, ``/reset`` or a deletion removed is never read back), and passes the
people's messages it finds through its ``on_message``, in order, as if they had just arrived: access rules, blocked
users, rate limits and the duplicate guard apply as to any message. History carries no member data, so each author is
first resolved to the server member they are (their roles decide ``[access] allowed_roles``).

Bounded: conversations with a message in the last :data:`WINDOW` seconds, at most :data:`CONVERSATIONS` of them,
and :data:`MESSAGES` messages read from each.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord

from bot.store import RecentConversation, Store

if TYPE_CHECKING:
    from bot.frontends.discord.services import DiscordBot  # only the type: services imports this module

_log = logging.getLogger(__name__)

WINDOW = 24 * 3600.0
"""Seconds back a conversation's last message may be for it to be caught up."""
CONVERSATIONS = 50
"""The most conversations read after one new session (the most recently active first)."""
MESSAGES = 50
"""The most messages read from one conversation's history."""


async def missed_messages(
    bot: DiscordBot, store: Store, shard_id: int
) -> list[tuple[discord.abc.Messageable, list[discord.Message]]]:
    """The people's messages (oldest first) after what the store knows, in each recent conversation of the shard."""
    found: list[tuple[discord.abc.Messageable, list[discord.Message]]] = []
    members: dict[tuple[int, int], discord.Member | None] = {}
    for recent in await store.catchup.recent(time.time() - WINDOW, limit=CONVERSATIONS):
        anchor = _anchor(recent)
        if anchor is None or not _on_shard(bot, recent.guild_id, shard_id):
            continue
        channel_id = int(recent.key.partition(":")[2])
        try:
            channel = bot.get_channel(channel_id) or await bot.fetch_channel(channel_id)
            if not isinstance(channel, discord.Thread | discord.DMChannel):
                continue
            history = [
                m async for m in channel.history(after=discord.Object(anchor), limit=MESSAGES, oldest_first=True)
            ]
        except discord.HTTPException as error:  # a deleted thread, a lost permission: nothing to catch up there
            _log.info("Could not read what was missed in %s: %s", recent.key, error)
            continue
        people = [m for m in history if not m.author.bot]
        await _as_members(people, members)
        if people:
            _log.info("%d message(s) in %s arrived while the bot was away; answering them", len(people), recent.key)
            found.append((channel, people))
    return found


async def _as_members(messages: list[discord.Message], known: dict[tuple[int, int], discord.Member | None]) -> None:
    """Make each server message's author the member they are, roles included, as on a live message.

    Messages read from REST history carry no member data, and the bot has no members intent to fill its cache, so
    their authors are plain users with no roles: ``[access] allowed_roles`` would refuse everyone. Each author is
    looked up once per catch-up (``known``): the cache first, then Discord. One who left the server stays a user.
    """
    for message in messages:
        guild = message.guild
        if guild is None or isinstance(message.author, discord.Member):
            continue
        key = (guild.id, message.author.id)
        if key not in known:
            member = guild.get_member(message.author.id)
            if member is None:
                try:
                    member = await guild.fetch_member(message.author.id)
                except discord.HTTPException as error:
                    _log.info("Could not look up member %d of server %d: %s", key[1], key[0], error)
            known[key] = member
        member = known[key]
        if member is not None:
            message.author = member


def _anchor(recent: RecentConversation) -> int | None:
    """The platform id after which messages may be missing: the newest person's message ever stored, else the newest
    stored message, else (a thread) the thread itself, whose id is its starter's; None for a key that is no place."""
    kind, _, raw_id = recent.key.partition(":")
    if kind not in ("thread", "dm") or not raw_id.isdigit():
        return None
    fallback = int(raw_id) if kind == "thread" else None
    return recent.last_user_external_id or recent.last_external_id or fallback


def _on_shard(bot: DiscordBot, guild_id: int | None, shard_id: int) -> bool:
    """Whether the conversation's server is served by ``shard_id`` (DMs come through shard 0)."""
    if guild_id is None:
        return shard_id == 0
    guild = bot.get_guild(guild_id)
    return guild is not None and guild.shard_id == shard_id
