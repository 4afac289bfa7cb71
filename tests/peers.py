"""Real WebRTC peers for the integration tests: aiortc clients speaking Classe's protocol.

The publisher's video carries its frame number as a grid of black and white cells (12 bits of
number, 4 bits of check), so a subscriber can tell, from decoded pixels alone, that it shows the
publisher's frames, in order, and uncorrupted.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aioice.ice
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack

WIDTH, HEIGHT = 320, 240
CELLS = 4  # a 4x4 grid: 16 bits


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"]


# Test peers gather candidates on loopback only: no test traffic touches another interface.
aioice.ice.get_host_addresses = _loopback_only


def encode_number(n: int) -> int:
    n &= 0xFFF
    return n | ((bin(n).count("1") & 0xF) << 12)


def decode_number(gray: np.ndarray) -> int | None:
    """The frame number drawn by `NumberedVideoTrack`, or None if the check bits disagree."""
    h, w = gray.shape
    bits = 0
    for i in range(CELLS * CELLS):
        y = (i // CELLS) * h // CELLS + h // (2 * CELLS)
        x = (i % CELLS) * w // CELLS + w // (2 * CELLS)
        if gray[max(0, y - 4) : y + 4, max(0, x - 4) : x + 4].mean() > 128:
            bits |= 1 << i
    number = bits & 0xFFF
    return number if bits >> 12 == bin(number).count("1") & 0xF else None


class NumberedVideoTrack(VideoStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        bits = encode_number(self.count)
        img = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        for i in range(CELLS * CELLS):
            if bits & (1 << i):
                y, x = (i // CELLS) * HEIGHT // CELLS, (i % CELLS) * WIDTH // CELLS
                img[y : y + HEIGHT // CELLS, x : x + WIDTH // CELLS] = 255
        self.count += 1
        yuv = np.concatenate([img, np.full((HEIGHT // 2, WIDTH), 128, dtype=np.uint8)])
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone, so that a receiver can tell real audio from silence; `amplitude` 0 is silence.

    aiortc writes the frame's level in the audio-level extension: the server's speaker detection
    hears this amplitude (8000 is about -12 dBov), and a test may change it mid-call.
    """

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        self._samples = 0
        self.amplitude = amplitude

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        n = frame.samples
        t = (np.arange(n) + self._samples) / frame.sample_rate
        self._samples += n
        tone = (np.sin(2 * np.pi * 440 * t) * self.amplitude).astype(np.int16).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, fractions.Fraction(1, frame.sample_rate)
        return out


@dataclass
class Received:
    kind: str
    info: dict[str, Any]
    numbers: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    corrupt: int = 0
    audio_frames: int = 0
    audio_peak: int = 0

    def longest_freeze(self) -> float:
        gaps = [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]
        return max(gaps, default=0.0)


