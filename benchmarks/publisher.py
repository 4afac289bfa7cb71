"""Replays pre-encoded VP8 and Opus as RTP through a `FastPath`, with a timing trailer."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time

from .fastpath import TRAILER, FastPath
from .media import AUDIO_PTIME, VIDEO_FPS, EncodedFrame

_HEADER = struct.Struct("!BBHII")


class Stream:
    """One outgoing RTP stream with its numbering and its mid extension."""

    def __init__(self, ssrc: int, payload_type: int, mid: str, mid_ext: int, trailer: bool) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        value = mid.encode()
        block = bytes([(mid_ext << 4) | (len(value) - 1)]) + value if mid_ext else b""
        block += b"\x00" * (-len(block) % 4)
        self.ext = b"\xbe\xde" + struct.pack("!H", len(block) // 4) + block if block else b""
        self.trailer = trailer

    def packets(self, frame: EncodedFrame, ids: itertools.count[int], sent: list[int]) -> list[bytes]:
        out = []
        last = len(frame.payloads) - 1
        now = time.monotonic_ns()
        for i, payload in enumerate(frame.payloads):
            first = 0x90 if self.ext else 0x80
            header = _HEADER.pack(first, (0x80 if i == last else 0) | self.payload_type, self.seq, self.ts, self.ssrc)
            tail = b""
            if self.trailer:
                ident = next(ids)
                tail = TRAILER.pack(now, ident)
                sent.append(now)
            out.append(header + self.ext + payload + tail)
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
