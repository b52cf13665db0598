"""The stand-in's gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, dispatches, RESUME with replay.

Sessions outlive connections, as on Discord: events dispatched while the bot is disconnected are kept (with their
sequence numbers) and replayed when it RESUMEs, so nothing posted during a reconnect is lost. Message payloads
honour the intents given at IDENTIFY: without GUILD_MESSAGES no guild messages arrive; without MESSAGE_CONTENT a
guild message arrives with empty content and attachments unless the bot is mentioned.

Sharding as on Discord: an IDENTIFY may carry ``shard: [shard_id, num_shards]``; that session then gets the guilds
(READY, GUILD_CREATE) and the guild events of ``(guild_id >> 22) % num_shards == shard_id`` only, and direct
messages on shard 0. A malformed ``shard`` closes the connection with 4010 (Invalid shard), as Discord does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from captionbot.bot.standin.compression import StreamCompressor, compressor_for
from captionbot.bot.standin.world import (
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    Message,
    World,
    shard_of,
    snowflake,
)

log = logging.getLogger(__name__)

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_RECONNECT = 0, 1, 2, 6, 7
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
# Why acks wait a network round trip: discord.py's heartbeat thread records the send time only after its send has
# completed on the event loop; an ack arriving before that (an in-process gateway answers in microseconds) is timed
# against the previous heartbeat, so the bot logs "Can't keep up ... 41s behind" and reports a latency of one interval.
HEARTBEAT_ACK_DELAY_S = 0.05
REPLAY_LIMIT = 5000  # events kept per session for RESUME


def parse_shard(value: Any) -> tuple[int, int] | None:
    """IDENTIFY's ``shard``: ``(shard_id, num_shards)``, None when absent; ValueError when malformed."""
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
          and value[1] >= 1 and 0 <= value[0] < value[1])
    if not ok:
        raise ValueError(f"invalid shard {value!r}")
    return (value[0], value[1])


class Connection:
    """One websocket with its own compression stream; sends are serialised so the stream stays in order."""

    def __init__(self, ws: web.WebSocketResponse, compressor: StreamCompressor | None) -> None:
        self.ws = ws
        self.compressor = compressor
        self.lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        async with self.lock:
            if self.compressor is None:
                await self.ws.send_str(text)
            else:
                await self.ws.send_bytes(self.compressor.compress(text))


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    events: deque[tuple[int, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=REPLAY_LIMIT))
    conn: Connection | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    shard: tuple[int, int] | None = None  # (shard_id, num_shards) from IDENTIFY; None = unsharded, every guild

    def gets(self, guild_id: str | None) -> bool:
        """Whether this session receives the events of ``guild_id`` (None: a direct message, shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_id == (0 if not guild_id else shard_of(guild_id, count))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number the event, keep it for replay, and send it if connected (a failed send waits for RESUME)."""
        async with self.lock:
            self.seq += 1
            payload = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
            self.events.append((self.seq, payload))
            if self.conn is not None and self.conn.ws.closed:
                self.conn = None
            if self.conn is not None:
                try:
                    await self.conn.send(payload)
                except (ConnectionError, RuntimeError) as exc:
                    log.info("gateway: send failed (%s); %s waits for RESUME", exc, event)
                    self.conn = None


