"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

A subscriber's browser numbers every packet the server sends it (the transport-cc header
extension the server writes) and reports, every 50-100 ms, which arrived and when. That is what
the downlink estimator (`bwe.py`) reads: delay growing between groups of packets means a queue is
building on the way.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_BASE = struct.Struct("!HHI")  # base sequence, status count, reference time (24 bits) + feedback count
MAX_STATUSES = 4096  # packets one feedback may report: far more than a real one, bounded for a hostile one
DELTA_UNIT = 0.000250  # seconds: receive deltas count quarter milliseconds
REFERENCE_UNIT = 0.064  # seconds: the reference time counts 64 ms


class FeedbackError(ValueError):
    """The feedback does not parse (truncated, inconsistent, or beyond MAX_STATUSES)."""


@dataclass(slots=True)
class TransportFeedback:
    """Per reported packet: its transport-wide sequence number and when it arrived (seconds on
    the receiver's clock, comparable only within the feedbacks of one receiver), None if lost."""

    sender_ssrc: int
    media_ssrc: int
    packets: list[tuple[int, float | None]]


def parse_feedback(sender: int, media: int, data: bytes, pos: int, end: int) -> TransportFeedback:
    """Read the feedback control information at data[pos:end]."""
    if pos + 8 > end:
        raise FeedbackError("truncated transport feedback")
    base, count, reference = _BASE.unpack_from(data, pos)
    if count > MAX_STATUSES:
        raise FeedbackError("too many packets in one transport feedback")
    time = (reference >> 8) * REFERENCE_UNIT
    if reference & 0x80000000:  # 24-bit signed
        time -= (1 << 24) * REFERENCE_UNIT
    pos += 8
    symbols: list[int] = []
    while len(symbols) < count:
        if pos + 2 > end:
            raise FeedbackError("truncated packet status chunk")
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if not chunk & 0x8000:  # run length: one symbol repeated
            symbols.extend([(chunk >> 13) & 0x3] * min(chunk & 0x1FFF, count - len(symbols)))
        elif not chunk & 0x4000:  # status vector of 14 one-bit symbols
            symbols.extend((chunk >> (13 - i)) & 0x1 for i in range(14))
        else:  # status vector of 7 two-bit symbols
            symbols.extend((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
    del symbols[count:]
    packets: list[tuple[int, float | None]] = []
    for index, symbol in enumerate(symbols):
        seq = (base + index) & 0xFFFF
        if symbol == 0:
            packets.append((seq, None))
            continue
        if symbol == 1:
            if pos + 1 > end:
                raise FeedbackError("truncated receive delta")
            delta = data[pos]
            pos += 1
        elif symbol == 2:
            if pos + 2 > end:
                raise FeedbackError("truncated receive delta")
            delta = int.from_bytes(data[pos : pos + 2], "big", signed=True)
            pos += 2
        else:
            raise FeedbackError("reserved packet status symbol")
        time += delta * DELTA_UNIT
        packets.append((seq, time))
    return TransportFeedback(sender, media, packets)


def build_feedback(sender: int, media: int, base: int, arrivals: list[float | None], count: int = 0) -> bytes:
    """A feedback packet (RTPFB, FMT 15) for packets base.. with these arrival times (seconds; None:
    lost), as a browser sends it: for tests and the simulation. Two-bit status vectors only."""
    first = next((a for a in arrivals if a is not None), 0.0)
    reference = int(first // REFERENCE_UNIT)
    body = bytearray(_BASE.pack(base, len(arrivals), ((reference & 0xFFFFFF) << 8) | (count & 0xFF)))
    symbols = []
    deltas = bytearray()
    previous = reference * REFERENCE_UNIT
    for arrival in arrivals:
        if arrival is None:
            symbols.append(0)
            continue
        delta = round((arrival - previous) / DELTA_UNIT)
        previous += delta * DELTA_UNIT
        if 0 <= delta <= 0xFF:
            symbols.append(1)
            deltas.append(delta)
        else:
            symbols.append(2)
            deltas += max(-0x8000, min(0x7FFF, delta)).to_bytes(2, "big", signed=True)
    for start in range(0, len(symbols), 7):
        group = symbols[start : start + 7] + [0] * (7 - len(symbols[start : start + 7]))
        chunk = 0xC000
        for i, symbol in enumerate(group):
            chunk |= symbol << (12 - 2 * i)
        body += chunk.to_bytes(2, "big")
    body += deltas
    body += b"\x00" * (-len(body) % 4)
    header = struct.pack("!BBHII", 0x80 | 15, 205, (len(body) + 8) // 4, sender, media)
    return header + bytes(body)