class Peer:
    """A participant driven by the tests over the real protocol."""

    def __init__(
        self, base_url: str, class_id: str, name: str, role: str = "student", loss: float = 0.0, trickle: bool = False
    ) -> None:
        self.base_url = base_url
        self.trickle = trickle  # send the SDP without candidates, then each one in a `candidate` message
        self.class_id = class_id
        self.name = name
        self.role = role
        self.loss = loss
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pub: RTCPeerConnection | None = None
        self.sub: RTCPeerConnection | None = None
        self.id = ""
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self.said: list[dict[str, Any]] = []  # every message sent, in order
        self.event_times: list[float] = []  # when each of `events` arrived (time.monotonic)
        self.received: dict[str, Received] = {}  # by track id
        self.offer_tracks: dict[str, dict[str, Any]] = {}  # mid -> track info
        self.by_mid: dict[str, Received] = {}  # what each receiving section currently carries
        self.tasks: set[asyncio.Task[None]] = set()
        self.tracks: list[MediaStreamTrack] = []
        self.rng = random.Random(7)
        self.dropped = 0
        self.known: dict[str, dict[str, Any]] = {}  # participant id -> last description received

    async def token(self) -> str:
        async with self.http.post(
            f"{self.base_url}/api/dev/token", json={"class_id": self.class_id, "name": self.name, "role": self.role}
        ) as resp:
            return str((await resp.json())["token"])

    async def join(self, token: str | None = None, until: str = "joined", ws_url: str | None = None) -> dict[str, Any]:
        """Connect (to `ws_url`, the node a join answer names; by default this server) and join;
        `until` is the reply to wait for ("waiting" for a lobby, "error" for a refusal)."""
        self.ws = await self.http.ws_connect(ws_url or f"{self.base_url}/ws")
        self._spawn(self._read())
        await self.send({"type": "join", "protocol": 1, "token": token or await self.token()})
        if until == "joined":
            return await self.admitted()
        return await self.expect(until)

    async def admitted(self, timeout: float = 10) -> dict[str, Any]:
        joined = await self.expect("joined", timeout)
        self.id = joined["participant"]["id"]
        return joined

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.said.append(message)
        await self.ws.send_str(json.dumps(message))

    async def expect(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.messages.get(), max(0.01, deadline - time.monotonic()))
            if msg["type"] == kind:
                return msg
            if msg["type"] == "error":
                raise AssertionError(f"expected {kind}, got error {msg}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            self.events.append(data)
            self.event_times.append(time.monotonic())
            if data["type"] == "subscribe_offer":
                try:
                    await self._answer(data)
                except ConnectionResetError:
                    # the server closed while we answered (a removal): what it sent before is still to read
                    continue
            elif not self._media_only(data):
                await self.messages.put(data)

    def _media_only(self, data: dict[str, Any]) -> bool:
        """A `participant_updated` that only says a media connection came up or went down: kept
        in `events` (tests that look for it read them), not queued for `expect`, where it would
        come between a test's action and the update it waits for."""
        if data["type"] not in ("participant_joined", "participant_updated", "joined"):
            return False
        described = [data["participant"], *data.get("participants", [])]
        changed = False
        for participant in described:
            before = self.known.get(participant["id"])
            self.known[participant["id"]] = participant
            if before is None or {**before, "media": participant.get("media")} != participant:
                changed = True
        return data["type"] == "participant_updated" and not changed

    async def publish(
        self, video_codec: str | None = "video/VP8", audio: bool = True, screen: bool = False, amplitude: int = 8000
    ) -> dict[str, str]:
        """Publish camera (and microphone); returns mid -> source."""
        if self.pub is None:
            self.pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sources: dict[str, str] = {}
        new = []
        if video_codec:
            track = NumberedVideoTrack()
            t = self.pub.addTransceiver(track, direction="sendonly")
            caps = RTCRtpSender.getCapabilities("video").codecs
            t.setCodecPreferences([c for c in caps if c.mimeType in (video_codec, "video/rtx")])
            new.append((t, "screen" if screen else "camera"))
            self.tracks.append(track)
        if audio:
            atrack = ToneAudioTrack(amplitude)
            new.append((self.pub.addTransceiver(atrack, direction="sendonly"), "microphone"))
            self.tracks.append(atrack)
        await self.pub.setLocalDescription(await self.pub.createOffer())
        for t, source in new:
            sources[t.mid] = source
        sdp, candidates = self.described(self.pub.localDescription.sdp)
        await self.send(
            {"type": "publish", "id": 1, "sdp": sdp, "tracks": [{"mid": m, "source": s} for m, s in sources.items()]}
        )
        await self._trickle("publish", candidates)
        answer = await self.expect("publish_answer")
        await self.pub.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return sources

    async def _answer(self, offer: dict[str, Any]) -> None:
        if self.sub is None:
            self.sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.sub.on("track", self._on_track)
        for info in offer["tracks"]:
            self.offer_tracks[info["mid"]] = info
            current = self.by_mid.get(info["mid"])
            if current is not None and current.info["track_id"] != info["track_id"]:
                # a section reused for another track: aiortc fires no new "track" event for it
                self.by_mid[info["mid"]] = self.received[info["track_id"]] = Received(current.kind, info)
        await self.sub.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        if self.loss:
            self._make_lossy()
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        sdp, candidates = self.described(self.sub.localDescription.sdp)
        await self.send({"type": "subscribe_answer", "sdp": sdp})
        await self._trickle("subscribe", candidates)

    def described(self, sdp: str) -> tuple[str, list[dict[str, Any]]]:
        """The SDP to send, and the candidates to trickle after it (none unless `trickle`): those of
        its first section, as a browser's bundled connection gathers them, then the end (None)."""
        if not self.trickle:
            return sdp, []
        lines = sdp.splitlines(keepends=True)
        sections = [i for i, line in enumerate(lines) if line.startswith("m=")]
        first = lines[sections[0] : sections[1] if len(sections) > 1 else len(lines)]
        mid = next(line.strip()[len("a=mid:") :] for line in first if line.startswith("a=mid:"))
        found = [line.strip()[2:] for line in first if line.startswith("a=candidate:")]
        kept = "".join(line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates")))
        return kept, [{"candidate": c, "sdpMid": mid, "sdpMLineIndex": 0} for c in found]

    async def _trickle(self, connection: str, candidates: list[dict[str, Any]]) -> None:
        if not self.trickle:
            return
        for candidate in [*candidates, None]:
            await self.send({"type": "candidate", "connection": connection, "candidate": candidate})

    def _make_lossy(self) -> None:
        """Drop a share of the media packets reaching this subscriber, as a lossy link would."""
        assert self.sub is not None
        connection = self.sub.getTransceivers()[0].receiver.transport.transport._connection
        if getattr(connection, "_lossy", False):
            return
        connection._lossy = True
        deliver = connection.data_received

        def data_received(data: bytes, component: int) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224 and self.rng.random() < self.loss:
                self.dropped += 1
                return
            deliver(data, component)

        connection.data_received = data_received

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.sub is not None
        mid = next(t.mid for t in self.sub.getTransceivers() if t.receiver.track is track)
        info = self.offer_tracks[mid]
        received = Received(track.kind, info)
        self.received[info["track_id"]] = self.by_mid[mid] = received
        self._spawn(self._consume(track, mid))

    async def _consume(self, track: MediaStreamTrack, mid: str) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            received = self.by_mid[mid]
            if track.kind == "video":
                number = decode_number(frame.to_ndarray(format="gray"))
                if number is None:
                    received.corrupt += 1
                else:
                    received.numbers.append(number)
                    received.arrivals.append(time.monotonic())
            else:
                received.audio_frames += 1
                received.audio_peak = max(received.audio_peak, int(np.abs(frame.to_ndarray()).max()))

    def video(self) -> list[Received]:
        return [r for r in self.received.values() if r.kind == "video"]

    def audio(self) -> list[Received]:
        return [r for r in self.received.values() if r.kind == "audio"]

    async def close(self) -> None:
        for track in self.tracks:
            track.stop()
        if self.ws is not None:
            await self.ws.close()
        for pc in (self.pub, self.sub):
            if pc is not None:
                await pc.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.close()
