"""One signaling WebSocket: the message loop, and what the server does with each message."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from . import moderation
from .api.context import client_address
from .directory import DirectoryUnavailable
from .events import Event, JoinResult
from .participant import Participant
from .protocol import ProtocolError, decode, encode, error, max_answer_bytes
from .room import Room
from .server import ClassServer
from .tokens import JoinGrant, TokenError, verify_join_token

log = logging.getLogger(__name__)
# The messages that may change what a class remembers (signaling/classroom.py): the class's
# snapshot is shared after them, not after the many others (candidates, views, chat).
DECISIONS = frozenset({"join", "moderate", "leave"})
# A node that drains or stops refuses joins (docs/protocol.md, "Restarts"): the client tries again.
REFUSALS = {
    "server_stopping": "the server is stopping: join again in a few seconds",
    "server_draining": "this server opens no new class now: join again later",
}


class Connection:
    """A client's WebSocket: waiting (for the teacher, in the lobby) or carrying a participant."""

    def __init__(self, ws: web.WebSocketResponse, address: str = "") -> None:
        self.ws = ws
        self.address = address  # the client's address: for the limits per address only, never logged
        self.participant: Participant | None = None
        self.waiting_in: Room | None = None
        self.class_id: str | None = None  # the class joined: its decisions are shared after each message
        self.ended = False
        self._lock = asyncio.Lock()
        self._closing: asyncio.Task[Any] | None = None

    async def send(self, text: str) -> None:
        if self.ws.closed:
            raise ConnectionError("websocket closed")
        async with self._lock:
            await self.ws.send_str(text)

    async def end(self, exc: ProtocolError) -> None:
        """Tell the client why, then close: the message loop ends, and its cleanup takes the participant out."""
        if self.ended:
            return
        self.ended = True
        try:
            await self.send(error(exc))
        except ConnectionError:
            pass
        self._closing = asyncio.create_task(self.ws.close())


async def websocket(request: web.Request, server: ClassServer) -> web.StreamResponse:
    """One signaling WebSocket, counted against its client address's share while it is open."""
    address = client_address(request)
    settings = server.settings
    if server.sockets[address] >= settings.max_connections_per_address:
        return web.json_response(
            {"error": "too_many_connections", "message": "too many open connections from this address"}, status=429
        )
    server.sockets[address] += 1  # before any await: simultaneous upgrades cannot all slip under the cap
    try:
        max_answer = max_answer_bytes(settings.max_participants_per_class, settings.max_tracks_per_participant)
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=max_answer)
        await ws.prepare(request)
        await _serve(server, Connection(ws, address), max_answer)
        return ws
    finally:
        server.sockets[address] -= 1
        if not server.sockets[address]:
            del server.sockets[address]


async def _serve(server: ClassServer, conn: Connection, max_answer: int) -> None:
    ws = conn.ws
    deadline = asyncio.create_task(_join_deadline(conn, server.settings.join_timeout_seconds))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                await conn.send(error(ProtocolError("bad_message", "only text messages are accepted")))
                continue
            kind = None
            try:
                message = decode(msg.data, max_answer)
                kind = message["type"]
                await handle(server, conn, message)
            except ProtocolError as exc:
                if exc.fatal:
                    await conn.end(exc)
                    break
                await conn.send(error(exc))
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("message handling failed")
                await conn.send(error(ProtocolError("internal_error", "the server could not handle this message")))
            if kind in DECISIONS and conn.class_id is not None:
                server.remember(conn.class_id)
            if conn.ended:
                break
    except ConnectionError:
        pass
    finally:
        deadline.cancel()
        if conn.participant is not None:
            await conn.participant.room.leave(conn.participant)
        elif conn.waiting_in is not None:
            await conn.waiting_in.leave_lobby(conn)
        conn.participant = None
        conn.waiting_in = None
        if conn.class_id is not None:
            server.remember(conn.class_id)
        await ws.close()


async def _join_deadline(conn: Connection, seconds: float) -> None:
    """A socket that never joins would hold a file descriptor forever: it gets `join_timeout` seconds."""
    await asyncio.sleep(seconds)
    if conn.participant is None and conn.waiting_in is None:
        await conn.end(ProtocolError("join_timeout", f"no 'join' within {seconds:g} seconds", fatal=True))


