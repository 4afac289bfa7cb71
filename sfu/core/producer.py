"""A published track: one incoming RTP stream, fanned out to its consumers."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .cache import PacketCache
from .consumer import Consumer, abs_send_time
from .events import KeyframeReceived
from .keyframe import KeyframeRequester
from .nack import NackGenerator
from .packet import RtpPacket
from .params import Codec, HeaderExtensions, Kind
from .rtcp import ReportBlock, build_nack, build_pli
from .rtp import find_extension, is_h264_keyframe, is_vp8_keyframe
from .stats import DropReason
from .stream import ReceiveStream

if TYPE_CHECKING:
    from .transport import Transport

_SEQ_SSRC = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
MIN_BITRATE = 100_000


class Producer:
    """One published track: its receive stream(s), its consumers, and the room's metadata."""

    __slots__ = (
        "_is_keyframe",
        "closed",
        "codec",
        "consumers",
        "extensions",
        "id",
        "keyframes",
        "kind",
        "max_bitrate",
        "mid",
        "muted",
        "owner",
        "role",
        "rtx_ssrc",
        "session",
        "source",
        "stats",
        "stream",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        producer_id: str,
        *,
        mid: str,
        codec: Codec,
        extensions: HeaderExtensions,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        source: str = "",
        owner: str = "",
        role: str = "",
        max_bitrate: int = 1_500_000,
    ) -> None:
        self.id = producer_id
        self.transport = transport
        self.kind = codec.kind
        self.mid = mid
        self.source = source  # camera / microphone / screen / screen_audio
        self.owner = owner  # the publishing participant's id
        self.role = role  # "teacher" / "student"
        self.codec = codec
        self.extensions = extensions
        self.stream = ReceiveStream(self, ssrc, codec.clock_rate, self.kind is Kind.VIDEO)
        self.rtx_ssrc = rtx_ssrc
        self.max_bitrate = max_bitrate
        self.consumers: list[Consumer] = []
        self.keyframes = KeyframeRequester()
        self.closed = False
        self.muted = False
        name = codec.name
        self._is_keyframe = is_vp8_keyframe if name == "VP8" else is_h264_keyframe if name == "H264" else None
        self.session = transport.session
        self.stats = transport.session.stats

    @property
    def ssrc(self) -> int | None:
        return self.stream.ssrc

    @property
    def cache(self) -> PacketCache:
        return self.stream.cache

    @property
    def nack(self) -> NackGenerator | None:
        return self.stream.nack

    def receive(self, data: bytes, hdr_len: int, seq: int, ts: int, now: float) -> None:
        """One media packet from the publisher (already routed to this track's stream by SSRC)."""
        if data[1] & 0x7F != self.codec.payload_type:
            self.stats.drops[DropReason.MUTED if self.muted else DropReason.UNEXPECTED_PAYLOAD_TYPE] += 1
            return
        if self.muted:
            # Not even cached: a NACK must not be able to fetch what a muted participant said,
            # and after the unmute nothing up to here is asked for again or accepted late.
            self.stream.skip_muted(seq)
            self.stats.drops[DropReason.MUTED] += 1
            return
        ext_seq = self.stream.receive(data, seq, ts, now)
        if ext_seq < 0:
            return
        level = 0x7F
        level_id = self.extensions.audio_level
        if level_id:
            offset = find_extension(data, level_id)
            if offset > 0:
                level = data[offset]
                if self.session.detector is not None:
                    self.session.observe_level(self.id, level & 0x7F, now)
        self._fan_out(data, hdr_len, seq, ext_seq, ts, level, now)

    def receive_rtx(self, data: bytes, hdr_len: int, now: float) -> None:
        """An RTX packet: restore the original packet (RFC 4588) and handle it as late media."""
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if end - hdr_len < 2:
            self.stats.drops[DropReason.PADDING_ONLY] += 1
            return
        original = bytearray(data[:hdr_len])
        original[0] &= 0xDF  # the RTX padding is not the original's
        original[1] = (data[1] & 0x80) | self.codec.payload_type
        seq = (data[hdr_len] << 8) | data[hdr_len + 1]
        ts = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
        _SEQ_SSRC.pack_into(original, 2, seq, ts, self.stream.ssrc or 0)
        original += data[hdr_len + 2 : end]
        self.receive(bytes(original), hdr_len, seq, ts, now)

    def _fan_out(self, data: bytes, hdr_len: int, seq: int, ext_seq: int, ts: int, level: int, now: float) -> None:
        """Parse once, hand the same packet to every consumer (each rewrites its own header)."""
        consumers = self.consumers
        if not consumers:
            return
        keyframe = False
        if self._is_keyframe is not None:
            keyframe = self._is_keyframe(data, hdr_len)
            if keyframe:
                self.session.events.append(KeyframeReceived(self.id))
        packet = RtpPacket(data, data[hdr_len:], seq, ext_seq, ts, keyframe, level, abs_send_time(now))
        self.stats.rtp_forwarded += len(consumers)  # a consumer that drops the packet takes its one back
        for consumer in consumers:
            consumer.forward(packet, now)

    def mute(self, now: float = 0.0) -> None:
        """Stop forwarding this track at all (a muted or blocked participant)."""
        if not self.muted:
            self.muted = True
            for consumer in self.consumers:
                consumer.set_paused("muted", True, now)

    def unmute(self, now: float) -> None:
        """Forward again: audio continues without a jump, video restarts at a keyframe."""
        if self.muted:
            self.muted = False
            for consumer in self.consumers:
                consumer.set_paused("muted", False, now)

    def request_keyframe(self, now: float) -> None:
        if self.kind is Kind.VIDEO:
            if self.ssrc is None:
                self.keyframes.defer()  # sent once the SSRC is bound (Transport._bind_by_mid)
            elif self.keyframes.request(now):
                self._send_pli()
            else:
                self.session.attend(self, self.keyframes.deadline() or now)

    def _send_pli(self) -> None:
        self.stats.keyframe_requests_sent += 1
        self.transport.send_rtcp(build_pli(self.transport.rtcp_ssrc, self.ssrc or 0))

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self.stream.on_sender_report(ntp, now)
        for consumer in self.consumers:
            consumer.on_sender_report(ntp, rtp_timestamp, now)

    def on_timer(self, now: float) -> None:
        """Upstream NACKs and pending keyframe requests, when deadline() says so."""
        if self.ssrc is None:
            return
        if self.nack is not None:
            lost = self.nack.poll(now)
            if lost:
                self.stats.nacks_sent += 1
                self.transport.send_rtcp(build_nack(self.transport.rtcp_ssrc, self.ssrc, [s & 0xFFFF for s in lost]))
        if self.keyframes.poll(now):
            self._send_pli()

    def deadline(self) -> float | None:
        """The earliest of the NACK retry (while gaps are open) and the pending keyframe request."""
        nack = self.nack.deadline() if self.nack is not None else None
        keyframe = self.keyframes.deadline() if self.ssrc is not None else None
        if nack is None:
            return keyframe
        return nack if keyframe is None or nack < keyframe else keyframe

    def highest_seq(self) -> int:
        """The newest extended sequence number received (0 before any)."""
        return self.stream.seq.highest

    def has_received(self) -> bool:
        return self.stream.received > 0

    def report_block(self, now: float) -> ReportBlock | None:
        return self.stream.report_block(now)

    def bitrate(self, now: float) -> int:
        """What the publisher sends now, in bits per second (over the last second)."""
        return self.stream.bitrate(now)

    def target_bitrate(self) -> int:
        """What the publisher may send: its cap, lowered to the weakest subscriber's share."""
        bitrate = self.max_bitrate
        for consumer in self.consumers:
            if consumer.paused:
                continue  # a subscriber this video does not reach does not limit it
            share = consumer.transport.video_share()
            if share is not None and share < bitrate:
                bitrate = share
        return max(MIN_BITRATE, bitrate)
