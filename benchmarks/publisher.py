"""Replays pre-encoded VP8 and Opus as RTP through a `FastPath`, with a timing trailer."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time
from collections.abc import Callable

from .fastpath import TRAILER, FastPath
from .media import AUDIO_PTIME, VIDEO_FPS, EncodedFrame

_HEADER = struct.Struct("!BBHII")


class Stream:
    """One outgoing RTP stream with its numbering, its mid extension and, if `level_ext`, the
    audio-level extension (RFC 6464) carrying `level`: the voice-activity bit and -dBov."""

    def __init__(self, ssrc: int, payload_type: int, mid: str, mid_ext: int, trailer: bool, level_ext: int = 0) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.level = 0x7F  # silence, no voice
        value = mid.encode()
        block = bytes([(mid_ext << 4) | (len(value) - 1)]) + value if mid_ext else b""
        self._level_at = len(block) + 5 if level_ext else 0  # where the level byte sits in self.ext
        if level_ext:
            block += bytes([level_ext << 4, self.level])
        block += b"\x00" * (-len(block) % 4)
        self.ext = b"\xbe\xde" + struct.pack("!H", len(block) // 4) + block if block else b""
        self.trailer = trailer

    def packets(self, frame: EncodedFrame, ids: itertools.count[int], sent: list[int] | None) -> list[bytes]:
        out = []
        last = len(frame.payloads) - 1
        now = time.monotonic_ns()
        ext = self.ext
        if self._level_at:
            ext = ext[: self._level_at] + bytes([self.level]) + ext[self._level_at + 1 :]
        for i, payload in enumerate(frame.payloads):
            first = 0x90 if ext else 0x80
            header = _HEADER.pack(first, (0x80 if i == last else 0) | self.payload_type, self.seq, self.ts, self.ssrc)
            tail = b""
            if self.trailer:
                ident = next(ids)
                tail = TRAILER.pack(now, ident)
                if sent is not None:
                    sent.append(now)
            out.append(header + ext + payload + tail)
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + frame.timestamp_step) & 0xFFFFFFFF
        return out


async def replay(
    path: FastPath,
    video: tuple[Stream, list[EncodedFrame]] | None,
    audio: tuple[Stream, list[EncodedFrame]] | None,
    sent: list[int],
    stop: asyncio.Event,
) -> None:
    """Send at real-time pace until `stop` is set; `sent` gets each timed packet's send time."""
    ids = itertools.count()
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_video = next_audio = start
    v = a = 0
    while not stop.is_set():
        now = loop.time()
        if video is not None and now >= next_video:
            stream, frames = video
            for packet in stream.packets(frames[v % len(frames)], ids, sent):
                path.send(packet)
            v += 1
            next_video += 1 / VIDEO_FPS
        if audio is not None and now >= next_audio:
            stream, frames = audio
            for packet in stream.packets(frames[a % len(frames)], ids, sent):
                path.send(packet)
            a += 1
            next_audio += AUDIO_PTIME
        await asyncio.sleep(max(0.0, min(next_video if video else 1e9, next_audio if audio else 1e9) - loop.time()))


async def replay_talking(
    path: FastPath,
    video: tuple[Stream, list[EncodedFrame]] | None,
    audio: Stream,
    voice: tuple[list[EncodedFrame], list[EncodedFrame]],
    talking: Callable[[float], bool],
    sent: dict[str, int],
    stop: asyncio.Event,
) -> None:
    """A class member's camera and microphone, until `stop` is set.

    Video goes at its frames' own rate. The microphone sends a packet every 20 ms: the talking
    frames `voice[0]` with a speech level (voice activity, -25 to -40 dBov) while `talking(now)`,
    else the quiet frames `voice[1]` with a low level (no voice activity, -90 to -110 dBov), as a
    browser does. `sent` counts the packets by kind. Each member starts at a random phase, so the
    class's packets do not arrive in lockstep.
    """
    ids = itertools.count()
    loop = asyncio.get_running_loop()
    rng = random.Random(audio.ssrc)
    start = loop.time() + rng.random() * AUDIO_PTIME
    next_video = start + rng.random() * 0.066
    next_audio = start
    v = a = 0
    while not stop.is_set():
        now = loop.time()
        if video is not None and now >= next_video:
            stream, frames = video
            frame = frames[v % len(frames)]
            packets = stream.packets(frame, ids, None)
            for packet in packets:
                path.send(packet)
            sent["video"] += len(packets)
            v += 1
            next_video += frame.timestamp_step / 90000
        if now >= next_audio:
            talks = talking(now)
            frames = voice[0] if talks else voice[1]
            audio.level = (0x80 | rng.randint(25, 40)) if talks else rng.randint(90, 110)
            for packet in audio.packets(frames[a % len(frames)], ids, None):
                path.send(packet)
                sent["audio"] += 1
            a += 1
            next_audio += AUDIO_PTIME
        wake = min(next_video, next_audio) if video is not None else next_audio
        await asyncio.sleep(max(0.0, wake - loop.time()))
