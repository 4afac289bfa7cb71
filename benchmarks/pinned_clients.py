"""The load generator of the pinned fan-out benchmark (driven by `benchmarks.pinned`, on CPU 1).

One publisher, a camera and a microphone replayed from pre-encoded frames, each kind at a packet
rate the driver sets, and subscribers that receive both through one `fastpath.Tally` (counted at
the socket, one packet in 16 decrypted for the delay). The server is Classe (its WebSocket
protocol) or Janus's VideoRoom (its HTTP API): the same media and the same clients for both.
The clients' ICE uses one address (`--address`, on the benchmark's veth pair).

The driver sends one JSON command a line on stdin; each is answered by one JSON line on stdout:
- `{"subscribers": n}`: join subscribers until there are n, all with DTLS done;
- `{"send": {"video": pps, "audio": pps}}`: the publisher's packet rates (0: that kind is silent);
- `{"window": seconds, "settle": seconds}`: wait `settle`, print `WINDOW_START`, count for
  `seconds`, print `WINDOW_END`, answer with what was sent and received.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from typing import Any, Protocol

import aiohttp
import aioice.ice
import numpy as np
import uvloop
from aiortc import RTCPeerConnection, RTCSessionDescription

from .clients import ClasseClient, Publishing, new_pc, wait_until
from .fastpath import FastPath, Tally, neuter
from .janus import ROOM, JanusSession
from .media import EncodedFrame, encode_audio, encode_video
from .publisher import Stream


class Sender:
    """One stream's frames at a packet rate that the driver changes while it runs.

    Frames keep their size (a keyframe is several packets): the frame rate is what follows the
    packet rate, as a camera's does. A sender that falls behind catches up at most 0.1 s.
    """

    def __init__(self, path: FastPath, stream: Stream, frames: list[EncodedFrame]) -> None:
        self.path, self.stream, self.frames = path, stream, frames
        self.per_frame = sum(len(f.payloads) for f in frames) / len(frames)
        self.pps = 0.0
        self.sent = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ids = itertools.count()
        due = loop.time()
        for frame in itertools.cycle(self.frames):
            while not self.pps:
                await asyncio.sleep(0.05)
                due = loop.time()
            for packet in self.stream.packets(frame, ids, None):
                self.path.send(packet)
            self.sent += len(frame.payloads)
            due = max(due + self.per_frame / self.pps, loop.time() - 0.1)
            await asyncio.sleep(max(0.0, due - loop.time()))


class Subscriber(ClasseClient):
    """A Classe student that only receives, through the shared tally."""

    def __init__(self, http: aiohttp.ClientSession, url: str, name: str, tally: Tally) -> None:
        super().__init__(http, url, "bench", name, None)
        self.tally = tally

    async def _answer(self, sdp: str) -> None:
        first = self.sub is None
        if self.sub is None:
            self.sub = new_pc()
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        neuter(self.sub)
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        if first:  # its sockets exist once it has gathered
            self.tally.attach(self.sub)
        await self.ws.send_json({"type": "subscribe_answer", "sdp": self.sub.localDescription.sdp})
        self.offers += 1


class Server(Protocol):
    """What the load generator needs of a server: a publisher (its answer), and one more subscriber."""

    async def publish(self, pub: Publishing) -> str: ...

    async def subscribe(self, index: int, tally: Tally) -> RTCPeerConnection: ...


class Classe:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def publish(self, pub: Publishing) -> str:
        teacher = ClasseClient(self.http, self.url, "bench", "teacher", None)
        await teacher.join("teacher")
        return await teacher.publish(pub)

    async def subscribe(self, index: int, tally: Tally) -> RTCPeerConnection:
        client = Subscriber(self.http, self.url, f"s{index}", tally)
        await client.join()
        await wait_until(lambda: client.sub is not None and Tally.connected(client.sub), 60)
        assert client.sub is not None
        return client.sub


class Janus:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.session = JanusSession(http, url)
        self.feed = 0

    async def publish(self, pub: Publishing) -> str:
        await self.session.create()
        handle = await self.session.attach()
        request = {"request": "join", "ptype": "publisher", "room": ROOM, "display": "teacher"}
        self.feed = (await self.session.message(handle, request))["plugindata"]["data"]["id"]
        offer = {"type": "offer", "sdp": await pub.offer()}
        answer = await self.session.message(handle, {"request": "publish"}, offer)
        await self.session.trickle_done(handle)
        return str(answer["jsep"]["sdp"])

    async def subscribe(self, index: int, tally: Tally) -> RTCPeerConnection:
        handle = await self.session.attach()
        request = {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": self.feed}]}
        offer = (await self.session.message(handle, request))["jsep"]["sdp"]
        pc = new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        neuter(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        tally.attach(pc)
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        await self.session.message(handle, {"request": "start"}, answer)
        await self.session.trickle_done(handle)
        await wait_until(lambda: Tally.connected(pc), 60)
        return pc


async def until_up(http: aiohttp.ClientSession, url: str) -> None:
    """The server answers HTTP (it runs in the namespace, where the driver cannot try it)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.get(url):
                return
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def all_receiving(tally: Tally, timeout: float = 5.0) -> int:
    """Waits until every subscriber receives (a new one's video waits for a keyframe, a second at
    most, and the server may still be answering its ICE checks); returns how many still do not,
    which a server shedding load may keep so (the window then measures it as it is)."""
    deadline = time.monotonic() + timeout
    while True:
        before = [seen[0] for seen in tally.seen]
        await asyncio.sleep(0.5)
        silent = sum(seen[0] == b for seen, b in zip(tally.seen, before, strict=True))
        if not silent or time.monotonic() > deadline:
            return silent


