"""The gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, dispatches.

Frames are plain JSON text (discord.py only decompresses binary frames, so the
``compress=zlib-stream`` it asks for can be ignored). Each identified session keeps its
dispatched frames so a RESUME replays what the client missed. Events are filtered by the
session's intents and shard, and guild messages lose their content for a session without
the Message Content intent unless they mention the bot, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import _payloads
from ._models import FakeGuild, Intent

if TYPE_CHECKING:
    from ._state import FakeState

_log = logging.getLogger(__name__)


class Op:
    """Gateway opcodes."""

    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


_EVENT_INTENTS = {
    "GUILD_CREATE": Intent.GUILDS,
    "GUILD_ROLE_CREATE": Intent.GUILDS,
    "CHANNEL_CREATE": Intent.GUILDS,
    "CHANNEL_UPDATE": Intent.GUILDS,
    "THREAD_CREATE": Intent.GUILDS,
    "THREAD_UPDATE": Intent.GUILDS,
    "GUILD_MEMBER_ADD": Intent.GUILD_MEMBERS,
}
_MESSAGE_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE")
_UNRESUMABLE_CLOSE_CODES = (1000, 1001)
"""A client closing with these ends its session (Discord: a clean close cannot be resumed)."""
_SESSION_ENDING_SERVER_CODES = (4007, 4009)
"""Discord closing with these (invalid seq, session timed out) ends the session: the client must IDENTIFY anew."""


@dataclass(eq=False)
class GatewaySession:
    """One identified session; survives a dropped connection until the client resumes it."""

    session_id: str
    intents: int
    shard: tuple[int, int]
    identify: dict[str, Any]
    seq: int = 0
    history: list[tuple[int, str]] = field(default_factory=list)
    connection: Connection | None = None
    ready: bool = False
    """True once READY and every GUILD_CREATE were written to the socket."""
    invalid: bool = False

    def sees_guild(self, guild_id: int | None) -> bool:
        """Whether this shard receives events for the guild (DMs go to shard 0)."""
        shard_id, shard_count = self.shard
        if guild_id is None:
            return shard_id == 0
        return (guild_id >> 22) % shard_count == shard_id


class Connection:
    """One websocket; frames are written in order by a single writer task."""

    def __init__(self, ws: web.WebSocketResponse, query: dict[str, str]) -> None:
        self.ws = ws
        self.query = query
        self.session: GatewaySession | None = None
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[None] | None]] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_frames(), name="fakediscord-gateway-writer")

    def send(self, frame: dict[str, Any] | str) -> asyncio.Future[None]:
        """Queue a frame; the future resolves once it was written (or the socket went away)."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((text, written))
        return written

    async def close(self, code: int = 1000) -> None:
        """Close the socket and stop the writer."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=code)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        while not self._queue.empty():
            _, written = self._queue.get_nowait()
            if written is not None and not written.done():
                written.set_result(None)

    async def _write_frames(self) -> None:
        while True:
            text, written = await self._queue.get()
            try:
                if not self.ws.closed:
                    await self.ws.send_str(text)
            except Exception:  # a dying socket must not stall everyone awaiting later frames
                _log.debug("gateway frame dropped", exc_info=True)
            finally:
                if written is not None and not written.done():
                    written.set_result(None)


class Gateway:
    """The gateway endpoint and every session it has handed out."""

    def __init__(self, state: FakeState, *, heartbeat_interval_ms: int, allowed_intents: int | None) -> None:
        self._state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_intents = allowed_intents
        """Privileged intents the app may use (None: all), else IDENTIFY is closed with 4014."""
        self.gateway_url = ""
        self.advertised_url: str | None = None
        """What ``GET /gateway[/bot]`` answers, if not ``gateway_url`` (real Discord names its own host)."""
        self.shard_count = 1
        self.sessions: list[GatewaySession] = []
        self.connections: set[Connection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.accepting = asyncio.Event()
        """Cleared during an outage: new sockets are held (before HELLO) until it is set again."""
        self.accepting.set()

    # -- the websocket endpoint ----------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one gateway websocket."""
        await self.accepting.wait()
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = Connection(ws, dict(request.query))
        self.connections.add(connection)
        connection.send({"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await connection.close(4002)
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    await connection.close(4002)
                    break
                await self._receive(connection, frame)
        finally:
            self.connections.discard(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in _UNRESUMABLE_CLOSE_CODES:
                    session.invalid = True
            await connection.close()
            self._state.changed()
        return ws

    async def _receive(self, connection: Connection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == Op.HEARTBEAT:
            connection.send({"op": Op.HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == Op.IDENTIFY:
            await self._identify(connection, data or {})
        elif op == Op.RESUME:
            self._resume(connection, data or {})
        elif connection.session is None:
            await connection.close(4003)  # Not authenticated
        elif op == Op.REQUEST_GUILD_MEMBERS:
            self._send_member_chunk(connection.session, data or {})
        elif op in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            pass
        else:
            await connection.close(4001)  # Unknown opcode

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            await connection.close(4005)  # Already authenticated
            return
        if data.get("token") != self._state.token:
            await connection.close(4004)  # Authentication failed
            return
        intents = int(data.get("intents", 0))
        if self.allowed_intents is not None and intents & Intent.PRIVILEGED & ~self.allowed_intents:
            await connection.close(4014)  # Disallowed intent(s)
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await connection.close(4010)  # Invalid shard
            return
        session = GatewaySession(secrets.token_hex(16), intents, (shard_id, shard_count), data)
        self.sessions.append(session)
        session.connection = connection
        connection.session = session
        guilds = [g for g in self._state.guilds.values() if session.sees_guild(g.id)]
        ready = {
            "v": 10,
            "user": _payloads.user_payload(self._state.bot_user),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": [shard_id, shard_count],
            "application": {"id": str(self._state.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": [],
            "guild_join_requests": [],
            "auth": {},
        }
        last = self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            last = self._send_dispatch(session, "GUILD_CREATE", _payloads.guild_create_payload(self._state, guild))
        if last is not None:
            await last
        session.ready = True
        self._state.changed()

    def _resume(self, connection: Connection, data: dict[str, Any]) -> None:
        session = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        if session is None or session.invalid or data.get("token") != self._state.token:
            connection.send({"op": Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None and session.connection is not connection:
            old = session.connection
            old.session = None
            task = asyncio.get_running_loop().create_task(old.close(4000))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        session.connection = connection
        connection.session = session
        missed_after = int(data.get("seq") or 0)
        for seq, frame in session.history:
            if seq > missed_after:
                connection.send(frame)
        self._send_dispatch(session, "RESUMED", {})
        self._state.changed()

    def _send_member_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild_ids = data.get("guild_id")
        for guild_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self._state.guilds.get(int(guild_id or 0))
            if guild is None:
                continue
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [_payloads.member_payload(self._state, m) for m in guild.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
            }
            if data.get("nonce") is not None:
                chunk["nonce"] = data["nonce"]
            self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    # -- dispatching ---------------------------------------------------------------------

    def dispatch(self, event: str, payload: dict[str, Any], *, guild_id: int | None) -> list[asyncio.Future[None]]:
        """Send ``event`` to every live session that should receive it; futures resolve once written."""
        written = []
        for session in self.sessions:
            if session.invalid or not session.sees_guild(guild_id) or not self._wants(session, event, guild_id):
                continue
            data = payload
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not self._sees_content(session, payload):
                data = _payloads.strip_content(payload)
            future = self._send_dispatch(session, event, data)
            if future is not None:
                written.append(future)
        return written

    def guild_joined(self, guild: FakeGuild) -> None:
        """The bot was added to a guild after connecting: GUILD_CREATE to its shard.

        Without ``unavailable``, as Discord sends it for a join (discord.py then fires ``on_guild_join``;
        ``unavailable: false`` would mean a known guild coming back from an outage).
        """
        payload = _payloads.guild_create_payload(self._state, guild)
        del payload["unavailable"]
        self.dispatch("GUILD_CREATE", payload, guild_id=guild.id)

    def reconnect_all(self) -> list[asyncio.Future[None]]:
        """Ask every connected client to reconnect (op 7); they resume their sessions."""
        return [
            connection.send({"op": Op.RECONNECT, "d": None, "s": None, "t": None})
            for connection in list(self.connections)
            if connection.session is not None
        ]

    async def drop_all(self, code: int) -> None:
        """Close every identified client's socket with ``code``, as a gateway node going down would.

        The session outlives the socket (events keep going to its history, replayed on RESUME), except
        for 4007/4009, after which a RESUME gets INVALID_SESSION ``d: false``.
        """
        dropped = [c for c in list(self.connections) if c.session is not None]
        for connection in dropped:
            session = connection.session
            assert session is not None
            connection.session = None  # the server closed it: the client's answering close code ends nothing
            if session.connection is connection:
                session.connection = None
            session.invalid = session.invalid or code in _SESSION_ENDING_SERVER_CODES
        await asyncio.gather(*(connection.close(code) for connection in dropped))
        self._state.changed()

    def ready_sessions(self) -> list[GatewaySession]:
        """Connected sessions that received READY and all their GUILD_CREATEs."""
        return [s for s in self.sessions if s.ready and not s.invalid and s.connection is not None]

    def all_shards_ready(self) -> bool:
        """Whether, for some shard count, every shard has a ready connected session."""
        ready = self.ready_sessions()
        for shard_count in {s.shard[1] for s in ready}:
            if {s.shard[0] for s in ready if s.shard[1] == shard_count} == set(range(shard_count)):
                return True
        return False

    async def close(self) -> None:
        """Close every socket (clients should have disconnected first)."""
        for connection in list(self.connections):
            await connection.close(1001)
        self.connections.clear()

    def _send_dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> asyncio.Future[None] | None:
        session.seq += 1
        frame = json.dumps({"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data})
        session.history.append((session.seq, frame))
        if session.connection is None:
            return None
        return session.connection.send(frame)

    def _wants(self, session: GatewaySession, event: str, guild_id: int | None) -> bool:
        if event in _MESSAGE_EVENTS:
            needed = Intent.GUILD_MESSAGES if guild_id is not None else Intent.DIRECT_MESSAGES
        else:
            needed = _EVENT_INTENTS.get(event, 0)
        return (session.intents & needed) == needed

    def _sees_content(self, session: GatewaySession, message: dict[str, Any]) -> bool:
        if session.intents & Intent.MESSAGE_CONTENT or "guild_id" not in message:
            return True
        bot_id = str(self._state.bot_user.id)
        return message["author"]["id"] == bot_id or any(user["id"] == bot_id for user in message["mentions"])