class Gateway:
    """Accepts bot connections on ``/gateway`` and fans events out to every live session."""

    def __init__(self, world: World, token: str, public_url: Callable[[], str], heartbeat_ms: int = 41_250) -> None:
        self.world = world
        self.token = token
        self.public_url = public_url
        self.heartbeat_ms = heartbeat_ms
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.identifies = 0
        self.identified_shards: list[tuple[int, int] | None] = []  # the ``shard`` of each IDENTIFY, in order
        self.resumes = 0
        self._acks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # set at the first READY

    # -- the websocket endpoint ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        try:
            compressor = compressor_for(request.query.get("compress"))
        except ValueError as exc:
            await ws.close(code=4000, message=str(exc).encode())
            return ws
        conn = Connection(ws, compressor)
        self.connections.add(conn)
        session: Session | None = None
        try:
            await conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == OP_HEARTBEAT:
                    ack = asyncio.create_task(self._ack_heartbeat(conn))
                    self._acks.add(ack)
                    ack.add_done_callback(self._acks.discard)
                elif op == OP_IDENTIFY:
                    session = await self._identify(conn, d)
                elif op == OP_RESUME:
                    session = await self._resume(conn, d)
        finally:
            self.connections.discard(conn)
            if session is not None and session.conn is conn:
                session.conn = None
        return ws

    async def _ack_heartbeat(self, conn: Connection) -> None:
        await asyncio.sleep(HEARTBEAT_ACK_DELAY_S)
        if conn.ws.closed:
            return
        try:
            await conn.send({"op": OP_HEARTBEAT_ACK})
        except (ConnectionError, RuntimeError) as exc:
            log.info("gateway: heartbeat ack not sent (%s)", exc)

    async def _identify(self, conn: Connection, d: dict[str, Any]) -> Session | None:
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return None
        try:
            shard = parse_shard(d.get("shard"))
        except ValueError as exc:
            log.info("gateway: IDENTIFY refused: %s", exc)
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return None
        self.identifies += 1
        self.identified_shards.append(shard)
        # A fresh IDENTIFY starts a new session; sessions nobody is connected to are dropped.
        self.sessions = {k: s for k, s in self.sessions.items() if s.conn is not None}
        session = Session(id=snowflake(), intents=int(d.get("intents", 0)), shard=shard)
        self.sessions[session.id] = session
        w = self.world
        guilds = [g for g in w.guild_ids if session.gets(g)]
        session.conn = conn
        ready: dict[str, Any] = {
            "v": 10, "user": {**w.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": g, "unavailable": True} for g in guilds], "session_id": session.id,
            "resume_gateway_url": self.public_url(), "application": {"id": w.application_id, "flags": 0},
            "private_channels": [], "relationships": [], "session_type": "normal",
        }
        if shard is not None:
            ready["shard"] = list(shard)
        await session.dispatch("READY", ready)
        if session.intents & INTENT_GUILDS:
            for g in guilds:
                await session.dispatch("GUILD_CREATE", w.guild_payload(g))
        log.info("gateway: session %s identified (shard %s, %d guild(s))", session.id, shard, len(guilds))
        self.ready.set()
        return session

    async def _resume(self, conn: Connection, d: dict[str, Any]) -> Session | None:
        session = self.sessions.get(d.get("session_id", ""))
        if d.get("token") != self.token or session is None:
            await conn.send({"op": OP_INVALID_SESSION, "d": False})
            return None
        self.resumes += 1
        last_seen = int(d.get("seq") or 0)
        async with session.lock:
            session.conn = conn
            missed = [p for s, p in session.events if s > last_seen]
            for payload in missed:
                await conn.send(payload)
        log.info("gateway: session %s resumed, %d event(s) replayed", session.id, len(missed))
        await session.dispatch("RESUMED", {})
        return session

    # -- events and faults -----------------------------------------------------------------------------------

    async def dispatch_message(self, message: Message) -> None:
        """MESSAGE_CREATE to every session, shaped by its intents (see the module docstring)."""
        bot_id = self.world.bot_user.id
        for session in list(self.sessions.values()):
            if not session.gets(message.guild_id):
                continue
            if message.guild_id and not session.intents & INTENT_GUILD_MESSAGES:
                continue
            sees_content = (
                not message.guild_id or bool(session.intents & INTENT_MESSAGE_CONTENT)
                or message.author.id == bot_id or f"<@{bot_id}>" in message.content
            )
            await session.dispatch("MESSAGE_CREATE", message.payload(with_content=sees_content))

    async def dispatch_update(self, message: Message) -> None:
        """MESSAGE_UPDATE (an edit) to every session that sees guild messages, shaped by its intents."""
        bot_id = self.world.bot_user.id
        for session in list(self.sessions.values()):
            if message.guild_id and not session.intents & INTENT_GUILD_MESSAGES:
                continue
            sees_content = (not message.guild_id or bool(session.intents & INTENT_MESSAGE_CONTENT)
                            or message.author.id == bot_id)
            await session.dispatch("MESSAGE_UPDATE", message.payload(with_content=sees_content))

    async def dispatch_delete(self, message: Message) -> None:
        """MESSAGE_DELETE to every session that sees guild messages."""
        data = {"id": message.id, "channel_id": message.channel_id, "guild_id": message.guild_id}
        for session in list(self.sessions.values()):
            if session.gets(message.guild_id) and (not message.guild_id or session.intents & INTENT_GUILD_MESSAGES):
                await session.dispatch("MESSAGE_DELETE", data)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """``event`` to every session that gets ``data``'s guild (by its ``guild_id``; none: shard 0)."""
        for session in list(self.sessions.values()):
            if session.gets(data.get("guild_id")):
                await session.dispatch(event, data)

    async def disconnect(self, code: int = 4000) -> int:
        """Fault: close every bot connection (resumable code). Returns how many were closed."""
        conns = list(self.connections)
        for conn in conns:
            await conn.ws.close(code=code, message=b"stand-in: injected disconnect")
        return len(conns)

    async def request_reconnect(self) -> None:
        """Fault: send op 7 RECONNECT, as Discord does before moving a session."""
        for conn in list(self.connections):
            await conn.send({"op": OP_RECONNECT, "d": None})