def reply(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


async def run(args: argparse.Namespace) -> None:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # WebSockets hold connections
    await until_up(http, args.url)
    server: Server = Classe(http, args.url) if args.target == "classe" else Janus(http, args.url)
    pub = Publishing(video=True, audio=True)
    path, streams = await pub.connect(await server.publish(pub), trailer=True)
    frames = {"video": encode_video(), "audio": encode_audio()}
    senders = {kind: Sender(path, streams[kind], frames[kind]) for kind in ("video", "audio")}
    running = [asyncio.create_task(s.run()) for s in senders.values()]  # held: the loop keeps weak references
    tally = Tally()
    subscribers: list[RTCPeerConnection] = []
    reply({"ready": True, "per_frame": {k: s.per_frame for k, s in senders.items()}})
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        if "subscribers" in command:
            started = time.monotonic()
            while len(subscribers) < command["subscribers"]:
                batch = range(len(subscribers), min(command["subscribers"], len(subscribers) + 10))
                subscribers += await asyncio.gather(*(server.subscribe(i, tally) for i in batch))
            reply({"subscribers": len(subscribers), "setup_s": time.monotonic() - started})
        elif "send" in command:
            for kind, pps in command["send"].items():
                senders[kind].pps = float(pps)
            reply({"send": command["send"]})
        elif "window" in command:
            await asyncio.sleep(command["settle"])
            silent = await all_receiving(tally)
            before = {k: s.sent for k, s in senders.items()}
            print("WINDOW_START", flush=True)
            start = time.monotonic()
            tally.open()
            await asyncio.sleep(command["window"])
            tally.close()
            span = time.monotonic() - start
            print("WINDOW_END", flush=True)
            sent = {k: (s.sent - before[k]) / span for k, s in senders.items()}
            delays = np.array(tally.delays_us)
            reply(
                {
                    "subscribers": len(subscribers),
                    "silent_at_start": silent,
                    "window_s": span,
                    "sent_pps": sent,
                    "delivered_pps": tally.received / span,
                    "delivery": tally.received / span / (sum(sent.values()) * len(subscribers))
                    if sum(sent.values()) and subscribers
                    else None,
                    "delay_ms": {
                        q: float(np.percentile(delays, int(q[1:]))) / 1000 if delays.size else None
                        for q in ("p50", "p99")
                    },
                    "delay_samples": int(delays.size),
                    "publisher_ice": pub.pc.iceConnectionState,
                    "subscribers_ice_failed": sum(pc.iceConnectionState in ("failed", "closed") for pc in subscribers),
                    "janus_hangups": server.session.hangups if isinstance(server, Janus) else None,
                }
            )
    for task in running:
        task.cancel()
    if isinstance(server, Janus):
        server.session.poller.cancel()
    await http.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["classe", "janus"])
    parser.add_argument("--url", required=True, help="the server's HTTP root, e.g. http://127.0.0.1:8080")
    parser.add_argument("--address", required=True, help="the clients' ICE host address")
    args = parser.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.address]
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
