"""Janus (Debian's `janus`, VideoRoom plugin) as a baseline: its configuration and a client of its HTTP API.

The server side writes a configuration folder that loads only the VideoRoom plugin and the HTTP
transport, with one event loop for all handles (`event_loops = 1`, the tuned setting), no STUN
server, and ICE and HTTP on one given address only. Janus ignores loopback interfaces for ICE and
binds its media sockets to their interface, so the benchmark gives it an address on a veth pair
between two network namespaces, the clients' in the other: its HTTP listens on that address too,
since a namespace's loopback cannot be reached from another (nothing outside the pair can reach it).
The client side is what the load generator needs of the HTTP API: a session, handles, messages,
and the long poll that brings the plugin's answers.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM = 1234


def write_config(folder: Path, address: str, http_port: int) -> Path:
    """A configuration folder for `janus -F folder`; returns the janus.jcfg to pass with `-C`.

    Plugins and transports are read from folders holding only the two libraries needed, so nothing
    else is loaded. The room has no bitrate cap (Janus would only send REMB) and no FIR period.
    """
    for kind, library in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        (folder / kind / library).symlink_to(LIBRARIES / kind / library)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    debug_level = 3
    interface = "{address}"
    event_loops = 1
    session_timeout = 60
}}
certificates: {{}}
media: {{}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{address}"
    ignore_mdns = true
}}
plugins: {{}}
transports: {{}}
loggers: {{}}
events: {{}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "{address}"
    https = false
}}
admin: {{
    admin_http = false
}}
cors: {{}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{}}
room-{ROOM}: {{
    description = "bench"
    publishers = 1
    bitrate = 0
    fir_freq = 0
    audiocodec = "opus"
    videocodec = "vp8"
    record = false
}}
"""
    )
    return folder / "janus.jcfg"


def version() -> str:
    """`janus --version`'s first line, e.g. `Janus version: 1102 (1.1.2)`."""
    if shutil.which("janus") is None:
        raise SystemExit("janus is not installed: apt-get install janus (Debian's 1.1.2), or --no-janus")
    out = subprocess.run(["janus", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].removeprefix("Janus version: ") if out else "unknown"


class JanusSession:
    """One Janus session over HTTP, with the long poll that delivers the plugin's events."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.ids = itertools.count()
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.hangups = 0  # peer connections Janus closed (ICE or DTLS failure, timeout)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.url}{path}", json=body) as r:
            reply: dict[str, Any] = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply['error']}")
        return reply

    async def create(self) -> None:
        reply = await self._post("/janus", {"janus": "create", "transaction": str(next(self.ids))})
        self.session = reply["data"]["id"]
        self.poller = asyncio.create_task(self._poll())

    async def attach(self) -> int:
        body = {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": str(next(self.ids))}
        return int((await self._post(f"/janus/{self.session}", body))["data"]["id"])

    async def message(self, handle: int, request: dict[str, Any], jsep: dict[str, Any] | None = None) -> dict[str, Any]:
        """Sends a plugin request and waits for its event (the plugin answers asynchronously)."""
        transaction = str(next(self.ids))
        future = self.pending[transaction] = asyncio.get_running_loop().create_future()
        body: dict[str, Any] = {"janus": "message", "body": request, "transaction": transaction}
        if jsep is not None:
            body["jsep"] = jsep
        reply = await self._post(f"/janus/{self.session}/{handle}", body)
        if reply.get("janus") == "success":  # a synchronous request
            self.pending.pop(transaction)
            return reply
        event: dict[str, Any] = await asyncio.wait_for(future, 30)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"janus videoroom: {data['error']}")
        return event

    async def trickle_done(self, handle: int) -> None:
        """Our candidates are all in the SDP (aiortc does not trickle)."""
        body = {"janus": "trickle", "candidate": {"completed": True}, "transaction": str(next(self.ids))}
        await self._post(f"/janus/{self.session}/{handle}", body)

    async def _poll(self) -> None:
        while True:
            async with self.http.get(f"{self.url}/janus/{self.session}?maxev=50") as r:
                events = await r.json(content_type=None)
            for event in events if isinstance(events, list) else [events]:
                future = self.pending.pop(event.get("transaction", ""), None)
                if future is not None and event.get("janus") == "event":
                    future.set_result(event)
                elif event.get("janus") == "hangup":
                    self.hangups += 1
