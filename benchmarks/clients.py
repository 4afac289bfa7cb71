"""The load generator process: joins many clients to a target server and measures what they receive.

Targets: `classe` (this server, over its WebSocket protocol), `relay` (aiortc's MediaRelay
baseline, over HTTP offer/answer) and `udp` (a bare uvloop UDP forwarder, the ceiling).
Prints WINDOW_START / WINDOW_END when the measured window opens and closes, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import socket
import sys
import time
from typing import Any

import aiohttp
import aioice.ice
import numpy as np
import pylibsrtp
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from .fastpath import FastPath, LatencyRecorder, neuter
from .media import encode_audio, encode_video
from .publisher import Stream, replay

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("client setup timed out")
        await asyncio.sleep(0.05)


class Publishing:
    """A publisher peer connection whose streams are sent from pre-encoded frames."""

    def __init__(self, video: bool, audio: bool) -> None:
        self.pc = new_pc()
        self.params: dict[str, Any] = {}
        self.kinds = [k for k, on in (("video", video), ("audio", audio)) if on]
        for kind in self.kinds:
            t = self.pc.addTransceiver(kind, direction="sendonly")
            if kind == "video":
                t.setCodecPreferences(
                    [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
                )

    async def offer(self) -> str:
        for t in self.pc.getTransceivers():

            async def record(parameters: Any, t: Any = t) -> None:
                self.params[t.kind] = (t, parameters)

            t.sender.send = record  # type: ignore[method-assign]
            t.receiver.receive = record  # type: ignore[method-assign]
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def connect(self, answer: str, trailer: bool) -> tuple[FastPath, dict[str, Stream]]:
        """Applies the server's answer and waits for DTLS: the path to send on and a stream per kind."""
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_until(lambda: len(self.params) == len(self.kinds))
        path = FastPath(self.pc)
        await wait_until(lambda: path.connected)
        streams = {}
        for kind, (t, p) in self.params.items():
            mid_ext = next((e.id for e in p.headerExtensions if e.uri == MID_URI), 0)
            streams[kind] = Stream(t.sender._ssrc, p.codecs[0].payloadType, t.mid, mid_ext, trailer)
        return path, streams

    async def start(
        self, answer: str, frames: dict[str, list[Any]], trailer: bool, sent: list[int], stop: asyncio.Event
    ) -> asyncio.Task[None]:
        path, streams = await self.connect(answer, trailer)
        video, audio = ((streams[k], frames[k]) if k in streams else None for k in ("video", "audio"))
        return asyncio.create_task(replay(path, video, audio, sent, stop))


