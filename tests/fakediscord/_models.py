"""The records the fake keeps in memory, and the protocol constants they use.

Records hold ids as ``int`` (as discord.py's objects do); the JSON payloads built from them in
``_payloads`` carry ids as strings, as Discord's do.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000


class ChannelType:
    """Channel ``type`` values used by the fake."""

    GUILD_TEXT = 0
    DM = 1
    GUILD_FORUM = 15
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    THREADS = (PUBLIC_THREAD, PRIVATE_THREAD)


class Intent:
    """Gateway intent bits."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class Permission:
    """Permission bits the fake hands out."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38

    EVERYONE = (
        CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | CHANGE_NICKNAME
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | CREATE_PRIVATE_THREADS
        | SEND_MESSAGES_IN_THREADS
    )
    BOT = EVERYONE | MANAGE_MESSAGES | MANAGE_WEBHOOKS | MANAGE_THREADS
    ALL = (1 << 51) - 1


class MessageFlag:
    """Message ``flags`` bits."""

    HAS_THREAD = 1 << 5
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


class MessageType:
    """Message ``type`` values."""

    DEFAULT = 0
    THREAD_CREATED = 18
    REPLY = 19
    CHAT_INPUT_COMMAND = 20
    CONTEXT_MENU_COMMAND = 23


class InteractionType:
    """Interaction ``type`` values."""

    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType:
    """Interaction callback ``type`` values."""

    PONG = 1
    CHANNEL_MESSAGE_WITH_SOURCE = 4
    DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class CommandType:
    """Application command ``type`` values."""

    CHAT_INPUT = 1
    USER = 2
    MESSAGE = 3


class OptionType:
    """Application command option ``type`` values."""

    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class SnowflakeFactory:
    """Makes real-looking, strictly increasing snowflakes from the wall clock."""

    def __init__(self) -> None:
        self._last = 0
        self._increment = itertools.count()

    def __call__(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (now_ms << 22) | (next(self._increment) & 0xFFF)
        self._last = max(candidate, self._last + 1)
        return self._last


def iso_now() -> str:
    """The current time as Discord's ISO 8601 timestamps spell it."""
    return datetime.now(UTC).isoformat()


@dataclass(eq=False)
class FakeUser:
    """A Discord user (or the bot user)."""

    id: int
    username: str
    display_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        """The ``<@id>`` mention string."""
        return f"<@{self.id}>"


@dataclass(eq=False)
class FakeRole:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False


@dataclass(eq=False)
class FakeMember:
    """A user's membership in one guild."""

    user: FakeUser
    guild_id: int
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)


@dataclass(eq=False)
class FakeGuild:
    """A guild with its roles, members and (non-thread) channel ids."""

    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)


@dataclass(eq=False)
class FakeChannel:
    """A text channel, a public or private thread, or a DM channel."""

    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    recipient_id: int | None = None
    position: int = 0
    member_ids: set[int] = field(default_factory=set)
    archived: bool = False
    locked: bool = False
    invitable: bool = True
    overwrites: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Permission overwrites by role or member id: ``(allow, deny)`` bits (threads use their parent's)."""
    auto_archive_duration: int = 1440
    nsfw: bool = False
    """Age-restricted (text channels; a thread is as its parent)."""
    created_at: str = field(default_factory=iso_now)
    last_message_id: int | None = None
    message_count: int = 0

    @property
    def is_thread(self) -> bool:
        """Whether this is a public or private thread."""
        return self.type in ChannelType.THREADS

    @property
    def is_dm(self) -> bool:
        """Whether this is a DM channel."""
        return self.type == ChannelType.DM


@dataclass(eq=False)
class MessageVersion:
    """One content version of a message: the original or an edit."""

    content: str
    at: float
    """``time.monotonic()`` when the version landed."""
    edited_timestamp: str | None
    mentions: list[int]
    """Users this version pinged, after ``allowed_mentions``."""
    mention_everyone: bool
    components: list[Any]
    embeds: list[Any]

    def as_dict(self) -> dict[str, Any]:
        """The version as the plain dict tests read."""
        return {
            "content": self.content,
            "at": self.at,
            "edited_timestamp": self.edited_timestamp,
            "mentions": [str(user_id) for user_id in self.mentions],
            "mention_everyone": self.mention_everyone,
            "components": self.components,
            "embeds": self.embeds,
        }


@dataclass(eq=False)
class FakeMessage:
    """A message with its full content history."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str
    type: int = MessageType.DEFAULT
    flags: int = 0
    embeds: list[Any] = field(default_factory=list)
    components: list[Any] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    tts: bool = False
    nonce: str | int | None = None
    webhook_id: int | None = None
    webhook_name: str | None = None
    avatar_url: str | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    message_reference: dict[str, Any] | None = None
    thread_id: int | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    versions: list[MessageVersion] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        """Whether only the interaction's user can see this message."""
        return bool(self.flags & MessageFlag.EPHEMERAL)


@dataclass(eq=False)
class FakeWebhook:
    """A channel webhook (type 1, incoming)."""

    id: int
    token: str
    channel_id: int
    guild_id: int
    name: str
    creator_id: int
    avatar: str | None = None


@dataclass(eq=False)
class RegisteredCommand:
    """An application command as Discord stores it after a sync."""

    payload: dict[str, Any]
    guild_id: int | None

    @property
    def id(self) -> int:
        """The command id."""
        return int(self.payload["id"])

    @property
    def name(self) -> str:
        """The command name."""
        return str(self.payload["name"])

    @property
    def type(self) -> int:
        """The command type (1 chat input, 2 user, 3 message)."""
        return int(self.payload.get("type", CommandType.CHAT_INPUT))


@dataclass(frozen=True)
class RecordedRequest:
    """One REST request the fake received, with the status it answered."""

    method: str
    path: str
    """The path after the API base, e.g. ``/channels/1/messages``."""
    json: Any
    """The JSON body; for multipart bodies the parsed ``payload_json`` part; else ``None``."""
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    at: float = 0.0
    """``time.monotonic()`` when the request arrived."""
    files: tuple[str, ...] = ()
    """File names of a multipart body's ``files[n]`` parts."""