async def _check_placement(server: ClassServer, class_id: str, ref: Any) -> None:
    """A class lives on one node: a participant who reached another is sent back to POST /api/join.
    With the directory unreachable, a class already hosted here goes on; none opens here."""
    try:
        placement = await server.directory.hold(class_id)
    except DirectoryUnavailable:
        if class_id in server.hosted():
            return
        raise ProtocolError(
            "directory_unavailable", "the server cannot tell where this class is hosted: try again", ref, fatal=True
        ) from None
    if not placement.here:
        raise ProtocolError("wrong_node", "this class is hosted by another server: join again", ref, fatal=True)


def _refuse_if_unwelcome(server: ClassServer, class_id: str, ref: Any) -> None:
    refused = server.refusal(class_id)
    if refused is not None:
        raise ProtocolError(refused, REFUSALS[refused], ref, fatal=True)


async def _join(server: ClassServer, conn: Connection, token: str, ref: Any) -> None:
    """Let in, make wait, or refuse: each outcome is a class event (signaling/events.py)."""
    grant: JoinGrant | None = None
    try:
        try:
            grant = verify_join_token(server.settings.token_secret, token)
        except TokenError:
            raise ProtocolError("invalid_token", "the join token is invalid or expired", ref, fatal=True) from None
        _refuse_if_unwelcome(server, grant.class_id, ref)
        if grant.account is not None and not await server.account_usable(grant.account):
            raise ProtocolError("account_disabled", "this account was suspended", ref, fatal=True)
        await _check_placement(server, grant.class_id, ref)
        await server.recall(grant.class_id)
        _refuse_if_unwelcome(server, grant.class_id, ref)  # a SIGTERM while the directory answered
        conn.class_id = grant.class_id
        await server.room(grant.class_id).arrive(grant, conn)
    except ProtocolError as exc:
        server.events.joined(JoinResult.REFUSED)
        server.events.emit(
            Event.JOIN_REFUSED,
            grant.class_id if grant else None,
            grant.participant_id if grant else None,
            grant.role if grant else None,
            exc.code,
        )
        raise
    server.events.joined(JoinResult.JOINED if conn.participant is not None else JoinResult.WAITING)


async def handle(server: ClassServer, conn: Connection, message: dict[str, Any]) -> None:
    kind = message["type"]
    ref = message["id"]
    if kind == "ping":
        await conn.send(encode("pong", ref=ref))
        return
    if kind == "join":
        if conn.participant is not None or conn.waiting_in is not None:
            raise ProtocolError("already_joined", "this connection has already joined", ref)
        await _join(server, conn, message["token"], ref)
        return
    participant = conn.participant
    if participant is None:
        if conn.waiting_in is not None and kind == "leave":
            await conn.waiting_in.leave_lobby(conn)
            conn.waiting_in = None
            conn.ended = True
            return
        hint = "wait until a teacher lets you in" if conn.waiting_in is not None else "send 'join' first"
        raise ProtocolError("not_joined", hint, ref)
    if kind in ("publish", "unpublish"):
        moderation.spend(participant, "tracks", ref)
    if kind == "publish":
        await participant.publish(message["sdp"], message["tracks"], ref)
    elif kind == "subscribe_answer":
        participant.on_answer(message["sdp"], ref)
    elif kind == "unpublish":
        await participant.unpublish(message["mid"], ref)
    elif kind == "leave":
        conn.participant = None
        conn.ended = True
        await participant.room.leave(participant)
    elif kind == "chat":
        await moderation.chat(participant, message["text"], ref)
    elif kind == "hand":
        await moderation.raise_hand(participant, message["raised"], ref)
    elif kind == "media":
        await moderation.set_media(participant, message["source"], message["enabled"], ref)
    elif kind == "moderate":
        await moderation.moderate(participant, message)
    elif kind == "view":
        await moderation.set_view(participant, message)
    elif kind == "candidate":
        await participant.add_candidate(message["connection"], message["candidate"], ref)
    elif kind == "relay_path":
        participant.relay_path(message["connection"], message["protocol"])