class PacketCounter:
    """MediaRelay re-encodes, so its packets carry no timing trailer: count them only."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, packet: bytes) -> None:
        self.count += 1


class ClasseClient:
    def __init__(self, http: aiohttp.ClientSession, url: str, class_id: str, name: str, recorder: Any) -> None:
        self.http, self.url, self.class_id, self.name, self.recorder = http, url, class_id, name, recorder
        self.sub: RTCPeerConnection | None = None
        self.path: FastPath | None = None
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.joined: dict[str, Any] = {}
        self.offers = 0

    async def join(self, role: str = "student") -> None:
        async with self.http.post(
            f"{self.url}/api/dev/token", json={"class_id": self.class_id, "name": self.name, "role": role}
        ) as r:
            token = (await r.json())["token"]
        self.ws = await self.http.ws_connect(f"{self.url}/ws", heartbeat=None, max_msg_size=0)
        self.reader = asyncio.create_task(self._read())
        await self.ws.send_json({"type": "join", "protocol": 1, "token": token})
        self.joined = await self.replies.get()
        assert self.joined["type"] == "joined", self.joined

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["type"] == "subscribe_offer":
                await self._answer(data["sdp"])
            elif data["type"] in ("joined", "publish_answer", "error"):
                await self.replies.put(data)

    async def _answer(self, sdp: str) -> None:
        if self.sub is None:
            self.sub = new_pc()
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        neuter(self.sub)
        if self.path is None:
            self.path = FastPath(self.sub, self.recorder)
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        await self.ws.send_json({"type": "subscribe_answer", "sdp": self.sub.localDescription.sdp})
        self.offers += 1

    async def publish(self, pub: Publishing) -> str:
        sdp = await pub.offer()
        tracks = [
            {"mid": t.mid, "source": "camera" if t.kind == "video" else "microphone"} for t in pub.pc.getTransceivers()
        ]
        await self.ws.send_json({"type": "publish", "sdp": sdp, "tracks": tracks})
        reply = await self.replies.get()
        assert reply["type"] == "publish_answer", reply
        return str(reply["sdp"])


async def run_classe(args: argparse.Namespace, frames: dict[str, list[Any]]) -> dict[str, Any]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # WebSockets hold connections
    stop = asyncio.Event()
    sent: list[int] = []
    recorders: list[LatencyRecorder] = []
    publishers: list[tuple[ClasseClient, Publishing]] = []
    if args.scenario == "class":
        plan = [("teacher", True, True)] + [(f"s{i}", False, True) for i in range(30)]
    else:
        plan = [("teacher", True, True)] + [(f"s{i}", False, False) for i in range(args.subscribers)]
    clients = []
    for name, video, audio in plan:
        recorder = LatencyRecorder()
        recorders.append(recorder)
        client = ClasseClient(http, args.url, "bench", name, recorder)
        await client.join("teacher" if name == "teacher" else "student")
        clients.append(client)
        if video or audio:
            publishers.append((client, Publishing(video, audio)))
    tasks = []
    for client, pub in publishers:
        answer = await client.publish(pub)
        tasks.append(await pub.start(answer, frames, True, sent, stop))
    expected_tracks = sum(len(p.kinds) for _, p in publishers)
    print(f"{len(clients)} clients joined, {len(publishers)} publishing", file=sys.stderr, flush=True)
    # every client must have received every track it should before measuring
    await wait_until(lambda: all(c.path is not None and c.offers > 0 for c in clients[1:]), 120)
    print("all subscriptions negotiated", file=sys.stderr, flush=True)
    return await measure(
        args,
        recorders[1:] if args.scenario != "class" else recorders,
        sent,
        stop,
        tasks,
        extra={"tracks": expected_tracks},
        cleanup=http.close,
    )


async def run_relay(args: argparse.Namespace, frames: dict[str, list[Any]]) -> dict[str, Any]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # WebSockets hold connections
    stop = asyncio.Event()
    sent: list[int] = []
    pub = Publishing(True, True)
    async with http.post(f"{args.url}/offer", json={"role": "publisher", "sdp": await pub.offer()}) as r:
        answer = (await r.json())["sdp"]
    tasks = [await pub.start(answer, frames, False, sent, stop)]
    counters = []
    for _ in range(args.subscribers):
        pc = new_pc()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        neuter(pc)
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{args.url}/offer", json={"role": "subscriber", "sdp": pc.localDescription.sdp}) as r:
            answer = (await r.json())["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        counter = PacketCounter()
        FastPath(pc, counter)
        counters.append(counter)
    await asyncio.sleep(args.warmup)
    print("WINDOW_START", flush=True)
    before = sum(c.count for c in counters)
    await asyncio.sleep(args.duration)
    received = sum(c.count for c in counters) - before
    print("WINDOW_END", flush=True)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.close()
    return {"received_packets": received, "received_pps": received / args.duration}


async def run_udp(args: argparse.Namespace, frames: dict[str, list[Any]]) -> dict[str, Any]:
    """Plain UDP: the publisher sends RTP, subscribers say hello and receive SRTP."""
    loop = asyncio.get_running_loop()
    host, port = args.url.split(":")
    target = (host, int(port))
    recorders = []

    class Sub(asyncio.DatagramProtocol):
        def __init__(self, index: int, recorder: LatencyRecorder) -> None:
            self.session = pylibsrtp.Session(udp_policy(index, pylibsrtp.Policy.SSRC_ANY_INBOUND))
            self.recorder = recorder

        def datagram_received(self, data: bytes, addr: Any) -> None:
            try:
                self.recorder(self.session.unprotect(data))
            except pylibsrtp.Error:
                pass

    for i in range(args.subscribers):
        recorder = LatencyRecorder()
        recorders.append(recorder)
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(Sub, i, recorder), local_addr=("127.0.0.1", 0)
        )
        transport.sendto(b"HELLO %d" % i, target)

    class Plain:
        def send(self, packet: bytes) -> None:
            sock.sendto(packet, target)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    stop = asyncio.Event()
    sent: list[int] = []
    video = (Stream(1, 96, "0", 0, True), frames["video"])
    audio = (Stream(2, 111, "1", 0, True), frames["audio"])
    tasks = [asyncio.create_task(replay(Plain(), video, audio, sent, stop))]  # type: ignore[arg-type]
    return await measure(args, recorders, sent, stop, tasks, {}, None)


def udp_policy(index: int, ssrc_type: int) -> pylibsrtp.Policy:
    key = hashlib.sha256(b"classe-bench-%d" % index).digest()[:30]
    return pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)


async def measure(
    args: argparse.Namespace,
    recorders: list[LatencyRecorder],
    sent: list[int],
    stop: asyncio.Event,
    tasks: list[asyncio.Task[None]],
    extra: dict[str, Any],
    cleanup: Any,
) -> dict[str, Any]:
    await asyncio.sleep(args.warmup)
    start = time.monotonic_ns()
    window = (start, start + int(args.duration * 1e9))
    for r in recorders:
        r.window = window
    print("WINDOW_START", flush=True)
    await asyncio.sleep(args.duration)
    print("WINDOW_END", flush=True)
    await asyncio.sleep(0.5)  # let the last packets of the window arrive
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    sent_in_window = sum(1 for t in sent if window[0] <= t < window[1])
    delays = np.array([d for r in recorders for d in r.delays_us]) if recorders else np.array([])
    received = sum(len(r.ids) for r in recorders)
    # in a class every packet should reach every participant but its sender
    expected = sent_in_window * (len(recorders) - 1 if args.scenario == "class" else len(recorders))
    result = {
        "sent_packets": sent_in_window,
        "received_packets": received,
        "received_pps": received / args.duration,
        "loss": None if not expected else max(0.0, 1 - received / expected),
        "latency_us": {
            "p50": float(np.percentile(delays, 50)) if delays.size else None,
            "p99": float(np.percentile(delays, 99)) if delays.size else None,
            "max": float(delays.max()) if delays.size else None,
        },
        **extra,
    }
    if cleanup is not None:
        await cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["classe", "relay", "udp"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--scenario", choices=["fanout", "class"], default="fanout")
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    frames = {"video": encode_video(), "audio": encode_audio()}
    runner = {"classe": run_classe, "relay": run_relay, "udp": run_udp}[args.target]
    result = uvloop.run(runner(args, frames))
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
