"""The REST API: one catch-all handler that records, injects failures, routes and answers like Discord.

Responses are built by hand with ``Content-Type: application/json`` exactly: discord.py
parses a body as JSON only on that exact header (aiohttp's ``json_response`` appends a
charset). Every response carries a ``Via`` header, without which discord.py treats a 429
as a Cloudflare ban instead of retrying it.

Discord's global rate limit is enforced: more than ``global_rate_limit`` requests made with
the bot token within any second (interaction endpoints are exempt, as on Discord) are
answered with a global 429, which discord.py honours by holding every request. With
``route_limits`` the message routes' per-channel buckets are too (see ``_limits``).
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import _commands, _interactions, _payloads
from ._errors import ApiError, route_not_found, unauthorized, unknown
from ._limits import RouteLimits
from ._models import (
    ChannelType,
    FakeChannel,
    FakeUser,
    FakeWebhook,
    Intent,
    MessageFlag,
    Permission,
    RecordedRequest,
)
from ._state import check_webhook_name

if TYPE_CHECKING:
    from ._gateway import Gateway
    from ._state import FakeState

API_PREFIX = "/api/v10"
_ID = r"(?P<{}>\d+)"
_TOKEN = r"(?P<token>[^/]+)"


@dataclass
class ApiRequest:
    """A parsed request, as the route handlers see it."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes, str | None]]

    def body(self) -> dict[str, Any]:
        """The JSON object body, or a 400 when it is not one."""
        if not isinstance(self.json, dict):
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        return self.json


@dataclass
class Injection:
    """A failure to answer instead of the real response, ``count`` times."""

    method: str
    pattern: re.Pattern[str]
    count: int
    status: int
    retry_after: float = 0.0
    global_: bool = False
    code: int = 0
    message: str = ""

    def matches(self, method: str, path: str) -> bool:
        """Whether this injection applies to the request."""
        return self.count > 0 and self.method in ("*", method) and self.pattern.fullmatch(path) is not None


Handler = Callable[[ApiRequest], Awaitable[Any]]


