"""Build RTP packets for core tests."""

from __future__ import annotations

import struct


def rtp_packet(
    seq: int,
    ts: int,
    ssrc: int,
    pt: int = 96,
    payload: bytes = b"\x90\x80\x00\x00\x00",  # VP8: X, S, PID 0, ext byte, then a keyframe byte
    marker: bool = False,
    extensions: list[tuple[int, bytes]] | None = None,
) -> bytes:
    first = 0x80
    block = b""
    if extensions:
        body = b"".join(bytes([(ident << 4) | (len(v) - 1)]) + v for ident, v in extensions)
        body += b"\x00" * (-len(body) % 4)
        block = b"\xbe\xde" + struct.pack("!H", len(body) // 4) + body
        first |= 0x10
    return (
        struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        + block
        + payload
    )


VP8_KEY = b"\x10\x00\x9d\x01\x2a"  # S=1, PID 0, then a payload header with P=0 (keyframe)
VP8_DELTA = b"\x10\x01\x00\x00\x00"  # S=1, then P=1 (interframe)
