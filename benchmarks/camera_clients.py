"""The load generator of the class of 30 with cameras (driven by `benchmarks.cameras`).

One teacher and 30 students join a Classe server, each publishing a camera and a microphone from
pre-encoded frames; 2 or 3 students talk at a time and the talkers change every few seconds. Each
client counts what it receives with `fastpath.Downlink` (no decryption but one packet in 16).

Phases, each a measured window announced on stdout (`WINDOW_START <phase>` / `WINDOW_END <phase>`):
- `--views` off: one phase, `everything` (nobody sends `view`: every client receives every track).
- `--views` on: `layout`, each student's `view` shows the teacher large and one page of 9 student
  thumbnails (the teacher's a page of 9 students), then `audio_only`, the students' `view` says
  `audio_only: true` (the teacher keeps its page).
Then one JSON line with each phase's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from typing import Any

import aiohttp
import numpy as np
import uvloop
from aiortc import RTCSessionDescription

from .clients import MID_URI, ClasseClient, Publishing, new_pc, wait_until
from .fastpath import Downlink, FastPath, neuter
from .media import EncodedFrame, encode_video, encode_voice
from .publisher import Stream, replay_talking

LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
STUDENTS = 30
PAGE = 9  # thumbnails on one page of the class grid
LARGE = (640, 360)  # css px: the teacher's tile, at least large_tile_width
THUMBNAIL = (160, 90)


class Talkers:
    """Who talks when: 2 or 3 students at a time, drawn anew every `period` seconds (seeded), and
    the teacher every other period. Member 0 is the teacher, 1..30 the students."""

    def __init__(self, period: float, seed: int, start: float) -> None:
        self.period, self.seed, self.start = period, seed, start
        self._cache: dict[int, frozenset[int]] = {}

    def at(self, now: float) -> frozenset[int]:
        k = int((now - self.start) // self.period)
        if k not in self._cache:
            rng = random.Random(self.seed * 100_003 + k)
            chosen = set(rng.sample(range(1, STUDENTS + 1), rng.choice((2, 3))))
            if k % 2 == 0:
                chosen.add(0)
            self._cache[k] = frozenset(chosen)
        return self._cache[k]

    def of(self, member: int) -> Any:
        return lambda now: member in self.at(now)


class CameraClient(ClasseClient):
    """A class member: keeps the latest offer's tracks and the server's `videos`/`speakers`."""

    def __init__(self, http: aiohttp.ClientSession, url: str, name: str) -> None:
        super().__init__(http, url, "bench", name, None)
        self.downlink: Downlink | None = None
        self.tracks: list[dict[str, Any]] = []
        self.kinds: dict[int, str] = {}
        self.receiving: list[str] | None = None  # the last `videos` message
        self.speakers_messages = 0
        self.errors: list[str] = []

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            kind = data["type"]
            if kind == "subscribe_offer":
                self.tracks = data.get("tracks", [])
                for pt, codec in re.findall(r"^a=rtpmap:(\d+) ([\w-]+)/", data["sdp"], re.M):
                    name = codec.lower()
                    self.kinds[int(pt)] = "audio" if name == "opus" else "video" if name in ("vp8", "h264") else "other"
                await self._answer(data["sdp"])
            elif kind == "videos":
                self.receiving = list(data.get("receiving", []))
            elif kind == "speakers":
                self.speakers_messages += 1
            elif kind in ("joined", "publish_answer"):
                await self.replies.put(data)
            elif kind == "error":
                self.errors.append(str(data.get("code")))
                if data.get("fatal") or data.get("ref") is not None:
                    await self.replies.put(data)

    async def _answer(self, sdp: str) -> None:
        if self.sub is None:
            self.sub = new_pc()
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        neuter(self.sub)
        if self.downlink is None:
            self.downlink = Downlink(self.sub)
        self.downlink.kinds = dict(self.kinds)
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        await self.ws.send_json({"type": "subscribe_answer", "sdp": self.sub.localDescription.sdp})
        self.offers += 1

    @property
    def participant_id(self) -> str:
        return str(self.joined["participant"]["id"])


async def start_publishing(
    client: CameraClient,
    frames: dict[str, list[EncodedFrame]],
    talking: Any,
    sent: dict[str, int],
    stop: asyncio.Event,
) -> asyncio.Task[None]:
    pub = Publishing(video=True, audio=True)
    answer = await client.publish(pub)
    await pub.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await wait_until(lambda: len(pub.params) == len(pub.kinds))
    path = FastPath(pub.pc)
    await wait_until(lambda: path.connected)
    streams = {}
    for kind, (t, p) in pub.params.items():
        ids = {e.uri: e.id for e in p.headerExtensions}
        level = ids.get(LEVEL_URI, 0) if kind == "audio" else 0
        streams[kind] = Stream(t.sender._ssrc, p.codecs[0].payloadType, t.mid, ids.get(MID_URI, 0), True, level)
    video = frames["teacher" if client.name == "teacher" else "student"]
    return asyncio.create_task(
        replay_talking(
            path, (streams["video"], video), streams["audio"], (frames["voice"], frames["quiet"]), talking, sent, stop
        )
    )


def view(client: CameraClient, members: list[CameraClient], audio_only: bool) -> dict[str, Any]:
    """The page a member shows: the teacher large (for a student), then the 9 students after it."""
    order = {m.participant_id: i for i, m in enumerate(members)}
    me = order[client.participant_id]
    cameras = {t["participant_id"]: t["track_id"] for t in client.tracks if t.get("source") == "camera"}
    tiles = []
    if client.name != "teacher":
        teacher = members[0].participant_id
        tiles.append({"track_id": cameras[teacher], "width": LARGE[0], "height": LARGE[1]})
    students = sorted(
        (pid for pid in cameras if order.get(pid, 0) > 0), key=lambda pid: (order[pid] - me) % len(members)
    )
    for pid in students[:PAGE]:
        tiles.append({"track_id": cameras[pid], "width": THUMBNAIL[0], "height": THUMBNAIL[1]})
    return {"type": "view", "tiles": tiles, "pinned": None, "audio_only": audio_only}


async def window(
    name: str,
    args: argparse.Namespace,
    members: list[CameraClient],
    sent: dict[str, int],
) -> dict[str, Any]:
    await asyncio.sleep(args.warmup)
    sent0 = dict(sent)
    for m in members:
        assert m.downlink is not None
        m.downlink.open()
    print(f"WINDOW_START {name}", flush=True)
    t0 = time.monotonic()
    await asyncio.sleep(args.duration)
    for m in members:
        assert m.downlink is not None
        m.downlink.close()
    elapsed = time.monotonic() - t0
    print(f"WINDOW_END {name}", flush=True)
    per: list[dict[str, Any]] = []
    for m in members:
        d = m.downlink
        assert d is not None
        expected, received = d.expected(), d.received()
        per.append(
            {
                "name": m.name,
                "kbps": d.bytes * 8 / elapsed / 1000,
                # the 12-byte timing trailer the load generator appends to every RTP payload is not media
                "kbps_media": (d.bytes - 12 * sum(d.packets.values())) * 8 / elapsed / 1000,
                "audio_pps": d.packets.get("audio", 0) / elapsed,
                "video_pps": d.packets.get("video", 0) / elapsed,
                "audio_kbps": (d.kind_bytes.get("audio", 0) - 12 * d.packets.get("audio", 0)) * 8 / elapsed / 1000,
                "video_kbps": (d.kind_bytes.get("video", 0) - 12 * d.packets.get("video", 0)) * 8 / elapsed / 1000,
                "rtcp_kbps": d.rtcp_bytes * 8 / elapsed / 1000,
                "expected": expected,
                "received": received,
                "streams": len(d.streams),
                "videos_receiving": None if m.receiving is None else len(m.receiving),
                "delays_us": d.delays_us,
            }
        )
    students = [p for p in per if p["name"] != "teacher"]
    teacher = per[0]
    expected = sum(p["expected"] for p in per)
    received = sum(p["received"] for p in per)
    delays = np.array([x for p in per for x in p["delays_us"]])

    def mean(key: str) -> float:
        return float(np.mean([p[key] for p in students]))

    receiving = [p["videos_receiving"] for p in students if p["videos_receiving"] is not None]
    return {
        "phase": name,
        "window_s": elapsed,
        "published_pps": {k: (sent[k] - sent0[k]) / elapsed for k in sent},
        "student_downlink_kbps": {
            "mean": mean("kbps"),
            "max": max(p["kbps"] for p in students),
            "mean_media": mean("kbps_media"),
            "max_media": max(p["kbps_media"] for p in students),
            "audio": mean("audio_kbps"),
            "video": mean("video_kbps"),
            "rtcp": mean("rtcp_kbps"),
        },
        "student_received_pps": {"audio": mean("audio_pps"), "video": mean("video_pps")},
        "teacher_downlink_kbps": teacher["kbps"],
        "client_received_pps": received / elapsed,
        # what the server sent: each stream's numbered packets, received or lost
        "client_expected_pps": expected / elapsed,
        "loss": max(0.0, 1 - received / expected) if expected else None,
        "latency_us": {
            "p50": float(np.percentile(delays, 50)) if delays.size else None,
            "p99": float(np.percentile(delays, 99)) if delays.size else None,
            "max": float(delays.max()) if delays.size else None,
            "sampled": int(delays.size),
        },
        "videos_receiving_mean": float(np.mean(receiving)) if receiving else None,
        "speakers_messages": sum(m.speakers_messages for m in members),
        "errors": sorted({e for m in members for e in m.errors}),
    }


async def run(args: argparse.Namespace, frames: dict[str, list[EncodedFrame]]) -> list[dict[str, Any]]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # WebSockets hold connections
    stop = asyncio.Event()
    sent = {"audio": 0, "video": 0}
    t_setup = time.monotonic()
    members = [CameraClient(http, args.url, "teacher")] + [
        CameraClient(http, args.url, f"s{i}") for i in range(1, STUDENTS + 1)
    ]
    for m in members:
        await m.join("teacher" if m.name == "teacher" else "student")
    talkers = Talkers(args.period, args.seed, asyncio.get_running_loop().time())
    tasks: list[asyncio.Task[None]] = []
    # publish a few at a time: each publish makes the server offer everyone else a new track
    for i in range(0, len(members), args.batch):
        batch = members[i : i + args.batch]
        tasks += await asyncio.gather(
            *(start_publishing(m, frames, talkers.of(members.index(m)), sent, stop) for m in batch)
        )
    want = 2 * STUDENTS  # every other member's camera and microphone
    await wait_until(
        lambda: all(m.downlink is not None and len(m.tracks) == want and m.sub is not None for m in members), 180
    )
    setup_s = time.monotonic() - t_setup
    print(f"{len(members)} members publishing and subscribed in {setup_s:.0f} s", file=sys.stderr, flush=True)
    phases = []
    if not args.views:
        phases.append(await window("everything", args, members, sent))
    else:
        for m in members:
            await m.ws.send_json(view(m, members, audio_only=False))
        phases.append(await window("layout", args, members, sent))
        for m in members[1:]:
            await m.ws.send_json(view(m, members, audio_only=True))
        phases.append(await window("audio_only", args, members, sent))
    for phase in phases:
        phase["setup_s"] = setup_s
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.close()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--views", action="store_true", help="send `view` messages (the adaptation phases)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--period", type=float, default=4.0, help="seconds between changes of talkers")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4, help="members publishing at once during the setup")
    parser.add_argument("--student-kbps", type=int, default=150)
    args = parser.parse_args()
    frames = {
        "teacher": encode_video(),  # 640x360, 30 fps, ~1 Mbit/s, a keyframe every second
        "student": encode_video(
            seconds=8, bitrate=args.student_kbps * 1000, width=320, height=180, fps=15, keyframe_seconds=2
        ),
        "voice": encode_voice(talking=True),
        "quiet": encode_voice(talking=False),
    }
    phases = uvloop.run(run(args, frames))
    print(json.dumps(phases), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