class RestApi:
    """Routes ``/api/v10/...`` requests to handlers over :class:`FakeState`."""

    def __init__(
        self,
        state: FakeState,
        gateway: Gateway,
        *,
        global_rate_limit: int | None = 50,
        route_limits: RouteLimits | None = None,
    ) -> None:
        self._state = state
        self._gateway = gateway
        self.injections: list[Injection] = []
        self.unhandled: list[RecordedRequest] = []
        self.global_rate_limit = global_rate_limit
        """Bot-token requests accepted per second before a global 429; None turns the limit off."""
        self.global_limit_hits = 0
        """How many requests were answered with a global 429 because of :attr:`global_rate_limit`."""
        self.route_limits = route_limits
        """Per-route buckets (None: no route is limited)."""
        self._accepted_at: deque[float] = deque()
        self._routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        self._add_routes()

    # -- plumbing ------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler, *, auth: bool = True) -> None:
        """Register a handler; ``pattern`` is a regex matched in full against the path after the API base."""
        self._routes.append((method, re.compile(pattern), handler, auth))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for everything under the API prefix."""
        path = request.path[len(API_PREFIX) :] or "/"
        arrived = time.monotonic()
        try:
            payload, files = await _read_body(request)
        except ApiError as error:
            payload, files = None, []
            response, route_missing = _error_response(error), False
        else:
            response, route_missing = await self._respond(request, path, payload, files)
        recorded = RecordedRequest(
            method=request.method,
            path=path,
            json=payload,
            query=dict(request.query),
            headers=dict(request.headers),
            status=response.status,
            at=arrived,
            files=tuple(name for name, _, _ in files),
        )
        self._state.requests.append(recorded)
        if route_missing:
            self.unhandled.append(recorded)
        self._state.changed()
        return response

    async def _respond(
        self, request: web.Request, path: str, payload: Any, files: list[tuple[str, bytes, str | None]]
    ) -> tuple[web.Response, bool]:
        """The response, and whether the path/method is one the fake does not serve."""
        over_limit = self._over_global_limit(request, path)
        if over_limit is not None:
            return over_limit, False
        use = self.route_limits.take(request.method, path) if self.route_limits is not None else None
        if use is None:
            return await self._route(request, path, payload, files)
        if use.refused:
            return use.too_many(), False
        response, route_missing = await self._route(request, path, payload, files)
        response.headers.update(use.headers)
        return response, route_missing

    async def _route(
        self, request: web.Request, path: str, payload: Any, files: list[tuple[str, bytes, str | None]]
    ) -> tuple[web.Response, bool]:
        """Injected failures first, then the route's handler."""
        injected = next((i for i in self.injections if i.matches(request.method, path)), None)
        if injected is not None:
            injected.count -= 1
            return _injected_response(injected, request.method, path), False
        allowed_methods = []
        for method, pattern, handler, auth in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method != request.method:
                allowed_methods.append(method)
                continue
            api_request = ApiRequest(request.method, path, match.groupdict(), dict(request.query), payload, files)
            try:
                if auth and request.headers.get("Authorization") != f"Bot {self._state.token}":
                    raise unauthorized()
                result = await handler(api_request)
            except ApiError as error:
                return _error_response(error), False
            return (_no_content() if result is None else json_response(result)), False
        if allowed_methods:
            return _error_response(ApiError(405, 0, "405: Method Not Allowed")), True
        return _error_response(route_not_found()), True

    def _over_global_limit(self, request: web.Request, path: str) -> web.Response | None:
        """A global 429 if this request would be one too many within the last second, else None (and it counts)."""
        if self.global_rate_limit is None or not self._counts_against_global_limit(request, path):
            return None
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] >= 1.0:
            self._accepted_at.popleft()
        if len(self._accepted_at) < self.global_rate_limit:
            self._accepted_at.append(now)
            return None
        self.global_limit_hits += 1
        return global_limit_response(self._accepted_at[0] + 1.0 - now)

    def _counts_against_global_limit(self, request: web.Request, path: str) -> bool:
        """Requests with the bot token count; interaction callbacks and follow-ups (interaction endpoints) do not."""
        if request.headers.get("Authorization") != f"Bot {self._state.token}":
            return False
        return not (path.startswith("/interactions/") or path.startswith(f"/webhooks/{self._state.application_id}/"))

    async def serve_attachment(self, request: web.Request) -> web.Response:
        """The CDN: ``GET /attachments/{channel}/{id}/{filename}``."""
        attachment_id = int(request.match_info["attachment_id"])
        data = self._state.attachment_files.get(attachment_id)
        self._state.attachment_downloads.append(attachment_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    def _add_routes(self) -> None:
        app, guild, channel, message = (
            _ID.format("app"),
            _ID.format("guild"),
            _ID.format("channel"),
            _ID.format("message"),
        )
        self.route("GET", r"/gateway", self.get_gateway, auth=False)
        self.route("GET", r"/gateway/bot", self.get_gateway_bot)
        self.route("GET", r"/users/@me", self.get_me)
        self.route("GET", r"/users/" + _ID.format("user"), self.get_user)
        self.route("POST", r"/users/@me/channels", self.create_dm)
        self.route("DELETE", rf"/users/@me/guilds/{guild}", self.leave_guild)
        self.route("GET", r"/(?:oauth2/)?applications/@me", self.get_application)
        for scope in (rf"/applications/{app}", rf"/applications/{app}/guilds/{guild}"):
            self.route("GET", scope + r"/commands", self.get_commands)
            self.route("PUT", scope + r"/commands", self.put_commands)
            self.route("POST", scope + r"/commands", self.post_command)
        self.route("GET", rf"/guilds/{guild}/channels", self.get_guild_channels)
        self.route("GET", rf"/guilds/{guild}/members/" + _ID.format("user"), self.get_member)
        self.route("GET", rf"/channels/{channel}", self.get_channel)
        self.route("PATCH", rf"/channels/{channel}", self.patch_channel)
        self.route("DELETE", rf"/channels/{channel}", self.delete_channel)
        self.route("GET", rf"/channels/{channel}/messages", self.get_messages)
        self.route("POST", rf"/channels/{channel}/messages", self.post_message)
        self.route("GET", rf"/channels/{channel}/messages/{message}", self.get_message)
        self.route("PATCH", rf"/channels/{channel}/messages/{message}", self.patch_message)
        self.route("DELETE", rf"/channels/{channel}/messages/{message}", self.delete_message)
        reaction = rf"/channels/{channel}/messages/{message}/reactions/(?P<emoji>[^/]+)/@me"
        self.route("PUT", reaction, self.put_reaction)
        self.route("DELETE", reaction, self.delete_reaction)
        self.route("POST", rf"/channels/{channel}/messages/{message}/threads", self.thread_from_message)
        self.route("POST", rf"/channels/{channel}/threads", self.thread_without_message)
        thread_member = rf"/channels/{channel}/thread-members/(?P<user>@me|\d+)"
        self.route("PUT", thread_member, self.put_thread_member)
        self.route("DELETE", thread_member, self.delete_thread_member)
        self.route("POST", rf"/channels/{channel}/typing", self.post_typing)
        self.route("POST", rf"/channels/{channel}/webhooks", self.create_webhook)
        self.route("GET", rf"/channels/{channel}/webhooks", self.get_channel_webhooks)
        self.route("POST", rf"/interactions/{_ID.format('interaction')}/{_TOKEN}/callback", self.callback, auth=False)
        webhook = _ID.format("webhook")
        self.route("GET", rf"/webhooks/{webhook}", self.get_webhook)
        self.route("GET", rf"/webhooks/{webhook}/{_TOKEN}", self.get_webhook, auth=False)
        self.route("POST", rf"/webhooks/{webhook}/{_TOKEN}", self.execute_webhook, auth=False)
        webhook_message = rf"/webhooks/{webhook}/{_TOKEN}/messages/(?P<message>@original|\d+)"
        self.route("GET", webhook_message, self.get_webhook_message, auth=False)
        self.route("PATCH", webhook_message, self.patch_webhook_message, auth=False)
        self.route("DELETE", webhook_message, self.delete_webhook_message, auth=False)

    # -- users, gateway, application -----------------------------------------------------

    async def get_gateway(self, request: ApiRequest) -> Any:
        return {"url": self._gateway.advertised_url or self._gateway.gateway_url}

    async def get_gateway_bot(self, request: ApiRequest) -> Any:
        return {
            "url": self._gateway.advertised_url or self._gateway.gateway_url,
            "shards": self._gateway.shard_count,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def get_me(self, request: ApiRequest) -> Any:
        return _payloads.user_payload(self._state.bot_user) | {"verified": True, "mfa_enabled": False, "flags": 0}

    async def get_user(self, request: ApiRequest) -> Any:
        user = self._state.users.get(int(request.params["user"]))
        if user is None:
            raise unknown("user")
        return _payloads.user_payload(user)

    async def leave_guild(self, request: ApiRequest) -> Any:
        self._state.leave_guild(int(request.params["guild"]))

    async def create_dm(self, request: ApiRequest) -> Any:
        user = self._state.users.get(int(request.body().get("recipient_id") or 0))
        if user is None:
            raise unknown("user")
        return _payloads.channel_payload(self._state, self._state.dm_channel(user))

    async def get_application(self, request: ApiRequest) -> Any:
        state = self._state
        owner = next((u for u in state.users.values() if not u.bot), state.bot_user)
        return {
            "id": str(state.application_id),
            "name": state.bot_user.username,
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": _payloads.user_payload(owner),
            "verify_key": "0" * 64,
            "flags": self._application_flags(),
            "bot": _payloads.user_payload(state.bot_user),
            "team": None,
        }

    def _application_flags(self) -> int:
        """GATEWAY_MESSAGE_CONTENT_LIMITED (an app in under 100 servers) when the portal allows the intent."""
        allowed = self._gateway.allowed_intents
        return 1 << 19 if allowed is None or allowed & Intent.MESSAGE_CONTENT else 0

    # -- application commands ------------------------------------------------------------

    def _command_scope(self, request: ApiRequest) -> int | None:
        if int(request.params["app"]) != self._state.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if request.params.get("guild") is None:
            return None
        guild_id = int(request.params["guild"])
        if guild_id not in self._state.guilds:
            raise ApiError(403, 50001, "Missing Access")
        return guild_id

    async def get_commands(self, request: ApiRequest) -> Any:
        return [command.payload for command in self._state.commands.get(self._command_scope(request), [])]

    async def put_commands(self, request: ApiRequest) -> Any:
        scope = self._command_scope(request)
        existing = self._state.commands.get(scope, [])
        commands = _commands.register_commands(self._state, scope, request.json, existing)
        self._state.set_commands(scope, commands)
        return [command.payload for command in commands]

    async def post_command(self, request: ApiRequest) -> Any:
        scope = self._command_scope(request)
        body = request.body()
        existing = self._state.commands.get(scope, [])
        others = [c for c in existing if (c.name, c.type) != (body.get("name"), int(body.get("type") or 1))]
        commands = _commands.register_commands(self._state, scope, [body], existing)
        self._state.set_commands(scope, [*others, *commands])
        return commands[0].payload

    # -- guilds and channels -------------------------------------------------------------

    async def get_guild_channels(self, request: ApiRequest) -> Any:
        guild = self._state.guilds.get(int(request.params["guild"]))
        if guild is None:
            raise unknown("guild")
        return [_payloads.channel_payload(self._state, self._state.channels[c]) for c in guild.channel_ids]

    async def get_member(self, request: ApiRequest) -> Any:
        guild = self._state.guilds.get(int(request.params["guild"]))
        if guild is None:
            raise unknown("guild")
        member = guild.members.get(int(request.params["user"]))
        if member is None:
            raise unknown("member")
        return _payloads.member_payload(self._state, member)

    def _bot_channel(self, request: ApiRequest) -> FakeChannel:
        channel = self._state.channel(request.params["channel"])
        if not self._state.can_view(self._state.bot_user.id, channel) or not self._bot_has(
            channel, Permission.VIEW_CHANNEL
        ):
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def _bot_has(self, channel: FakeChannel, permission: int) -> bool:
        return bool(self._state.permissions_in(channel, self._state.bot_user.id) & permission)

    async def get_channel(self, request: ApiRequest) -> Any:
        return _payloads.channel_payload(self._state, self._bot_channel(request))

    async def patch_channel(self, request: ApiRequest) -> Any:
        channel = self._state.update_channel(self._bot_channel(request), request.body())
        return _payloads.channel_payload(self._state, channel)

    async def delete_channel(self, request: ApiRequest) -> Any:
        """Only threads here: deleting one needs Manage Threads (a thread's creator may not delete it either)."""
        channel = self._bot_channel(request)
        if not channel.is_thread or not self._bot_has(channel, Permission.MANAGE_THREADS):
            raise ApiError(403, 50013, "Missing Permissions")
        payload = _payloads.channel_payload(self._state, channel)
        self._state.delete_thread(channel)
        return payload

    # -- messages ------------------------------------------------------------------------

    async def get_messages(self, request: ApiRequest) -> Any:
        channel = self._bot_channel(request)
        limit = max(1, min(100, int(request.query.get("limit", 50))))
        messages = [m for m in self._state.messages.values() if m.channel_id == channel.id and not m.ephemeral]
        if "before" in request.query:
            messages = [m for m in messages if m.id < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > int(request.query["after"])][:limit]
        if "around" in request.query:
            around = int(request.query["around"])
            older = [m for m in messages if m.id <= around][-(limit // 2 + limit % 2) :]
            newer = [m for m in messages if m.id > around][: limit // 2]
            messages = older + newer
        newest_first = sorted(messages, key=lambda m: m.id, reverse=True)[:limit]
        return [_payloads.message_payload(self._state, m) for m in newest_first]

    async def post_message(self, request: ApiRequest) -> Any:
        channel = self._writable_channel(request)
        message = self._state.create_message(channel, self._state.bot_user, request.body(), files=request.files)
        return _payloads.message_payload(self._state, message)

    async def get_message(self, request: ApiRequest) -> Any:
        channel = self._bot_channel(request)
        message = self._state.message(channel.id, request.params["message"])
        if message.ephemeral:
            raise unknown("message")
        return _payloads.message_payload(self._state, message)

    async def patch_message(self, request: ApiRequest) -> Any:
        channel = self._bot_channel(request)
        message = self._state.message(channel.id, request.params["message"])
        if message.ephemeral:
            raise unknown("message")
        # Interaction responses are the bot's own messages; channel-webhook messages are not.
        if message.author.id != self._state.bot_user.id or message.webhook_id not in (None, self._state.application_id):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        if channel.is_thread and channel.archived:
            raise ApiError(400, 50083, "Thread is archived")
        self._state.edit_message(message, request.body(), files=request.files)
        return _payloads.message_payload(self._state, message)

    async def delete_message(self, request: ApiRequest) -> Any:
        message = self._state.message(self._bot_channel(request).id, request.params["message"])
        if message.ephemeral:
            raise unknown("message")
        self._state.delete_message(message)

    async def put_reaction(self, request: ApiRequest) -> Any:
        message = self._state.message(self._bot_channel(request).id, request.params["message"])
        self._state.set_reaction(message, request.params["emoji"], self._state.bot_user.id, present=True)

    async def delete_reaction(self, request: ApiRequest) -> Any:
        message = self._state.message(self._bot_channel(request).id, request.params["message"])
        self._state.set_reaction(message, request.params["emoji"], self._state.bot_user.id, present=False)

    async def post_typing(self, request: ApiRequest) -> Any:
        self._state.typing.append((self._bot_channel(request).id, time.monotonic()))
        self._state.changed()

    def _writable_channel(self, request: ApiRequest) -> FakeChannel:
        channel = self._bot_channel(request)
        send = Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
        if not self._bot_has(channel, send):
            raise ApiError(403, 50013, "Missing Permissions")
        if channel.is_thread and channel.locked and not self._bot_has(channel, Permission.MANAGE_THREADS):
            raise ApiError(403, 50013, "Missing Permissions")
        if channel.is_thread and channel.archived:
            if channel.locked:
                raise ApiError(400, 50083, "Thread is archived")
            # Sending into an archived (unlocked) thread unarchives it.
            self._state.update_channel(channel, {"archived": False})
        return channel

    # -- threads -------------------------------------------------------------------------

    async def thread_from_message(self, request: ApiRequest) -> Any:
        parent = self._bot_channel(request)
        if not self._bot_has(parent, Permission.CREATE_PUBLIC_THREADS):
            raise ApiError(403, 50013, "Missing Permissions")
        message = self._state.message(parent.id, request.params["message"])
        body = request.body()
        thread = self._state.create_thread(
            parent,
            self._state.bot_user,
            name=body.get("name"),
            type=ChannelType.PUBLIC_THREAD,
            from_message=message,
            auto_archive_duration=body.get("auto_archive_duration"),
        )
        return _payloads.channel_payload(self._state, thread)

    async def thread_without_message(self, request: ApiRequest) -> Any:
        body = request.body()
        parent = self._bot_channel(request)
        forum = parent.type == ChannelType.GUILD_FORUM
        if forum and not self._bot_has(parent, Permission.SEND_MESSAGES):
            raise ApiError(403, 50013, "Missing Permissions")  # a forum post is a message
        thread = self._state.create_thread(
            parent,
            self._state.bot_user,
            name=body.get("name"),
            # API v10: without "type" Discord makes a *private* thread.
            type=int(body.get("type") or ChannelType.PRIVATE_THREAD),
            auto_archive_duration=body.get("auto_archive_duration"),
            invitable=bool(body.get("invitable", True)),
            starter=body.get("message"),
            files=request.files,
        )
        payload = _payloads.channel_payload(self._state, thread)
        if forum:  # a forum post comes back with its first message
            payload["message"] = _payloads.message_payload(self._state, self._state.message(thread.id, thread.id))
        return payload

    async def put_thread_member(self, request: ApiRequest) -> Any:
        user = request.params["user"]
        user_id = self._state.bot_user.id if user == "@me" else int(user)
        self._state.add_thread_member(self._bot_channel(request), user_id)

    async def delete_thread_member(self, request: ApiRequest) -> Any:
        thread = self._bot_channel(request)
        user = request.params["user"]
        thread.member_ids.discard(self._state.bot_user.id if user == "@me" else int(user))
        self._state.changed()

    # -- webhooks ------------------------------------------------------------------------

    def _webhook_manager_channel(self, request: ApiRequest) -> FakeChannel:
        """The channel, if the bot may manage its webhooks (listing them too needs Manage Webhooks), else a 403."""
        channel = self._bot_channel(request)
        if not self._bot_has(channel, Permission.MANAGE_WEBHOOKS):
            raise ApiError(403, 50013, "Missing Permissions")
        return channel

    async def create_webhook(self, request: ApiRequest) -> Any:
        body = request.body()
        channel = self._webhook_manager_channel(request)
        webhook = self._state.create_webhook(channel, body.get("name"), self._state.bot_user)
        return _payloads.webhook_payload(self._state, webhook)

    async def get_channel_webhooks(self, request: ApiRequest) -> Any:
        channel = self._webhook_manager_channel(request)
        hooks = [w for w in self._state.webhooks.values() if w.channel_id == channel.id]
        return [_payloads.webhook_payload(self._state, w) for w in hooks]

    def _webhook(self, request: ApiRequest, *, token_required: bool) -> FakeWebhook:
        webhook = self._state.webhooks.get(int(request.params["webhook"]))
        if webhook is None:
            raise unknown("webhook")
        token = request.params.get("token")
        if (token_required or token is not None) and token != webhook.token:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return webhook

    def _is_interaction_webhook(self, request: ApiRequest) -> bool:
        return int(request.params["webhook"]) == self._state.application_id

    async def get_webhook(self, request: ApiRequest) -> Any:
        return _payloads.webhook_payload(self._state, self._webhook(request, token_required=False))

    async def execute_webhook(self, request: ApiRequest) -> Any:
        body = request.body()
        if self._is_interaction_webhook(request):
            handle = _interactions.live_handle(self._state, request.params["token"])
            message = _interactions.send_followup(self._state, handle, body, request.files)
        else:
            webhook = self._webhook(request, token_required=True)
            if body.get("username") is not None:
                check_webhook_name(body["username"], "username")
            channel = self._state.channel(webhook.channel_id)
            if "thread_id" in request.query:
                channel = self._state.channel(request.query["thread_id"])
                if channel.parent_id != webhook.channel_id:
                    raise unknown("channel")
            author = FakeUser(webhook.id, webhook.name, bot=True)
            body = body | {"flags": int(body.get("flags") or 0) & ~MessageFlag.EPHEMERAL}
            message = self._state.create_message(channel, author, body, files=request.files, webhook=webhook)
        if request.query.get("wait", "false").lower() not in ("1", "true"):
            return None
        return _payloads.message_payload(self._state, message)

    def _webhook_message(self, request: ApiRequest) -> Any:
        if self._is_interaction_webhook(request):
            handle = _interactions.live_handle(self._state, request.params["token"])
            return _interactions.handle_message(self._state, handle, request.params["message"])
        webhook = self._webhook(request, token_required=True)
        if request.params["message"] == "@original":
            raise unknown("message")
        message = self._state.message(None, request.params["message"])
        if message.webhook_id != webhook.id:
            raise unknown("message")
        return message

    async def get_webhook_message(self, request: ApiRequest) -> Any:
        return _payloads.message_payload(self._state, self._webhook_message(request))

    async def patch_webhook_message(self, request: ApiRequest) -> Any:
        message = self._webhook_message(request)
        body = request.body()
        if self._is_interaction_webhook(request):
            _interactions.edit_handle_message(self._state, message, body, files=request.files)
        else:
            self._state.edit_message(message, body, files=request.files)
        return _payloads.message_payload(self._state, message)

    async def delete_webhook_message(self, request: ApiRequest) -> Any:
        self._state.delete_message(self._webhook_message(request))

    # -- interactions --------------------------------------------------------------------

    async def callback(self, request: ApiRequest) -> Any:
        handle = self._state.interactions.get(int(request.params["interaction"]))
        if handle is None or handle.token != request.params["token"]:
            raise unknown("interaction")
        response = _interactions.accept_callback(self._state, handle, request.body(), request.files)
        if request.query.get("with_response", "false").lower() in ("1", "true"):
            return response
        return None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response with exactly ``Content-Type: application/json`` (no charset) and a ``Via`` header."""
    all_headers = {"Content-Type": "application/json", "Via": "1.1 google"} | (headers or {})
    return web.Response(body=json.dumps(body).encode(), status=status, headers=all_headers)


def _no_content() -> web.Response:
    return web.Response(status=204, headers={"Via": "1.1 google"})


def _error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status)


def global_limit_response(retry_after: float) -> web.Response:
    """A global 429 as Discord sends it: ``global: true`` in the body, ``X-RateLimit-Global``, scope ``global``."""
    headers = {
        "Retry-After": str(math.ceil(retry_after)),
        "X-RateLimit-Global": "true",
        "X-RateLimit-Scope": "global",
    }
    retry_after = math.ceil(retry_after * 1000) / 1000  # rounded up: retrying after it must succeed
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": True, "code": 0}
    return json_response(body, status=429, headers=headers)


def _injected_response(injection: Injection, method: str, path: str) -> web.Response:
    if injection.status != 429:
        return json_response({"message": injection.message, "code": injection.code}, status=injection.status)
    retry_after = injection.retry_after
    if injection.global_:
        return global_limit_response(retry_after)
    headers = {
        "Retry-After": str(math.ceil(retry_after)),
        "X-RateLimit-Scope": "user",
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": f"{zlib.crc32(f'{method} {injection.pattern.pattern}'.encode()):08x}",
    }
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    return json_response(body, status=429, headers=headers)


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, bytes, str | None]]]:
    if not request.body_exists:
        return None, []
    if request.content_type == "multipart/form-data":
        payload: Any = None
        files: list[tuple[str, bytes, str | None]] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = bytes(await part.read(decode=False))
            name = part.name or ""
            if name == "payload_json":
                payload = _loads(data)
            elif name.startswith("files["):
                files.append((part.filename or name, data, part.headers.get("Content-Type")))
        return payload, files
    raw = await request.read()
    return (_loads(raw) if raw else None), []


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
