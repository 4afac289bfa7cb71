"""A published track: one incoming RTP stream, fanned out to its consumers."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .cache import PacketCache
from .consumer import Consumer, abs_send_time
from .keyframe import KeyframeRequester
from .nack import NackGenerator
from .params import Codec, HeaderExtensions, Kind
from .rtcp import ReportBlock, build_nack, build_pli, build_receiver_report, build_remb
from .rtp import find_extension, is_h264_keyframe, is_vp8_keyframe
from .seq import SeqExtender
from .stats import DropReason

if TYPE_CHECKING:
    from .transport import Transport

_SEQ_SSRC = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2
MIN_BITRATE = 100_000


class Producer:
    """Receives one track from a publisher: caches it, detects loss, keeps it flowing to consumers."""

    __slots__ = (
        "_expected_prior",
        "_is_keyframe",
        "_jitter",
        "_next_report",
        "_received",
        "_received_prior",
        "_seq",
        "_speakers",
        "_sr_ntp",
        "_sr_time",
        "_stats",
        "_transit",
        "cache",
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
        "nack",
        "report_interval",
        "rtx_ssrc",
        "source",
        "ssrc",
        "transport",
        "waiting_for_keyframe",
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
        max_bitrate: int = 1_500_000,
        report_interval: float = 1.0,
    ) -> None:
        self.id = producer_id
        self.transport = transport
        self.kind = codec.kind
        self.mid = mid
        self.source = source
        self.codec = codec
        self.extensions = extensions
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.max_bitrate = max_bitrate
        self.consumers: list[Consumer] = []
        self.cache = PacketCache(1024 if self.kind is Kind.VIDEO else 128)
        self.nack = NackGenerator() if self.kind is Kind.VIDEO else None
        self.keyframes = KeyframeRequester()
        self.waiting_for_keyframe = 0
        self.closed = False
        self.muted = False
        name = codec.name
        self._is_keyframe = is_vp8_keyframe if name == "VP8" else is_h264_keyframe if name == "H264" else None
        self._seq = SeqExtender()
        self._stats = transport.session.stats
        # Only microphones are speakers: a shared video's sound is forwarded whoever speaks.
        self._speakers = transport.session.speakers if self.kind is Kind.AUDIO and source == "microphone" else None
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = 0
        self._jitter = 0.0
        self._sr_ntp = 0
        self._sr_time = 0.0
        self._next_report = 0.0
        self.report_interval = report_interval

    def receive(self, data: bytes, hdr_len: int, seq: int, ts: int, now: float) -> None:
        """One media packet from the publisher (already routed to this track by SSRC)."""
        if self.muted:
            # Not even cached: a NACK must not be able to fetch what a muted participant said.
            self._stats.drops[DropReason.MUTED] += 1
            return
        if data[1] & 0x7F != self.codec.payload_type:
            self._stats.drops[DropReason.UNEXPECTED_PAYLOAD_TYPE] += 1
            return
        ext_seq = self._seq.extend(seq)
        if ext_seq in self.cache:
            self._stats.drops[DropReason.DUPLICATE] += 1
            return
        self.cache.put(ext_seq, data)
        self._received += 1
        if self.nack is not None and not self.nack.on_packet(ext_seq, now):
            self.request_keyframe(now)
        # RFC 3550 interarrival jitter, in timestamp units.
        transit = int(now * self.codec.clock_rate) - ts
        if self._received > 1:
            delta = abs(transit - self._transit)
            if delta < 0x10000000:
                self._jitter += (delta - self._jitter) / 16
        self._transit = transit
        self._fan_out(data, hdr_len, seq, ext_seq, ts, now)

    def receive_rtx(self, data: bytes, hdr_len: int, now: float) -> None:
        """An RTX packet: restore the original packet (RFC 4588) and handle it as late media."""
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if end - hdr_len < 2:
            self._stats.drops[DropReason.PADDING_ONLY] += 1
            return
        original = bytearray(data[:hdr_len])
        original[0] &= 0xDF  # the RTX padding is not the original's
        original[1] = (data[1] & 0x80) | self.codec.payload_type
        seq = (data[hdr_len] << 8) | data[hdr_len + 1]
        ts = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
        _SEQ_SSRC.pack_into(original, 2, seq, ts, self.ssrc or 0)
        original += data[hdr_len + 2 : end]
        self.receive(bytes(original), hdr_len, seq, ts, now)

    def _fan_out(self, data: bytes, hdr_len: int, seq: int, ext_seq: int, ts: int, now: float) -> None:
        consumers = self.consumers
        if not consumers:
            return
        keyframe = False
        if self.waiting_for_keyframe and self._is_keyframe is not None:
            keyframe = self._is_keyframe(data, hdr_len)
        level = 0x7F
        if self.extensions.audio_level:
            offset = find_extension(data, self.extensions.audio_level)
            if offset > 0:
                level = data[offset]
                if self._speakers is not None:
                    self._speakers.observe(self.id, level, now)
        payload = data[hdr_len:]
        ast = abs_send_time(now)
        for consumer in consumers:
            consumer.forward(data, payload, seq, ext_seq, ts, keyframe, ast, level, now)
        self._stats.rtp_forwarded += len(consumers)

    def mute(self) -> None:
        """Stop forwarding this track at all (a muted or blocked participant)."""
        if not self.muted:
            self.muted = True
            for consumer in self.consumers:
                consumer.pause()

    def unmute(self, now: float) -> None:
        """Forward again: audio continues without a jump, video restarts at a keyframe."""
        if self.muted:
            self.muted = False
            for consumer in self.consumers:
                consumer.resume(now)

    def request_keyframe(self, now: float) -> None:
        if self.kind is Kind.VIDEO and self.keyframes.request(now) and self.ssrc is not None:
            self._send_pli()

    def _send_pli(self) -> None:
        self._stats.keyframe_requests_sent += 1
        self.transport.send_rtcp(build_pli(self.transport.rtcp_ssrc, self.ssrc or 0))

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self._sr_ntp = ntp
        self._sr_time = now
        for consumer in self.consumers:
            consumer.on_sender_report(ntp, rtp_timestamp, now)

    def on_timer(self, now: float) -> None:
        """Upstream NACKs, pending keyframe requests, and the periodic receiver report."""
        if self.ssrc is None:
            return
        rtcp_ssrc = self.transport.rtcp_ssrc
        if self.nack is not None:
            lost = self.nack.poll(now)
            if lost:
                self._stats.nacks_sent += 1
                self.transport.send_rtcp(build_nack(rtcp_ssrc, self.ssrc, [s & 0xFFFF for s in lost]))
        if self.keyframes.poll(now):
            self._send_pli()
        if now >= self._next_report and self._received:
            self._next_report = now + self.report_interval
            self.transport.send_rtcp(build_receiver_report(rtcp_ssrc, [self._report_block(now)]))
            if self.kind is Kind.VIDEO:
                self.transport.send_rtcp(build_remb(rtcp_ssrc, self.target_bitrate(), [self.ssrc]))

    def _report_block(self, now: float) -> ReportBlock:
        highest = self._seq.highest - 0x10000
        expected = highest - (self._seq.first - 0x10000) + 1
        lost = expected - self._received
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        lsr = (self._sr_ntp >> 16) & 0xFFFFFFFF
        dlsr = int((now - self._sr_time) * 65536) if self._sr_ntp else 0
        return ReportBlock(self.ssrc or 0, min(fraction, 255), lost, highest, int(self._jitter), lsr, dlsr)

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
