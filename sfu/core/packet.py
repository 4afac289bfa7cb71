"""One received RTP packet, parsed once and shared by every consumer it is forwarded to."""

from __future__ import annotations


class RtpPacket:
    """What a consumer needs of an arrival, read once by the producer (slots: no per-field dict).

    `data` is the packet as received (kept in the cache for NACKs); `payload` is what follows its
    header; `level` the audio-level byte (0x7F when absent); `ast` the abs-send-time of arrival."""

    __slots__ = ("ast", "data", "ext_seq", "keyframe", "level", "payload", "seq", "timestamp")

    def __init__(
        self,
        data: bytes,
        payload: bytes,
        seq: int,
        ext_seq: int,
        timestamp: int,
        keyframe: bool,
        level: int,
        ast: bytes,
    ) -> None:
        self.data = data
        self.payload = payload
        self.seq = seq
        self.ext_seq = ext_seq
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.level = level
        self.ast = ast
