"""RTCP parsing and building (RFC 3550, 4585, 5104 and REMB), for the feedback an SFU handles.

Parsing is strict about lengths: a malformed compound packet raises `RtcpError` and is
dropped whole by the caller, never half-applied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .twcc import FeedbackError, TransportFeedback, parse_feedback

_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SR_INFO = struct.Struct("!IQIII")
_REPORT = struct.Struct("!IBBHIIII")  # ssrc, fraction, lost (24 bits split 8+16), ext seq, jitter, lsr, dlsr
_TWO_SSRC = struct.Struct("!II")

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK, FMT_PLI, FMT_FIR, FMT_AFB, FMT_TWCC = 1, 1, 4, 15, 15
# Sequence numbers read from one NACK; the others are only counted (a datagram can hold ~6,000).
MAX_NACK_LOST = 512


class RtcpError(ValueError):
    """A remote peer sent an RTCP packet that does not parse."""


@dataclass(slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: list[int]
    excess: int = 0  # sequence numbers beyond MAX_NACK_LOST, not read


@dataclass(slots=True)
class KeyframeRequest:
    """A PLI or FIR: both ask the media source for a keyframe."""

    sender_ssrc: int
    media_ssrc: int


@dataclass(slots=True)
class Remb:
    sender_ssrc: int
    bitrate: int
    ssrcs: list[int]


RtcpPacket = SenderReport | ReceiverReport | Nack | KeyframeRequest | Remb | TransportFeedback


def _report_blocks(data: bytes, pos: int, count: int, end: int) -> list[ReportBlock]:
    if pos + count * 24 > end:
        raise RtcpError("report blocks overrun the packet")
    blocks = []
    for _ in range(count):
        ssrc, fraction, lost_hi, lost_lo, ext_seq, jitter, lsr, dlsr = _REPORT.unpack_from(data, pos)
        lost = (lost_hi << 16) | lost_lo
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, fraction, lost, ext_seq, jitter, lsr, dlsr))
        pos += 24
    return blocks


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet, keeping the kinds an SFU acts on."""
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 4:
        raise RtcpError("truncated RTCP header")
    while pos < size:
        if pos + 4 > size:
            raise RtcpError("truncated RTCP header")
        first, ptype, length = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError("bad RTCP version")
        end = pos + 4 + length * 4
        if end > size:
            raise RtcpError("RTCP length overruns the datagram")
        count = first & 0x1F
        if first & 0x20:  # padding may only end the compound packet
            if end != size or length == 0 or data[end - 1] > length * 4:
                raise RtcpError("bad RTCP padding")
        body = pos + 4
        if ptype == SR:
            if body + 24 > end:
                raise RtcpError("truncated sender report")
            ssrc, ntp, rtp_ts, pkts, octets = _SR_INFO.unpack_from(data, body)
            packets.append(SenderReport(ssrc, ntp, rtp_ts, pkts, octets, _report_blocks(data, body + 24, count, end)))
        elif ptype == RR:
            if body + 4 > end:
                raise RtcpError("truncated receiver report")
            (ssrc,) = _SSRC.unpack_from(data, body)
            packets.append(ReceiverReport(ssrc, _report_blocks(data, body + 4, count, end)))
        elif ptype in (RTPFB, PSFB):
            if body + 8 > end:
                raise RtcpError("truncated feedback message")
            sender, media = _TWO_SSRC.unpack_from(data, body)
            fci = body + 8
            if ptype == RTPFB and count == FMT_NACK:
                lost: list[int] = []
                excess = 0
                while fci + 4 <= end:
                    pid = (data[fci] << 8) | data[fci + 1]
                    blp = (data[fci + 2] << 8) | data[fci + 3]
                    fci += 4
                    if len(lost) >= MAX_NACK_LOST:
                        excess += 1 + blp.bit_count()
                        continue
                    lost.append(pid)
                    for bit in range(16):
                        if blp & (1 << bit):
                            lost.append((pid + bit + 1) & 0xFFFF)
                packets.append(Nack(sender, media, lost, excess))
            elif ptype == RTPFB and count == FMT_TWCC:
                try:
                    packets.append(parse_feedback(sender, media, data, fci, end))
                except FeedbackError as exc:
                    raise RtcpError(str(exc)) from None
            elif ptype == PSFB and count == FMT_PLI:
                packets.append(KeyframeRequest(sender, media))
            elif ptype == PSFB and count == FMT_FIR:
                while fci + 8 <= end:
                    packets.append(KeyframeRequest(sender, _SSRC.unpack_from(data, fci)[0]))
                    fci += 8
            elif ptype == PSFB and count == FMT_AFB and end - fci >= 8 and data[fci : fci + 4] == b"REMB":
                num = data[fci + 4]
                exp = data[fci + 5] >> 2
                mantissa = ((data[fci + 5] & 0x03) << 16) | (data[fci + 6] << 8) | data[fci + 7]
                if fci + 8 + num * 4 > end:
                    raise RtcpError("truncated REMB")
                ssrcs = [_SSRC.unpack_from(data, fci + 8 + i * 4)[0] for i in range(num)]
                packets.append(Remb(sender, mantissa << exp, ssrcs))
        pos = end
    return packets


def build_sender_report(ssrc: int, ntp: int, rtp_timestamp: int, packet_count: int, octet_count: int) -> bytes:
    return _HEADER.pack(0x80, SR, 6) + _SR_INFO.pack(
        ssrc, ntp, rtp_timestamp & 0xFFFFFFFF, packet_count & 0xFFFFFFFF, octet_count & 0xFFFFFFFF
    )


def build_receiver_report(sender_ssrc: int, blocks: list[ReportBlock]) -> bytes:
    out = bytearray(_HEADER.pack(0x80 | len(blocks), RR, 1 + 6 * len(blocks)))
    out += _SSRC.pack(sender_ssrc)
    for b in blocks:
        lost = max(-0x800000, min(0x7FFFFF, b.packets_lost)) & 0xFFFFFF
        out += _REPORT.pack(
            b.ssrc,
            b.fraction_lost,
            lost >> 16,
            lost & 0xFFFF,
            b.highest_seq & 0xFFFFFFFF,
            b.jitter & 0xFFFFFFFF,
            b.lsr,
            b.dlsr,
        )
    return bytes(out)


def build_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """Pack lost sequence numbers into (PID, BLP) pairs."""
    fci = bytearray()
    pending = sorted(set(lost), key=lambda s: (s - lost[0]) & 0xFFFF) if lost else []
    i = 0
    while i < len(pending):
        pid = pending[i]
        blp = 0
        i += 1
        while i < len(pending):
            delta = (pending[i] - pid) & 0xFFFF
            if not 1 <= delta <= 16:
                break
            blp |= 1 << (delta - 1)
            i += 1
        fci += struct.pack("!HH", pid, blp)
    return (
        _HEADER.pack(0x80 | FMT_NACK, RTPFB, 2 + len(fci) // 4) + _TWO_SSRC.pack(sender_ssrc, media_ssrc) + bytes(fci)
    )


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _HEADER.pack(0x80 | FMT_PLI, PSFB, 2) + _TWO_SSRC.pack(sender_ssrc, media_ssrc)


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    exp = 0
    mantissa = max(0, bitrate)
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    body = b"REMB" + bytes([len(ssrcs), (exp << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF])
    body += b"".join(_SSRC.pack(s) for s in ssrcs)
    return _HEADER.pack(0x80 | FMT_AFB, PSFB, 2 + len(body) // 4) + _TWO_SSRC.pack(sender_ssrc, 0) + body
