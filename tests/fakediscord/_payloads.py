"""JSON payloads built from the fake's records, in the shapes discord.py parses.

Only fields discord.py reads (plus a few that real Discord always sends) are filled in.
Ids become strings, as on the wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._models import (
    ChannelType,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    FakeWebhook,
    MessageFlag,
    MessageType,
)

if TYPE_CHECKING:
    from ._state import FakeState


def user_payload(user: FakeUser) -> dict[str, Any]:
    """A user object."""
    payload: dict[str, Any] = {
        "id": str(user.id),
        "username": user.username,
        "global_name": user.display_name,
        "discriminator": "0",
        "avatar": None,
        "public_flags": 0,
    }
    if user.bot:
        payload["bot"] = True
    return payload


def role_payload(role: FakeRole) -> dict[str, Any]:
    """A role object."""
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": role.managed,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def member_payload(
    state: FakeState, member: FakeMember, *, with_user: bool = True, with_permissions: bool = False
) -> dict[str, Any]:
    """A guild member object; ``with_permissions`` adds the resolved ``permissions`` interactions carry."""
    payload: dict[str, Any] = {
        "nick": member.nick,
        "roles": [str(role_id) for role_id in member.role_ids],
        "joined_at": member.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "avatar": None,
        "communication_disabled_until": None,
    }
    if with_user:
        payload["user"] = user_payload(member.user)
    if with_permissions:
        payload["permissions"] = str(state.permissions(member.guild_id, member.user.id))
    return payload


def channel_payload(state: FakeState, channel: FakeChannel) -> dict[str, Any]:
    """A channel object: guild text channel, thread or DM."""
    if channel.is_dm:
        recipient = state.users[channel.recipient_id] if channel.recipient_id is not None else None
        return {
            "id": str(channel.id),
            "type": ChannelType.DM,
            "last_message_id": _optional_id(channel.last_message_id),
            "recipients": [user_payload(recipient)] if recipient is not None else [],
            "flags": 0,
        }
    payload: dict[str, Any] = {
        "id": str(channel.id),
        "type": channel.type,
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "last_message_id": _optional_id(channel.last_message_id),
        "rate_limit_per_user": 0,
        "flags": 0,
    }
    if channel.is_thread:
        metadata: dict[str, Any] = {
            "archived": channel.archived,
            "auto_archive_duration": channel.auto_archive_duration,
            "archive_timestamp": channel.created_at,
            "locked": channel.locked,
            "create_timestamp": channel.created_at,
        }
        if channel.type == ChannelType.PRIVATE_THREAD:
            metadata["invitable"] = channel.invitable
        payload |= {
            "parent_id": str(channel.parent_id),
            "owner_id": str(channel.owner_id),
            "message_count": channel.message_count,
            "total_message_sent": channel.message_count,
            "member_count": min(len(channel.member_ids), 50),
            "thread_metadata": metadata,
        }
        if state.bot_user.id in channel.member_ids:
            payload["member"] = {
                "id": str(channel.id),
                "user_id": str(state.bot_user.id),
                "join_timestamp": channel.created_at,
                "flags": 0,
            }
        return payload
    roles = state.guilds[channel.guild_id].roles if channel.guild_id is not None else {}
    return (
        payload
        | {
            "position": channel.position,
            "parent_id": None,
            "topic": None,
            "nsfw": channel.nsfw,
            "permission_overwrites": [
                {"id": str(target), "type": 0 if target in roles else 1, "allow": str(allow), "deny": str(deny)}
                for target, (allow, deny) in channel.overwrites.items()
            ],
            "default_auto_archive_duration": 1440,
        }
        | (
            {"available_tags": [], "default_reaction_emoji": None, "default_forum_layout": 0}
            if channel.type == ChannelType.GUILD_FORUM
            else {}
        )
    )


def guild_create_payload(state: FakeState, guild: FakeGuild) -> dict[str, Any]:
    """The GUILD_CREATE payload: the guild with roles, members, channels and active threads."""
    channels = [state.channels[channel_id] for channel_id in guild.channel_ids]
    threads = [c for c in state.channels.values() if c.guild_id == guild.id and c.is_thread and not c.archived]
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "preferred_locale": "en-US",
        "features": [],
        "roles": [role_payload(role) for role in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "joined_at": guild.members[state.bot_user.id].joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(guild.members),
        "members": [member_payload(state, member) for member in guild.members.values()],
        "channels": [channel_payload(state, channel) for channel in channels],
        "threads": [channel_payload(state, thread) for thread in threads],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def message_payload(state: FakeState, message: FakeMessage, *, gateway: bool = False) -> dict[str, Any]:
    """A message object; ``gateway`` adds ``guild_id`` and ``member`` as MESSAGE_CREATE/UPDATE carry them."""
    if message.webhook_id is not None and message.interaction_metadata is None:
        author = {
            "id": str(message.webhook_id),
            "username": message.webhook_name or message.author.username,
            "global_name": None,
            "discriminator": "0000",
            "avatar": None,
            "bot": True,
            "public_flags": 0,
        }
    else:
        author = user_payload(message.author)
    guild = state.guilds.get(message.guild_id) if message.guild_id is not None else None
    payload: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "type": message.type,
        "author": author,
        "content": message.content,
        "timestamp": message.timestamp,
        "edited_timestamp": message.edited_timestamp,
        "tts": message.tts,
        "mention_everyone": message.mention_everyone,
        "mentions": [_mentioned_user(state, guild, user_id) for user_id in message.mentions if user_id in state.users],
        "mention_roles": [str(role_id) for role_id in message.mention_roles],
        "attachments": message.attachments,
        "embeds": message.embeds,
        "components": message.components,
        "pinned": False,
        "flags": message.flags,
    }
    if message.reactions:
        payload["reactions"] = [
            {
                "emoji": {"id": None, "name": emoji},
                "count": len(users),
                "me": state.bot_user.id in users,
                "count_details": {"burst": 0, "normal": len(users)},
                "burst_colors": [],
                "me_burst": False,
                "burst_me": False,
                "burst_count": 0,
            }
            for emoji, users in message.reactions.items()
            if users
        ]
    if message.nonce is not None:
        payload["nonce"] = message.nonce
    if message.webhook_id is not None:
        payload["webhook_id"] = str(message.webhook_id)
    if message.application_id is not None:
        payload["application_id"] = str(message.application_id)
    if message.interaction_metadata is not None:
        payload["interaction_metadata"] = message.interaction_metadata
    if message.message_reference is not None:
        payload["message_reference"] = message.message_reference
        referenced = state.messages.get(int(message.message_reference.get("message_id") or 0))
        if referenced is not None and message.type == MessageType.REPLY:  # Discord sends the replied-to message
            payload["referenced_message"] = message_payload(state, referenced)
    if message.thread_id is not None and message.thread_id in state.channels:
        payload["thread"] = channel_payload(state, state.channels[message.thread_id]) | {
            "guild_id": str(message.guild_id)
        }
    if gateway and guild is not None:
        payload["guild_id"] = str(guild.id)
        member = guild.members.get(message.author.id)
        if member is not None and message.webhook_id is None:
            payload["member"] = member_payload(state, member, with_user=False)
    return payload


def webhook_payload(state: FakeState, webhook: FakeWebhook) -> dict[str, Any]:
    """A webhook object, token included (the creator may see it)."""
    return {
        "id": str(webhook.id),
        "type": 1,
        "guild_id": str(webhook.guild_id),
        "channel_id": str(webhook.channel_id),
        "user": user_payload(state.users[webhook.creator_id]),
        "name": webhook.name,
        "avatar": webhook.avatar,
        "token": webhook.token,
        "application_id": None,
        "url": f"{state.api_base}/webhooks/{webhook.id}/{webhook.token}",
    }


def strip_content(payload: dict[str, Any]) -> dict[str, Any]:
    """The message as an app without the Message Content intent receives it."""
    return payload | {"content": "", "embeds": [], "attachments": [], "components": []}


def is_loading(message: FakeMessage) -> bool:
    """Whether the message is a deferred interaction's "thinking..." placeholder."""
    return bool(message.flags & MessageFlag.LOADING)


def _mentioned_user(state: FakeState, guild: FakeGuild | None, user_id: int) -> dict[str, Any]:
    payload = user_payload(state.users[user_id])
    if guild is not None and user_id in guild.members:
        payload["member"] = member_payload(state, guild.members[user_id], with_user=False)
    return payload


def _optional_id(value: int | None) -> str | None:
    return None if value is None else str(value)
