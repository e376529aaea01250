"""What Discord knows and does: guilds, channels, members, messages, webhooks, commands.

Every mutation validates like Discord (2000-character messages, 1-100 character thread
names, webhook names without "discord"/"clyde"), dispatches the gateway events Discord would
send, and wakes :meth:`FakeState.wait_for`. The REST layer and the test-side driving API
both go through these methods, so a test's user and the bot see one consistent world.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _payloads
from ._errors import ApiError, invalid_form, unknown
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
    MessageVersion,
    Permission,
    RecordedRequest,
    RegisteredCommand,
    SnowflakeFactory,
    iso_now,
)

if TYPE_CHECKING:
    from ._gateway import Gateway
    from ._interactions import InteractionHandle

T = TypeVar("T")

MAX_CONTENT = 2000
MAX_PERSON_CONTENT = 4000
"""What a person (with Nitro) may send; bots and webhooks are held to MAX_CONTENT."""
MAX_EMBEDS = 10
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_EVERYONE_MENTION = re.compile(r"@(everyone|here)\b")
_FORBIDDEN_WEBHOOK_NAMES = ("discord", "clyde")
MAX_WEBHOOKS_PER_CHANNEL = 15
_ALLOWED_MESSAGE_FLAGS = 1 << 2 | MessageFlag.EPHEMERAL | 1 << 12 | 1 << 15
"""SUPPRESS_EMBEDS, EPHEMERAL (interactions only), SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2."""


class FakeState:
    """The fake's whole world, in memory."""

    def __init__(self, *, token: str, bot_name: str, interaction_deadline: float) -> None:
        self.snowflake = SnowflakeFactory()
        self.token = token
        self.api_base = ""
        """Set by the server once it is listening."""
        self.interaction_deadline = interaction_deadline
        self.interaction_token_ttl = 15 * 60.0
        self.application_id = self.snowflake()
        self.bot_user = FakeUser(self.application_id, bot_name, None, bot=True)
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.webhooks: dict[int, FakeWebhook] = {}
        self.commands: dict[int | None, list[RegisteredCommand]] = {None: []}
        self.interactions: dict[int, InteractionHandle] = {}
        self.requests: list[RecordedRequest] = []
        self.typing: list[tuple[int, float]] = []
        self.edit_log: list[tuple[int, int, float]] = []
        """``(channel_id, message_id, time.monotonic())`` for every edit that landed."""
        self.attachment_files: dict[int, bytes] = {}
        self.attachment_downloads: list[int] = []
        """Ids of the attachments fetched from the CDN, in order."""
        self.left_guilds: list[int] = []
        """Guilds the bot left (``DELETE /users/@me/guilds/{id}``), in order."""
        self.max_active_threads = 1000
        """Discord caps a guild's active threads (1000); past it, creating one fails with 160006."""
        self.gateway: Gateway | None = None
        self._change = asyncio.Event()
        self._collectors: list[list[asyncio.Future[None]]] = []

    # -- change notification -------------------------------------------------------------

    def changed(self) -> None:
        """Wake every :meth:`wait_for`; called after each state change."""
        event, self._change = self._change, asyncio.Event()
        event.set()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str = "") -> T:  # noqa: ASYNC109
        """Return the first truthy ``predicate()``, re-checked on every state change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    change = self._change
                    result = predicate()
                    if result:
                        return result
                    await change.wait()
        except TimeoutError:
            recent = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:])
            raise TimeoutError(
                f"fake Discord: {what or 'condition'} not met within {timeout}s; last requests: [{recent}]"
            ) from None

    def dispatch(self, event: str, payload: dict[str, Any], *, guild_id: int | None) -> list[asyncio.Future[None]]:
        """Send a gateway event to every connected client that should see it."""
        if self.gateway is None:
            return []
        written = self.gateway.dispatch(event, payload, guild_id=guild_id)
        for collected in self._collectors:
            collected.extend(written)
        return written

    @contextlib.contextmanager
    def collect_dispatches(self) -> Iterator[list[asyncio.Future[None]]]:
        """Collect the write futures of every event dispatched inside the block."""
        collected: list[asyncio.Future[None]] = []
        self._collectors.append(collected)
        try:
            yield collected
        finally:
            self._collectors.remove(collected)

    # -- people and places ---------------------------------------------------------------

    def add_user(self, username: str, display_name: str | None = None, *, bot: bool = False) -> FakeUser:
        """Create a user that belongs to no guild yet."""
        user = FakeUser(self.snowflake(), username, display_name, bot=bot)
        self.users[user.id] = user
        self.changed()
        return user

    def add_guild(self, name: str) -> FakeGuild:
        """Create a guild with an @everyone role, an owner, and the bot as a member with a managed bot role.

        The owner is a separate member ("owner"), since Discord gives a guild's owner every
        permission and the people tests add should have only the permissions they are given.
        """
        owner = self.add_user("owner", "Server Owner")
        guild = FakeGuild(self.snowflake(), name, owner_id=owner.id)
        guild.roles[guild.id] = FakeRole(guild.id, guild.id, "@everyone", Permission.EVERYONE)
        bot_role = FakeRole(
            self.snowflake(), guild.id, self.bot_user.username, Permission.BOT, position=1, managed=True
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[owner.id] = FakeMember(owner, guild.id)
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, guild.id, [bot_role.id])
        self.guilds[guild.id] = guild
        if self.gateway is not None:
            self.gateway.guild_joined(guild)
        self.changed()
        return guild

    def add_role(self, guild: FakeGuild, name: str, permissions: int) -> FakeRole:
        """Create a role in ``guild``."""
        role = FakeRole(self.snowflake(), guild.id, name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self.dispatch(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": _payloads.role_payload(role)}, guild_id=guild.id
        )
        self.changed()
        return role

    def add_member(self, guild: FakeGuild, user: FakeUser, role_ids: Iterable[int] = ()) -> FakeMember:
        """Make ``user`` a member of ``guild``."""
        member = FakeMember(user, guild.id, list(role_ids))
        guild.members[user.id] = member
        payload = _payloads.member_payload(self, member) | {"guild_id": str(guild.id)}
        self.dispatch("GUILD_MEMBER_ADD", payload, guild_id=guild.id)
        self.changed()
        return member

    def add_text_channel(
        self, guild: FakeGuild, name: str, *, nsfw: bool = False, type: int = ChannelType.GUILD_TEXT
    ) -> FakeChannel:
        """Create a text channel in ``guild`` (``nsfw``: age-restricted; ``type``: a forum, say)."""
        channel = FakeChannel(
            self.snowflake(),
            type,
            name,
            guild_id=guild.id,
            position=len(guild.channel_ids),
            nsfw=nsfw,
        )
        self.channels[channel.id] = channel
        guild.channel_ids.append(channel.id)
        self.dispatch("CHANNEL_CREATE", _payloads.channel_payload(self, channel), guild_id=guild.id)
        self.changed()
        return channel

    def leave_guild(self, guild_id: int) -> None:
        """The bot leaves a guild: GUILD_DELETE to its clients, then the guild is gone from the bot's world."""
        if guild_id not in self.guilds:
            raise unknown("guild")
        self.dispatch("GUILD_DELETE", {"id": str(guild_id)}, guild_id=guild_id)
        del self.guilds[guild_id]
        self.left_guilds.append(guild_id)
        self.changed()

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user``, created on first use."""
        for channel in self.channels.values():
            if channel.is_dm and channel.recipient_id == user.id:
                return channel
        channel = FakeChannel(self.snowflake(), ChannelType.DM, recipient_id=user.id)
        channel.member_ids = {user.id, self.bot_user.id}
        self.channels[channel.id] = channel
        self.changed()
        return channel

    def permissions(self, guild_id: int, user_id: int) -> int:
        """The member's guild-level permissions (no channel overwrites are modelled); owners and admins get all."""
        guild = self.guilds[guild_id]
        member = guild.members[user_id]
        value = guild.roles[guild.id].permissions
        for role_id in member.role_ids:
            value |= guild.roles[role_id].permissions
        if user_id == guild.owner_id or value & Permission.ADMINISTRATOR:
            return Permission.ALL
        return value

    def permissions_in(self, channel: FakeChannel, user_id: int) -> int:
        """The member's permissions in a channel: guild roles, then the channel's overwrites, as Discord computes.

        A thread has its parent's permissions; in a DM everything a DM allows.
        """
        if channel.is_dm:
            return Permission.EVERYONE
        assert channel.guild_id is not None
        base = self.permissions(channel.guild_id, user_id)
        if base == Permission.ALL:
            return base
        source = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        guild = self.guilds[channel.guild_id]
        member = guild.members[user_id]
        everyone = source.overwrites.get(guild.id, (0, 0))
        base = (base & ~everyone[1]) | everyone[0]
        allow = deny = 0
        for role_id in member.role_ids:
            role_allow, role_deny = source.overwrites.get(role_id, (0, 0))
            allow, deny = allow | role_allow, deny | role_deny
        base = (base & ~deny) | allow
        member_allow, member_deny = source.overwrites.get(user_id, (0, 0))
        return (base & ~member_deny) | member_allow

    def delete_thread(self, thread: FakeChannel) -> None:
        """Delete a thread and its messages, dispatching THREAD_DELETE."""
        del self.channels[thread.id]
        for message_id in [m.id for m in self.messages.values() if m.channel_id == thread.id]:
            del self.messages[message_id]
        payload = {
            "id": str(thread.id),
            "guild_id": str(thread.guild_id),
            "parent_id": str(thread.parent_id),
            "type": thread.type,
        }
        self.dispatch("THREAD_DELETE", payload, guild_id=thread.guild_id)
        self.changed()

    def can_view(self, user_id: int, channel: FakeChannel) -> bool:
        """Whether the user sees the channel: DMs are private, private threads need membership or Manage Threads."""
        if channel.is_dm:
            return user_id in channel.member_ids
        assert channel.guild_id is not None
        if user_id not in self.guilds[channel.guild_id].members:
            return False
        if channel.type == ChannelType.PRIVATE_THREAD:
            return user_id in channel.member_ids or bool(
                self.permissions(channel.guild_id, user_id) & Permission.MANAGE_THREADS
            )
        return True

    def channel(self, channel_id: int | str) -> FakeChannel:
        """The channel with this id, or a 404 Unknown Channel."""
        try:
            return self.channels[int(channel_id)]
        except (KeyError, ValueError):
            raise unknown("channel") from None

    def message(self, channel_id: int | str | None, message_id: int | str) -> FakeMessage:
        """The message with this id (in this channel, if given), or a 404 Unknown Message."""
        try:
            message = self.messages[int(message_id)]
        except (KeyError, ValueError):
            raise unknown("message") from None
        if channel_id is not None and message.channel_id != int(channel_id):
            raise unknown("message")
        return message

    # -- messages ------------------------------------------------------------------------

    def create_message(
        self,
        channel: FakeChannel,
        author: FakeUser,
        body: dict[str, Any],
        *,
        files: Iterable[tuple[str, bytes, str | None]] = (),
        type: int = MessageType.DEFAULT,
        webhook: FakeWebhook | None = None,
        interaction: InteractionHandle | None = None,
        allow_ephemeral: bool = False,
        message_id: int | None = None,
    ) -> FakeMessage:
        """Validate a message-create body (REST JSON shape) and post it, dispatching MESSAGE_CREATE."""
        files = list(files)
        content = _content(body.get("content"))
        embeds = list(body.get("embeds") or [])
        components = list(body.get("components") or [])
        flags = int(body.get("flags") or 0)
        _check_content(content, embeds, MAX_CONTENT if author.bot else MAX_PERSON_CONTENT)
        if not allow_ephemeral:
            flags &= ~MessageFlag.EPHEMERAL
        if flags & ~(_ALLOWED_MESSAGE_FLAGS | MessageFlag.LOADING):
            raise invalid_form("flags", "MESSAGE_FLAGS_INVALID", "Invalid flags")
        has_body = content.strip() or embeds or components or files or body.get("sticker_ids") or body.get("poll")
        if not has_body and not flags & MessageFlag.LOADING:
            raise ApiError(400, 50006, "Cannot send an empty message")
        message = FakeMessage(
            id=message_id or self.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            type=type,
            flags=flags,
            embeds=embeds,
            components=components,
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
        )
        message.attachments = [self._store_attachment(channel, name, data, ctype) for name, data, ctype in files]
        reference = body.get("message_reference")
        replied_user: int | None = None
        if reference:
            referenced = self.message(None, reference["message_id"])
            message.type = MessageType.REPLY if type == MessageType.DEFAULT else type
            message.message_reference = {
                "type": 0,
                "message_id": str(referenced.id),
                "channel_id": str(referenced.channel_id),
                "guild_id": None if referenced.guild_id is None else str(referenced.guild_id),
            }
            replied_user = referenced.author.id
        if webhook is not None:
            message.webhook_id = webhook.id
            message.webhook_name = body.get("username") or webhook.name
            message.avatar_url = body.get("avatar_url")
        if interaction is not None:
            message.webhook_id = self.application_id
            message.application_id = self.application_id
            message.interaction_metadata = interaction.metadata()
        self._apply_mentions(message, body.get("allowed_mentions"), replied_user)
        message.versions.append(self._version(message))
        self.messages[message.id] = message
        if not message.ephemeral:
            channel.last_message_id = message.id
            if channel.is_thread:
                channel.message_count += 1
            self._add_pinged_to_private_thread(channel, message)
            self._dispatch_message("MESSAGE_CREATE", message)
        self.changed()
        return message

    def edit_message(
        self,
        message: FakeMessage,
        body: dict[str, Any],
        *,
        files: Iterable[tuple[str, bytes, str | None]] = (),
        clear_loading: bool = False,
    ) -> FakeMessage:
        """Apply a message-edit body, record the new version, dispatch MESSAGE_UPDATE."""
        content = _content(body["content"]) if "content" in body else message.content
        embeds = list(body["embeds"] or []) if "embeds" in body else message.embeds
        components = list(body["components"] or []) if "components" in body else message.components
        _check_content(content, embeds)
        if "attachments" in body:
            # Attachments not listed by id are removed; new files are added.
            kept = {str(a.get("id")) for a in body["attachments"] or []}
            message.attachments = [a for a in message.attachments if a["id"] in kept]
        channel = self.channels[message.channel_id]
        message.attachments += [self._store_attachment(channel, name, data, ctype) for name, data, ctype in files]
        if not (content.strip() or embeds or components or message.attachments):
            raise ApiError(400, 50006, "Cannot send an empty message")
        message.content, message.embeds, message.components = content, embeds, components
        if "flags" in body and body["flags"] is not None:
            keep = message.flags & (MessageFlag.EPHEMERAL | MessageFlag.HAS_THREAD | MessageFlag.LOADING)
            message.flags = keep | (int(body["flags"]) & _ALLOWED_MESSAGE_FLAGS & ~MessageFlag.EPHEMERAL)
        if clear_loading:
            message.flags &= ~MessageFlag.LOADING
        if not _payloads.is_loading(message):
            message.edited_timestamp = iso_now()
        # Discord re-parses mentions on every edit; without allowed_mentions the defaults ping.
        self._apply_mentions(message, body.get("allowed_mentions"), None)
        message.versions.append(self._version(message))
        self.edit_log.append((message.channel_id, message.id, message.versions[-1].at))
        if not message.ephemeral:
            self._add_pinged_to_private_thread(channel, message)
            self._dispatch_message("MESSAGE_UPDATE", message)
        self.changed()
        return message

    def delete_message(self, message: FakeMessage) -> None:
        """Delete a message, dispatching MESSAGE_DELETE."""
        del self.messages[message.id]
        if not message.ephemeral:
            payload: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                payload["guild_id"] = str(message.guild_id)
            self.dispatch("MESSAGE_DELETE", payload, guild_id=message.guild_id)
        self.changed()

    def set_reaction(self, message: FakeMessage, emoji: str, user_id: int, *, present: bool) -> None:
        """Add or remove one user's reaction."""
        users = message.reactions.setdefault(emoji, set())
        if present:
            users.add(user_id)
        else:
            users.discard(user_id)
        self.changed()

    def message_dict(self, message: FakeMessage) -> dict[str, Any]:
        """The message as tests read it: the REST payload plus ``edits`` (every content version)."""
        payload = _payloads.message_payload(self, message)
        payload["edits"] = [version.as_dict() for version in message.versions]
        if message.avatar_url is not None:
            payload["avatar_url"] = message.avatar_url
        return copy.deepcopy(payload)  # a snapshot: tests must not reach into the fake's state

    def _dispatch_message(self, event: str, message: FakeMessage) -> None:
        self.dispatch(event, _payloads.message_payload(self, message, gateway=True), guild_id=message.guild_id)

    def _version(self, message: FakeMessage) -> MessageVersion:
        return MessageVersion(
            content=message.content,
            at=time.monotonic(),
            edited_timestamp=message.edited_timestamp,
            mentions=list(message.mentions),
            mention_everyone=message.mention_everyone,
            components=message.components,
            embeds=message.embeds,
        )

    def _apply_mentions(self, message: FakeMessage, allowed: dict[str, Any] | None, replied_user: int | None) -> None:
        parse = ["users", "roles", "everyone"] if allowed is None else list(allowed.get("parse") or [])
        allowed_users = {int(u) for u in (allowed or {}).get("users") or []}
        allowed_roles = {int(r) for r in (allowed or {}).get("roles") or []}
        users: list[int] = []
        for match in _USER_MENTION.finditer(message.content):
            user_id = int(match.group(1))
            if ("users" in parse or user_id in allowed_users) and user_id in self.users and user_id not in users:
                users.append(user_id)
        if replied_user is not None and (allowed is None or allowed.get("replied_user")) and replied_user not in users:
            users.append(replied_user)
        roles = [
            int(m.group(1))
            for m in _ROLE_MENTION.finditer(message.content)
            if "roles" in parse or int(m.group(1)) in allowed_roles
        ]
        message.mentions = users
        message.mention_roles = roles
        message.mention_everyone = "everyone" in parse and bool(_EVERYONE_MENTION.search(message.content))

    def _add_pinged_to_private_thread(self, channel: FakeChannel, message: FakeMessage) -> None:
        # Mentioning someone in a private thread adds them to it, as on Discord.
        if channel.type == ChannelType.PRIVATE_THREAD:
            channel.member_ids.update(message.mentions)

    def _store_attachment(
        self, channel: FakeChannel, filename: str, data: bytes, content_type: str | None
    ) -> dict[str, Any]:
        attachment_id = self.snowflake()
        self.attachment_files[attachment_id] = data
        url = f"{self.api_base.rsplit('/api/', 1)[0]}/attachments/{channel.id}/{attachment_id}/{filename}"
        payload: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        if content_type:
            payload["content_type"] = content_type
        return payload

    # -- threads -------------------------------------------------------------------------

    def create_thread(
        self,
        parent: FakeChannel,
        owner: FakeUser,
        *,
        name: Any,
        type: int,
        from_message: FakeMessage | None = None,
        auto_archive_duration: int | None = None,
        invitable: bool = True,
        starter: dict[str, Any] | None = None,
        files: Iterable[tuple[str, bytes, str | None]] = (),
    ) -> FakeChannel:
        """Start a thread (from a message: the thread gets the message's id), dispatching THREAD_CREATE.

        In a forum a thread is a post: it needs ``starter`` (the message body it opens with), is public, and its
        first message, inside it, has the thread's id.
        """
        forum = parent.type == ChannelType.GUILD_FORUM
        if parent.type != ChannelType.GUILD_TEXT and not forum:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if forum and (starter is None or from_message is not None):
            raise invalid_form("message", "BASE_TYPE_REQUIRED", "A forum post needs a message.")
        if forum:
            type = ChannelType.PUBLIC_THREAD
        name = check_channel_name(name)
        if type not in ChannelType.THREADS:
            raise invalid_form("type", "BASE_TYPE_CHOICES", f"Value must be one of {ChannelType.THREADS}.")
        if auto_archive_duration not in (None, 60, 1440, 4320, 10080):
            raise invalid_form(
                "auto_archive_duration", "BASE_TYPE_CHOICES", "Value must be one of (60, 1440, 4320, 10080)."
            )
        active = [c for c in self.channels.values() if c.guild_id == parent.guild_id and c.is_thread and not c.archived]
        if len(active) >= self.max_active_threads:
            raise ApiError(400, 160006, "Maximum number of active threads reached")
        if from_message is not None:
            if from_message.thread_id is not None:
                raise ApiError(400, 160004, "A thread has already been created for this message")
            thread_id = from_message.id
            type = ChannelType.PUBLIC_THREAD
        else:
            thread_id = self.snowflake()
        thread = FakeChannel(
            thread_id,
            type,
            name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner.id,
            invitable=invitable if type == ChannelType.PRIVATE_THREAD else True,
            auto_archive_duration=auto_archive_duration or 1440,
        )
        thread.member_ids = {owner.id}
        self.channels[thread.id] = thread
        if from_message is not None:
            from_message.thread_id = thread.id
            from_message.flags |= MessageFlag.HAS_THREAD
        payload = _payloads.channel_payload(self, thread) | {"newly_created": True}
        self.dispatch("THREAD_CREATE", payload, guild_id=thread.guild_id)
        if forum:
            assert starter is not None
            self.create_message(thread, owner, starter, files=files, message_id=thread.id)
        elif from_message is None and type == ChannelType.PUBLIC_THREAD:
            # Discord announces a public thread started without a message in its parent channel.
            notice = self.create_message(parent, owner, {"content": name}, type=MessageType.THREAD_CREATED)
            notice.message_reference = {"channel_id": str(thread.id), "guild_id": str(thread.guild_id)}
        self.changed()
        return thread

    def add_thread_member(self, thread: FakeChannel, user_id: int) -> None:
        """Add a user to a thread."""
        if not thread.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if user_id not in self.users:
            raise unknown("user")
        thread.member_ids.add(user_id)
        self.changed()

    def update_channel(self, channel: FakeChannel, body: dict[str, Any]) -> FakeChannel:
        """Rename, archive or lock a thread (or rename a channel), dispatching THREAD_UPDATE / CHANNEL_UPDATE."""
        if "name" in body:
            channel.name = check_channel_name(body["name"])
        if channel.is_thread:
            channel.archived = bool(body.get("archived", channel.archived))
            channel.locked = bool(body.get("locked", channel.locked))
            channel.invitable = bool(body.get("invitable", channel.invitable))
        event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
        self.dispatch(event, _payloads.channel_payload(self, channel), guild_id=channel.guild_id)
        self.changed()
        return channel

    # -- webhooks ------------------------------------------------------------------------

    def create_webhook(self, channel: FakeChannel, name: Any, creator: FakeUser) -> FakeWebhook:
        """Create a channel webhook; names with "discord" or "clyde" are refused, as on Discord, and so is a 16th."""
        if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_FORUM) or channel.guild_id is None:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        check_webhook_name(name, "name")
        if sum(1 for w in self.webhooks.values() if w.channel_id == channel.id) >= MAX_WEBHOOKS_PER_CHANNEL:
            raise ApiError(400, 30007, f"Maximum number of webhooks reached ({MAX_WEBHOOKS_PER_CHANNEL})")
        webhook = FakeWebhook(
            self.snowflake(), secrets.token_urlsafe(48), channel.id, channel.guild_id, name, creator.id
        )
        self.webhooks[webhook.id] = webhook
        self.changed()
        return webhook

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook (its messages stay); later calls with it get 404 Unknown Webhook (10015)."""
        if self.webhooks.pop(int(webhook_id), None) is None:
            raise unknown("webhook")
        self.changed()

    # -- application commands ------------------------------------------------------------

    def set_commands(self, guild_id: int | None, commands: list[RegisteredCommand]) -> None:
        """Replace the commands registered in one scope (None: global)."""
        self.commands[guild_id] = commands
        self.changed()

    def find_command(self, name: str, guild_id: int | None, type: int) -> RegisteredCommand:
        """The registered command a user in ``guild_id`` (None: a DM) would see under ``name``."""
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command.name == name and command.type == type:
                    return command
        known = sorted(f"{c.name} (type {c.type})" for scope in scopes for c in self.commands.get(scope, []))
        raise LookupError(f"no command {name!r} of type {type} is synced for guild {guild_id}; synced: {known}")


def check_channel_name(name: Any) -> str:
    """A channel or thread name as Discord keeps it: trimmed of whitespace, then 1-100 characters (else 400)."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
        raise invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return name.strip()


def check_webhook_name(name: Any, field: str) -> None:
    """Discord's webhook name rules: 1-80 characters, no "discord" or "clyde"."""
    if not isinstance(name, str) or not 1 <= len(name) <= 80:
        raise invalid_form(field, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length.")
    lowered = name.lower()
    for word in _FORBIDDEN_WEBHOOK_NAMES:
        if word in lowered:
            raise invalid_form(field, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{word}"')


def _content(value: Any) -> str:
    return "" if value is None else str(value)


def _check_content(content: str, embeds: list[Any], limit: int = MAX_CONTENT) -> None:
    if len(content) > limit:
        raise invalid_form("content", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    if len(embeds) > MAX_EMBEDS:
        raise invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
