"""``FakeDiscord``: the server on loopback and the API tests drive it with."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from . import _commands
from ._gateway import Gateway, GatewaySession
from ._interactions import InteractionHandle
from ._limits import RouteLimits
from ._models import (
    ChannelType,
    CommandType,
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    FakeWebhook,
    InteractionType,
    Permission,
    RecordedRequest,
)
from ._payloads import channel_payload, member_payload, message_payload, user_payload
from ._rest import API_PREFIX, Injection, RestApi
from ._state import FakeState

T = TypeVar("T")

_DISPATCH_TIMEOUT = 5.0


class FakeDiscord:
    """A Discord REST API and gateway on 127.0.0.1 for the real discord.py client.

    Use ``async with FakeDiscord() as fake:`` and point discord.py at ``fake.api_base`` and
    ``fake.gateway_url``; log in with ``fake.token``. With ``defaults=True`` the world starts
    with one guild (``fake.guild``, owned by a separate "owner" member), one text channel
    (``fake.channel``) and two members: ``fake.alice`` (plain member) and ``fake.bob`` (has
    Manage Messages through a "Moderator" role).

    Like Discord it closes an IDENTIFY asking for a privileged intent the app lacks
    (``allowed_intents``, default: all allowed) with 4014, and answers more than
    ``global_rate_limit`` bot-token requests a second (default 50, None for no limit) with a
    global 429, counted in :attr:`global_limit_hits`. With ``route_rate_limits`` it also keeps
    Discord's per-channel buckets for sending and editing messages (5 per 5 s each), says so in
    every response's ``X-RateLimit-*`` headers as Discord does, and answers a request past one
    with a route 429, counted in :attr:`route_limit_hits`.
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_name: str = "FakeBot",
        defaults: bool = True,
        interaction_deadline: float = 3.0,
        heartbeat_interval_ms: int = 41_250,
        allowed_intents: int | None = None,
        shard_count: int = 1,
        global_rate_limit: int | None = 50,
        route_rate_limits: bool = False,
    ) -> None:
        self._state = FakeState(token=token, bot_name=bot_name, interaction_deadline=interaction_deadline)
        self._gateway = Gateway(
            self._state, heartbeat_interval_ms=heartbeat_interval_ms, allowed_intents=allowed_intents
        )
        self._gateway.shard_count = shard_count
        self._state.gateway = self._gateway
        self._rest = RestApi(
            self._state,
            self._gateway,
            global_rate_limit=global_rate_limit,
            route_limits=RouteLimits() if route_rate_limits else None,
        )
        self._runner: web.AppRunner | None = None
        self.api_base = ""
        """REST base for ``configure_endpoints``, e.g. ``http://127.0.0.1:PORT/api/v10``; set by :meth:`start`."""
        self.gateway_url = ""
        """Gateway URL for ``configure_endpoints``, e.g. ``ws://127.0.0.1:PORT/gateway``; set by :meth:`start`."""
        if defaults:
            self.guild: FakeGuild = self.add_guild("Test Guild")
            self.channel: FakeChannel = self.add_text_channel(self.guild, "general")
            self.alice: FakeUser = self.add_member(self.guild, "alice", "Alice")
            self.bob: FakeUser = self.add_member(self.guild, "bob", "Bob", manage_messages=True)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve."""
        app = web.Application()
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest.handle)
        app.router.add_get("/gateway", self._gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._rest.serve_attachment)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.api_base = f"http://127.0.0.1:{port}{API_PREFIX}"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        self._state.api_base = self.api_base
        self._gateway.gateway_url = self.gateway_url
        return self

    async def close(self) -> None:
        """Close every gateway socket and stop serving. Close your clients first."""
        await self._gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- identity ------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The bot token the fake accepts."""
        return self._state.token

    @property
    def bot_user(self) -> FakeUser:
        """The bot's user (its id is the application id)."""
        return self._state.bot_user

    @property
    def application_id(self) -> int:
        """The application id."""
        return self._state.application_id

    @property
    def interaction_deadline(self) -> float:
        """Seconds the bot has to acknowledge an interaction (Discord: 3) before 10062 Unknown interaction."""
        return self._state.interaction_deadline

    @interaction_deadline.setter
    def interaction_deadline(self, seconds: float) -> None:
        self._state.interaction_deadline = seconds

    @property
    def global_rate_limit(self) -> int | None:
        """Bot-token REST requests a second before a global 429 (Discord: 50); None turns the limit off."""
        return self._rest.global_rate_limit

    @global_rate_limit.setter
    def global_rate_limit(self, per_second: int | None) -> None:
        self._rest.global_rate_limit = per_second

    @property
    def advertised_gateway_url(self) -> str | None:
        """The URL ``GET /gateway`` and ``/gateway/bot`` answer; None (default) means :attr:`gateway_url`."""
        return self._gateway.advertised_url

    @advertised_gateway_url.setter
    def advertised_gateway_url(self, url: str | None) -> None:
        self._gateway.advertised_url = url

    # -- building the world --------------------------------------------------------------

    def add_guild(self, name: str) -> FakeGuild:
        """Create a guild the bot is in (GUILD_CREATE goes to connected clients)."""
        return self._state.add_guild(name)

    def add_text_channel(self, guild: FakeGuild, name: str, *, nsfw: bool = False) -> FakeChannel:
        """Create a text channel (``nsfw``: age-restricted)."""
        return self._state.add_text_channel(guild, name, nsfw=nsfw)

    def add_forum_channel(self, guild: FakeGuild, name: str) -> FakeChannel:
        """Create a forum channel: its threads are posts, each opened with a message."""
        return self._state.add_text_channel(guild, name, type=ChannelType.GUILD_FORUM)

    def add_user(self, username: str, display_name: str | None = None) -> FakeUser:
        """Create a user in no guild (someone who can only DM the bot)."""
        return self._state.add_user(username, display_name)

    def add_role(self, guild: FakeGuild, name: str, permissions: int) -> FakeRole:
        """Create a role with these permission bits."""
        return self._state.add_role(guild, name, permissions)

    def add_member(
        self, guild: FakeGuild, username: str, display_name: str | None = None, *, manage_messages: bool = False
    ) -> FakeUser:
        """Create a user and make them a member; ``manage_messages`` gives them a "Moderator" role with it."""
        user = self._state.add_user(username, display_name)
        roles = []
        if manage_messages:
            moderator = next((r for r in guild.roles.values() if r.name == "Moderator"), None)
            if moderator is None:
                moderator = self._state.add_role(guild, "Moderator", Permission.EVERYONE | Permission.MANAGE_MESSAGES)
            roles.append(moderator.id)
        self._state.add_member(guild, user, roles)
        return user

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The DM channel between the bot and ``user`` (created on first use)."""
        return self._state.dm_channel(user)

    def add_thread_member(self, thread_id: int | str, user: FakeUser) -> None:
        """Add ``user`` to a thread (as someone with access adding them would)."""
        self._state.add_thread_member(self._state.channel(thread_id), user.id)

    # -- reading state -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request received, in order."""
        return self._state.requests

    @property
    def left_guilds(self) -> list[int]:
        """Ids of the guilds the bot left (``DELETE /users/@me/guilds/{id}``), in order."""
        return self._state.left_guilds

    @property
    def global_limit_hits(self) -> int:
        """How many requests were answered with a global 429 for going over :attr:`global_rate_limit`."""
        return self._rest.global_limit_hits

    @property
    def route_limit_hits(self) -> int:
        """How many requests were answered with a route 429 (always 0 without ``route_rate_limits``)."""
        return self._rest.route_limits.hits if self._rest.route_limits is not None else 0

    @property
    def unhandled(self) -> list[RecordedRequest]:
        """Requests for paths/methods the fake does not serve (answered 404/405)."""
        return self._rest.unhandled

    @property
    def attachment_downloads(self) -> list[int]:
        """Ids of the attachments a client fetched from the CDN, in order."""
        return self._state.attachment_downloads

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches (``*`` for any) and whose path matches the regex in full."""
        pattern = re.compile(path_pattern)
        return [r for r in self.requests if method in ("*", r.method) and pattern.fullmatch(r.path)]

    def get_channel(self, channel_id: int | str) -> FakeChannel:
        """The channel, thread or DM channel with this id."""
        return self._state.channel(channel_id)

    def messages_in(self, channel_id: int | str) -> list[dict[str, Any]]:
        """Messages in a channel, oldest first, ephemeral ones included (``flags & 64``).

        Each is the REST message payload plus ``edits``: every content version, the original
        first, as ``{"content", "at" (time.monotonic()), "edited_timestamp", "mentions", ...}``.
        Webhook messages also carry the ``avatar_url`` they were posted with.
        """
        channel_id = int(channel_id)
        return [self._state.message_dict(m) for m in self._state.messages.values() if m.channel_id == channel_id]

    def message(self, message_id: int | str) -> dict[str, Any]:
        """One message as :meth:`messages_in` shows it."""
        return self._state.message_dict(self._state.message(None, message_id))

    @property
    def threads(self) -> list[FakeChannel]:
        """Every thread, oldest first."""
        return [c for c in self._state.channels.values() if c.is_thread]

    @property
    def webhooks(self) -> list[FakeWebhook]:
        """Every channel webhook."""
        return list(self._state.webhooks.values())

    @property
    def interactions(self) -> list[InteractionHandle]:
        """Every interaction dispatched, oldest first."""
        return list(self._state.interactions.values())

    def commands(self, guild_id: int | str | None = None) -> list[dict[str, Any]]:
        """The commands synced globally (``None``) or to a guild, as Discord stores them."""
        scope = None if guild_id is None else int(guild_id)
        return [command.payload for command in self._state.commands.get(scope, [])]

    @property
    def sessions(self) -> list[GatewaySession]:
        """Every gateway session identified so far (``.identify`` holds the IDENTIFY payload)."""
        return list(self._gateway.sessions)

    @property
    def intents(self) -> int | None:
        """The intents of the latest IDENTIFY, or None before any."""
        return self._gateway.sessions[-1].intents if self._gateway.sessions else None

    def edit_times(self, channel_id: int | str, message_id: int | str | None = None) -> list[float]:
        """``time.monotonic()`` of every edit that landed in the channel (or on one message), in order."""
        return [
            at
            for channel, message, at in self._state.edit_log
            if channel == int(channel_id) and (message_id is None or message == int(message_id))
        ]

    def max_edits_within(self, window: float, channel_id: int | str, message_id: int | str | None = None) -> int:
        """The most edits that landed within any ``window`` seconds (for throttling checks)."""
        return most_within(self.edit_times(channel_id, message_id), window)

    def typing_in(self, channel_id: int | str) -> list[float]:
        """``time.monotonic()`` of every typing indicator the bot triggered in the channel."""
        return [at for channel, at in self._state.typing if channel == int(channel_id)]

    def can_view(self, user: FakeUser, channel_id: int | str) -> bool:
        """Whether ``user`` can see the channel (private threads need membership)."""
        return self._state.can_view(user.id, self._state.channel(channel_id))

    # -- waiting -------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` is truthy and return it.

        The predicate is re-checked on every change of the fake's state (a request, a message,
        an edit, a callback...), never on a timer: it should read the fake, not the bot. To wait
        for something only the bot knows, have the bot set an ``asyncio.Event``.
        """
        return await self._state.wait_for(predicate, timeout)

    async def wait_until_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a client identified and was sent READY and every GUILD_CREATE (every shard, if sharded)."""
        await self._state.wait_for(self._gateway.all_shards_ready, timeout, "a client ready on the gateway")

    # -- what users do -------------------------------------------------------------------

    async def send_message(
        self,
        channel_id: int | str,
        author: FakeUser,
        content: str,
        *,
        mentions_bot: bool = False,
        reply_to: int | str | None = None,
        files: tuple[tuple[str, bytes], ...] = (),
    ) -> dict[str, Any]:
        """Post a message as ``author`` (channel, thread or DM) and dispatch MESSAGE_CREATE.

        ``mentions_bot`` prefixes ``<@bot_id> `` as a user mentioning the bot would; ``files`` are
        ``(filename, bytes)`` attachments, served by the fake's CDN. Returns once the event was
        written to every connected client.
        """
        channel = self._state.channel(channel_id)
        self._check_can_use(author, channel)
        if mentions_bot and self.bot_user.mention not in content:
            content = f"{self.bot_user.mention} {content}"
        body: dict[str, Any] = {"content": content}
        if reply_to is not None:
            body["message_reference"] = {"message_id": str(reply_to)}
        with self._state.collect_dispatches() as written:
            message = self._state.create_message(channel, author, body, files=[(n, d, None) for n, d in files])
        await self._flush(written)
        return self._state.message_dict(message)

    async def redeliver_message(self, message_id: int | str) -> None:
        """Dispatch MESSAGE_CREATE once more for a message already posted (Discord may deliver one twice)."""
        message = self._state.message(None, message_id)
        with self._state.collect_dispatches() as written:
            self._state._dispatch_message("MESSAGE_CREATE", message)
        await self._flush(written)

    async def edit_message_as(self, message_id: int | str, content: str) -> dict[str, Any]:
        """The author of a message edits its text (MESSAGE_UPDATE)."""
        message = self._state.message(None, message_id)
        with self._state.collect_dispatches() as written:
            self._state.edit_message(message, {"content": content})
        await self._flush(written)
        return self._state.message_dict(message)

    async def delete_message_as(self, message_id: int | str) -> None:
        """Someone (the author, a moderator) deletes a message (MESSAGE_DELETE)."""
        message = self._state.message(None, message_id)
        with self._state.collect_dispatches() as written:
            self._state.delete_message(message)
        await self._flush(written)

    async def start_thread_as(self, user: FakeUser, parent_id: int | str, name: str) -> FakeChannel:
        """A person starts a public thread (no starter message) in a text channel (THREAD_CREATE)."""
        parent = self._state.channel(parent_id)
        with self._state.collect_dispatches() as written:
            thread = self._state.create_thread(parent, user, name=name, type=ChannelType.PUBLIC_THREAD)
        await self._flush(written)
        return thread

    async def delete_thread(self, thread_id: int | str) -> None:
        """A moderator deletes a thread with its messages (THREAD_DELETE); later requests to it get 404."""
        thread = self._state.channel(thread_id)
        with self._state.collect_dispatches() as written:
            self._state.delete_thread(thread)
        await self._flush(written)

    async def set_bot_permissions(self, channel_id: int | str, *, allow: int = 0, deny: int = 0) -> None:
        """A member overwrite for the bot on a channel (threads inherit it), as an admin would set (CHANNEL_UPDATE)."""
        channel = self._state.channel(channel_id)
        channel.overwrites[self.bot_user.id] = (allow, deny)
        with self._state.collect_dispatches() as written:
            self._state.dispatch("CHANNEL_UPDATE", channel_payload(self._state, channel), guild_id=channel.guild_id)
        self._state.changed()
        await self._flush(written)

    async def update_thread(self, thread_id: int | str, **changes: bool) -> None:
        """Archive or lock a thread as a moderator would (THREAD_UPDATE)."""
        with self._state.collect_dispatches() as written:
            self._state.update_channel(self._state.channel(thread_id), dict(changes))
        await self._flush(written)

    def add_webhook(self, channel_id: int | str, name: str, creator: FakeUser) -> FakeWebhook:
        """Someone (another integration, a moderator) makes a webhook in a text channel; 15 at most per channel."""
        return self._state.create_webhook(self._state.channel(channel_id), name, creator)

    async def post_as_webhook(
        self, webhook: FakeWebhook, channel_id: int | str, content: str, *, username: str | None = None
    ) -> dict[str, Any]:
        """Another bot (PluralKit, Tupperbox) posts through its webhook under ``username`` (MESSAGE_CREATE)."""
        channel = self._state.channel(channel_id)
        body: dict[str, Any] = {"content": content} | ({"username": username} if username else {})
        with self._state.collect_dispatches() as written:
            message = self._state.create_message(
                channel, FakeUser(webhook.id, webhook.name, bot=True), body, webhook=webhook
            )
        await self._flush(written)
        return self._state.message_dict(message)

    def delete_webhook(self, webhook_id: int | str) -> None:
        """A moderator deletes a channel webhook; its messages stay, later calls with it get 404 Unknown Webhook."""
        self._state.delete_webhook(int(webhook_id))

    @property
    def max_active_threads(self) -> int:
        return self._state.max_active_threads

    @max_active_threads.setter
    def max_active_threads(self, count: int) -> None:
        self._state.max_active_threads = count

    async def invoke_slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel_id: int | str | None = None,
        guild_id: int | str | None = None,
    ) -> InteractionHandle:
        """Run ``/name`` (``"group sub"`` for sub-commands) with ``options`` typed by the *synced* schema.

        Defaults: ``fake.alice`` in ``fake.channel``; ``guild_id`` follows the channel. Values are
        str/int/float/bool, a ``FakeUser``/``FakeChannel``/``FakeRole`` (or id) for those option
        types, and ``(filename, bytes)`` for attachments. Raises if a Discord client would not let
        the user run it (unknown command or option, missing required option, bad choice,
        missing ``default_member_permissions``).
        """
        user, channel, guild = self._context(user, channel_id, guild_id)
        path = name.split()
        return await self._run_command(
            path[0],
            CommandType.CHAT_INPUT,
            user,
            channel,
            guild,
            build_data=lambda command: _commands.chat_input_data(self._state, command, path[1:], options or {}, guild),
        )

    async def _run_command(
        self,
        name: str,
        command_type: int,
        user: FakeUser,
        channel: FakeChannel,
        guild: FakeGuild | None,
        *,
        build_data: Callable[[Any], dict[str, Any]],
    ) -> InteractionHandle:
        """Find a synced command, check the user may run it, and dispatch its interaction."""
        command = self._state.find_command(name, guild.id if guild else None, command_type)
        self._check_command_allowed(command.payload, user, guild)
        handle = InteractionHandle(
            self._state,
            type=InteractionType.APPLICATION_COMMAND,
            data=build_data(command),
            user=user,
            channel=channel,
            command_name=command.name,
            command_type=command_type,
        )
        return await self._dispatch_interaction(handle)

    async def invoke_message_command(
        self, name: str, target_message_id: int | str, *, user: FakeUser | None = None
    ) -> InteractionHandle:
        """Run the message context-menu command ``name`` on a message."""
        target = self._state.message(None, target_message_id)
        user, channel, guild = self._context(user, target.channel_id, None)
        return await self._run_command(
            name,
            CommandType.MESSAGE,
            user,
            channel,
            guild,
            build_data=lambda command: _commands.context_menu_data(
                self._state, command, message_payload(self._state, target), target.id, "messages"
            ),
        )

    async def invoke_user_command(
        self, name: str, target: FakeUser, *, user: FakeUser | None = None, channel_id: int | str | None = None
    ) -> InteractionHandle:
        """Run the user context-menu command ``name`` on ``target``."""
        user, channel, guild = self._context(user, channel_id, None)

        def data_for(command: Any) -> dict[str, Any]:
            data = _commands.context_menu_data(self._state, command, user_payload(target), target.id, "users")
            if guild is not None and target.id in guild.members:
                member = member_payload(self._state, guild.members[target.id], with_user=False, with_permissions=True)
                data["resolved"]["members"] = {str(target.id): member}
            return data

        return await self._run_command(name, CommandType.USER, user, channel, guild, build_data=data_for)

    async def click_button(
        self, message_id: int | str, custom_id: str, *, user: FakeUser | None = None
    ) -> InteractionHandle:
        """Click the button ``custom_id`` on a message (a MESSAGE_COMPONENT interaction)."""
        return await self.use_component(message_id, custom_id, user=user)

    async def use_component(
        self,
        message_id: int | str,
        custom_id: str,
        *,
        user: FakeUser | None = None,
        values: list[str] | None = None,
    ) -> InteractionHandle:
        """Use a button or (with ``values``) a select menu on a message."""
        message = self._state.message(None, message_id)
        user, channel, _ = self._context(user, message.channel_id, None)
        component = _find_component(message.components, custom_id)
        if component is None:
            raise LookupError(f"message {message.id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = list(values)
        handle = InteractionHandle(
            self._state, type=InteractionType.MESSAGE_COMPONENT, data=data, user=user, channel=channel, message=message
        )
        return await self._dispatch_interaction(handle)

    async def submit_modal(self, opened_by: InteractionHandle, values: dict[str, str]) -> InteractionHandle:
        """Submit the modal the bot opened in answer to ``opened_by``, filling text inputs by ``custom_id``."""
        modal = opened_by.modal
        if modal is None:
            raise ValueError(f"interaction {opened_by.id} was not answered with a modal")
        data = {"custom_id": modal["custom_id"], "components": _fill_modal(modal["components"], values)}
        message = (
            self._state.messages.get(opened_by.component_message_id)
            if opened_by.component_message_id is not None
            else None
        )
        handle = InteractionHandle(
            self._state,
            type=InteractionType.MODAL_SUBMIT,
            data=data,
            user=opened_by.user,
            channel=opened_by.channel,
            message=message,
        )
        return await self._dispatch_interaction(handle)

    # -- failures and reconnects ---------------------------------------------------------

    def rate_limit_next(
        self, method: str, path_pattern: str, retry_after: float = 0.2, count: int = 1, global_: bool = False
    ) -> None:
        """Answer the next ``count`` matching requests with a real-looking 429.

        ``method`` is an HTTP method or ``*``; ``path_pattern`` is a regex matched in full against the
        path after the API base, e.g. ``r"/channels/\\d+/messages/\\d+"``.
        """
        self._rest.injections.append(
            Injection(method, re.compile(path_pattern), count, 429, retry_after=retry_after, global_=global_)
        )

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 500,
        count: int = 1,
        *,
        code: int = 0,
        message: str = "Internal Server Error",
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and a JSON error body.

        discord.py retries 500/502/504 itself after sleeping 1 + 2 * attempt seconds.
        """
        self._rest.injections.append(
            Injection(method, re.compile(path_pattern), count, status, code=code, message=message)
        )

    def clear_failures(self) -> None:
        """Drop every 429 and failure still waiting to be answered (Discord recovered)."""
        self._rest.injections.clear()

    @contextlib.asynccontextmanager
    async def gateway_outage(self, code: int = 4000) -> AsyncIterator[None]:
        """Close every client's gateway socket with ``code`` and hold their reconnections until the block ends.

        Events of the block (``send_message``...) are kept for the session and replayed when the client
        RESUMEs, as on Discord. With 4007 or 4009 the session ends instead: its RESUME gets INVALID_SESSION
        (``d: false``), the client IDENTIFYs anew, and events of the block never reach it.
        """
        self._gateway.accepting.clear()
        try:
            await self._gateway.drop_all(code)
            yield
        finally:
            self._gateway.accepting.set()

    async def reconnect_clients(self) -> None:
        """Send op 7 RECONNECT to every connected client; discord.py resumes through ``resume_gateway_url``."""
        await self._flush(self._gateway.reconnect_all())

    # -- helpers -------------------------------------------------------------------------

    def _context(
        self, user: FakeUser | None, channel_id: int | str | None, guild_id: int | str | None
    ) -> tuple[FakeUser, FakeChannel, FakeGuild | None]:
        user = user or getattr(self, "alice", None)
        if user is None:
            raise ValueError("no user given and no default user (defaults=False)")
        if channel_id is None:
            if not hasattr(self, "channel"):
                raise ValueError("no channel_id given and no default channel (defaults=False)")
            channel_id = self.channel.id
        channel = self._state.channel(channel_id)
        if guild_id is not None and channel.guild_id != int(guild_id):
            raise ValueError(f"channel {channel.id} is not in guild {guild_id}")
        guild = self._state.guilds[channel.guild_id] if channel.guild_id is not None else None
        self._check_can_use(user, channel)
        return user, channel, guild

    def _check_can_use(self, user: FakeUser, channel: FakeChannel) -> None:
        if not self._state.can_view(user.id, channel):
            kind = "private thread" if channel.type == ChannelType.PRIVATE_THREAD else "channel"
            raise PermissionError(f"{user.username} cannot see {kind} {channel.id} ({channel.name!r})")

    def _check_command_allowed(self, command: dict[str, Any], user: FakeUser, guild: FakeGuild | None) -> None:
        contexts = command.get("contexts")
        if guild is None and (command.get("dm_permission") is False or (contexts is not None and 1 not in contexts)):
            raise PermissionError(f"/{command['name']} is not available in DMs")
        if guild is not None and contexts is not None and 0 not in contexts:
            raise PermissionError(f"/{command['name']} is not available in guilds")
        required = command.get("default_member_permissions")
        if guild is not None and required is not None:
            have = self._state.permissions(guild.id, user.id)
            if int(required) & ~have:
                raise PermissionError(f"{user.username} lacks permissions {required} for /{command['name']}")

    async def _dispatch_interaction(self, handle: InteractionHandle) -> InteractionHandle:
        self._state.interactions[handle.id] = handle
        handle.created_at = time.monotonic()
        written = self._state.dispatch("INTERACTION_CREATE", handle.payload(), guild_id=handle.guild_id)
        if not written:
            raise RuntimeError("no connected gateway client would receive this interaction")
        self._state.changed()
        await self._flush(written)
        return handle

    async def _flush(self, written: list[asyncio.Future[None]]) -> None:
        if written:
            await asyncio.wait_for(asyncio.gather(*written), _DISPATCH_TIMEOUT)


def most_within(times: list[float], window: float) -> int:
    """The most of ``times`` (in order) that fall within any ``window`` seconds."""
    start, best = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _find_component(components: list[Any], custom_id: str) -> dict[str, Any] | None:
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == custom_id:
            return component
        children = list(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            children.append(component["component"])
        if isinstance(component.get("accessory"), dict):
            children.append(component["accessory"])
        found = _find_component(children, custom_id)
        if found is not None:
            return found
    return None


def _fill_modal(components: list[Any], values: dict[str, str]) -> list[dict[str, Any]]:
    filled = []
    for component in components:
        if component.get("type") == 4:  # text input
            filled.append(
                {"type": 4, "custom_id": component["custom_id"], "value": values.get(component["custom_id"], "")}
            )
        elif "components" in component:
            filled.append({"type": component["type"], "components": _fill_modal(component["components"], values)})
        elif isinstance(component.get("component"), dict):
            filled.append({"type": component["type"], "component": _fill_modal([component["component"]], values)[0]})
    return filled
