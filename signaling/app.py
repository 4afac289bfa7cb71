"""The aiohttp application: WebSocket signaling, health, metrics, dev tokens and the web client."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sfu.core import MediaStats

from .config import Settings
from .metrics import make_registry
from .protocol import MAX_MESSAGE_BYTES, ProtocolError, decode, encode, error
from .room import Participant, Room
from .tokens import Role, TokenError, mint_join_token, verify_join_token

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "web_client" / "static"
SETTINGS = web.AppKey("settings", Settings)


class ClassServer:
    """The live classes of this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = MediaStats()
        self.rooms: dict[str, Room] = {}
        self.registry = make_registry(self.stats, self.census)

    def census(self) -> tuple[int, int, int]:
        rooms = list(self.rooms.values())
        return (
            len(rooms),
            sum(len(r.participants) for r in rooms),
            sum(len(r.live.session.producers) for r in rooms),
        )

    def room(self, class_id: str) -> Room:
        room = self.rooms.get(class_id)
        if room is None:
            room = self.rooms[class_id] = Room(class_id, self.settings, self.stats, self._forget)
        return room

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                await room.leave(participant)


SERVER = web.AppKey("server", ClassServer)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    server = request.app[SERVER]
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        if ws.closed:
            raise ConnectionError("websocket closed")
        async with lock:
            await ws.send_str(text)

    participant: Participant | None = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                await send(error(ProtocolError("bad_message", "only text messages are accepted")))
                continue
            try:
                message = decode(msg.data)
                participant = await handle(server, participant, message, send)
            except ProtocolError as exc:
                await send(error(exc))
                if exc.fatal:
                    break
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("message handling failed")
                await send(error(ProtocolError("internal_error", "the server could not handle this message")))
            if participant is not None and participant.closed:
                break
    except ConnectionError:
        pass
    finally:
        if participant is not None:
            await participant.room.leave(participant)
        await ws.close()
    return ws


async def handle(
    server: ClassServer, participant: Participant | None, message: dict[str, Any], send: Any
) -> Participant | None:
    kind = message["type"]
    ref = message["id"]
    if kind == "ping":
        await send(encode("pong", ref=ref))
        return participant
    if kind == "join":
        if participant is not None:
            raise ProtocolError("already_joined", "this connection has already joined", ref)
        try:
            grant = verify_join_token(server.settings.token_secret, message["token"])
        except TokenError:
            raise ProtocolError("invalid_token", "the join token is invalid or expired", ref, fatal=True) from None
        return await server.room(grant.class_id).join(grant, send)
    if participant is None:
        raise ProtocolError("not_joined", "send 'join' first", ref)
    if kind == "publish":
        await participant.publish(message["sdp"], message["tracks"], ref)
    elif kind == "subscribe_answer":
        participant.on_answer(message["sdp"], ref)
    elif kind == "unpublish":
        await participant.unpublish(message["mid"], ref)
    elif kind == "leave":
        await participant.room.leave(participant)
    return participant


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVER].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def dev_token(request: web.Request) -> web.Response:
    """Mint a join token without an account: only in dev mode, until access control exists."""
    settings = request.app[SETTINGS]
    try:
        body = await request.json()
        class_id = str(body["class_id"])[:64]
        name = str(body["name"])[:64]
        role = Role(body.get("role", "student"))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "expected JSON with class_id, name and role"}, status=400)
    if not class_id or not name:
        return web.json_response({"error": "class_id and name must not be empty"}, status=400)
    token = mint_join_token(settings.token_secret, class_id, name, role, settings.token_ttl_seconds)
    return web.json_response({"token": token})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    server = ClassServer(settings)
    app[SETTINGS] = settings
    app[SERVER] = server
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if settings.dev_mode:
        app.router.add_post("/api/dev/token", dev_token)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)

    async def shutdown(app: web.Application) -> None:
        await server.close()

    app.on_shutdown.append(shutdown)
    return app
