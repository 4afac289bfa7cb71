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
        "_floor",
        "_is_keyframe",
        "_jitter",
        "_received",
        "_received_prior",
        "_seq",
        "_session",
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
        "owner",
        "role",
        "rtx_ssrc",
        "source",
        "ssrc",
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
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.max_bitrate = max_bitrate
        self.consumers: list[Consumer] = []
        self.cache = PacketCache(1024 if self.kind is Kind.VIDEO else 128)
        self.nack = NackGenerator() if self.kind is Kind.VIDEO else None
        self.keyframes = KeyframeRequester()
        self.closed = False
        self.muted = False
        name = codec.name
        self._is_keyframe = is_vp8_keyframe if name == "VP8" else is_h264_keyframe if name == "H264" else None
        self._seq = SeqExtender()
        self._floor = 0  # packets below this extended sequence number were sent while muted
        self._session = transport.session
        self._stats = transport.session.stats
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = 0
        self._jitter = 0.0
        self._sr_ntp = 0
        self._sr_time = 0.0

    def receive(self, data: bytes, hdr_len: int, seq: int, ts: int, now: float) -> None:
        """One media packet from the publisher (already routed to this track by SSRC)."""
        if self.muted:
            # Not even cached: a NACK must not be able to fetch what a muted participant said,
            # and after the unmute nothing up to here is asked for again or accepted late.
            if data[1] & 0x7F == self.codec.payload_type:
                ext_seq = self._seq.extend(seq)
                if ext_seq >= self._floor:
                    self._floor = ext_seq + 1
                    if self.nack is not None:
                        self.nack.skip_to(ext_seq)
            self._stats.drops[DropReason.MUTED] += 1
            return
        if data[1] & 0x7F != self.codec.payload_type:
            self._stats.drops[DropReason.UNEXPECTED_PAYLOAD_TYPE] += 1
            return
        ext_seq = self._seq.extend(seq)
        if ext_seq < self._floor:
            self._stats.drops[DropReason.MUTED] += 1  # sent while muted, arriving late
            return
        if ext_seq in self.cache:
            self._stats.drops[DropReason.DUPLICATE] += 1
            return
        self.cache.put(ext_seq, data)
        if self._received == self._received_prior:
            self._session.reports_due()  # the first packet since the last report
        self._received += 1
        nack = self.nack
        if nack is not None:
            gap = ext_seq > nack.highest + 1 and nack.highest >= 0
            if not nack.on_packet(ext_seq, now):
                self.request_keyframe(now)
            elif gap:
                self._session.attend(self, now)  # NACK the gap at once
        # RFC 3550 interarrival jitter, in timestamp units.
        transit = int(now * self.codec.clock_rate) - ts
        if self._received > 1:
            delta = abs(transit - self._transit)
            if delta < 0x10000000:
                self._jitter += (delta - self._jitter) / 16
        self._transit = transit
        level = 0x7F
        level_id = self.extensions.audio_level
        if level_id:
            offset = find_extension(data, level_id)
            if offset > 0:
                level = data[offset]
                if self._session.detector is not None:
                    self._session.observe_level(self.id, level & 0x7F, now)
        self._fan_out(data, hdr_len, seq, ext_seq, ts, level, now)

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

    def _fan_out(self, data: bytes, hdr_len: int, seq: int, ext_seq: int, ts: int, level: int, now: float) -> None:
        """Parse once, hand the same packet to every consumer (each rewrites its own header)."""
        consumers = self.consumers
        if not consumers:
            return
        keyframe = False
        if self._is_keyframe is not None:
            keyframe = self._is_keyframe(data, hdr_len)
            if keyframe:
                self._session.events.append(KeyframeReceived(self.id))
        packet = RtpPacket(data, data[hdr_len:], seq, ext_seq, ts, keyframe, level, abs_send_time(now))
        for consumer in consumers:
            consumer.forward(packet, now)
        self._stats.rtp_forwarded += len(consumers)

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
                self._session.attend(self, self.keyframes.deadline() or now)

    def _send_pli(self) -> None:
        self._stats.keyframe_requests_sent += 1
        self.transport.send_rtcp(build_pli(self.transport.rtcp_ssrc, self.ssrc or 0))

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self._sr_ntp = ntp
        self._sr_time = now
        for consumer in self.consumers:
            consumer.on_sender_report(ntp, rtp_timestamp, now)

    def on_timer(self, now: float) -> None:
        """Upstream NACKs and pending keyframe requests, when deadline() says so."""
        if self.ssrc is None:
            return
        if self.nack is not None:
            lost = self.nack.poll(now)
            if lost:
                self._stats.nacks_sent += 1
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
        return self._seq.highest

    def has_received(self) -> bool:
        return self._received > 0

    def report_block(self, now: float) -> ReportBlock | None:
        """This stream's receiver-report block, or None when nothing arrived since the last one."""
        if self.ssrc is None or self._received == self._received_prior:
            return None
        return self._report_block(now)

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
