"""The operator's socket: a Unix socket (`admin_socket`, data_dir/admin.sock by default) through
which `classe drain` reaches the running server.

A Unix socket rather than an HTTP route: the reverse proxy, which connects from loopback, cannot
forward to it; its file's permissions (0600: the server's user, and root) are the access control,
with no token to configure or leak; and the answer says what the node did (unlike a signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .directory import DirectoryUnavailable, NodeState
from .events import Event
from .server import ClassServer

SERVER = web.AppKey("server", ClassServer)


def status(server: ClassServer) -> dict[str, Any]:
    classes, participants, _ = server.census()
    return {
        "node": server.directory.node_id,
        "state": server.node_state(),
        "classes": classes,
        "participants": participants,
    }


async def _status(request: web.Request) -> web.Response:
    return web.json_response(status(request.app[SERVER]))


async def _drain(request: web.Request) -> web.Response:
    """`{"draining": true}` (the default), or false: take new classes again (not while stopping).
    With Redis the other nodes learn it at once; if Redis does not answer, at its next renewal."""
    server = request.app[SERVER]
    try:
        body = await request.json() if request.can_read_body else {}
        draining = body.get("draining", True)
    except (ValueError, AttributeError):
        draining = None
    if not isinstance(draining, bool):
        return web.json_response({"error": "expected JSON with draining: true or false"}, status=400)
    if server.stopping:
        return web.json_response({"error": "the server is stopping", **status(server)}, status=409)
    answer = {}
    try:
        await server.directory.set_state(NodeState.DRAINING if draining else NodeState.READY)
    except DirectoryUnavailable:
        answer["warning"] = "the class directory (Redis) does not answer: the other nodes learn it when it does"
    classes, participants, _ = server.census()
    event = Event.NODE_DRAINING if draining else Event.NODE_READY
    server.events.emit(event, classes=classes, participants=participants)
    return web.json_response({**status(server), **answer})


async def open_socket(server: ClassServer, path: Path) -> web.AppRunner:
    """Listen on `path`; a socket file left by a process that died is replaced, one that answers is
    another process's: refused, each process needs its own."""
    if path.exists():
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            path.unlink()
        else:
            writer.close()
            raise SystemExit(f"classe: another process answers on {path}: give each process its own admin_socket")
    path.parent.mkdir(parents=True, exist_ok=True)
    app = web.Application()
    app[SERVER] = server
    app.router.add_get("/status", _status)
    app.router.add_post("/drain", _drain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, _private_socket(path)).start()
    return runner


def _private_socket(path: Path) -> socket.socket:
    """A listening socket at `path` that only this user (and root) can connect to from its first
    instant: bound in a fresh 0700 folder, made 0600, then moved into place."""
    private = Path(tempfile.mkdtemp(prefix=".admin-", dir=path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(private / "sock"))
        os.chmod(private / "sock", 0o600)
        os.rename(private / "sock", path)
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            (private / "sock").unlink()
        private.rmdir()
    return sock


async def close_socket(runner: web.AppRunner, path: Path) -> None:
    await runner.cleanup()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def ask(path: Path, method: str, route: str, body: Any = None) -> dict[str, Any]:
    """One request to the running server's socket (the `classe drain` side)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as http:
        async with http.request(method, f"http://classe{route}", json=body) as response:
            answer: dict[str, Any] = await response.json()
            return answer
