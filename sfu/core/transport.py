"""One peer connection as the core sees it: decrypted datagrams in, plain datagrams out.

The adapter decrypts what arrives and encrypts what leaves; everything between (routing by SSRC,
feedback, rewriting) happens here, without a socket or a clock.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .bwe import OVERUSE, DownlinkEstimator
from .consumer import Consumer
from .events import BandwidthEstimate, ProducerBound
from .params import Kind
from .producer import Producer
from .rtcp import (
    KeyframeRequest,
    Nack,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    parse_rtcp,
)
from .rtp import RTP_HEADER, RTP_MAX_SIZE, header_length, read_mid
from .stats import DropReason
from .twcc import TransportFeedback

RETRANSMISSION_SHARE = 0.25  # of a subscriber's downlink estimate, at most, for retransmissions
SENT_RING = 4096  # packets remembered by transport-wide number, for the subscriber's feedback (a power of two)
ESTIMATE_STEP = 0.1  # a change of the estimate by more than this fraction is an event
PROBE_LOSS = 0.05  # fraction lost in one feedback that ends a probe
PROBE_TICK = 0.01  # seconds between two bursts of probe padding (a pacer's granularity)

if TYPE_CHECKING:
    from .session import MediaSession
    from .stream import ReceiveStream


class Transport:
    """Routes a peer connection's packets to its producers (publishing) or consumers (subscribing)."""

    def __init__(self, session: MediaSession, transport_id: str) -> None:
        self.session = session
        self.id = transport_id
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.outbox: list[bytes] = []  # RTP to encrypt and send
        self.rtcp_outbox: list[bytes] = []
        self.streams: dict[int, ReceiveStream] = {}  # by media SSRC (learnt by mid and rid when new)
        self.rtx_streams: dict[int, ReceiveStream] = {}  # by RTX SSRC
        self.producers_by_mid: dict[str, Producer] = {}
        self.consumers: dict[int, Consumer] = {}  # by media and RTX SSRC
        self.remb: int | None = None  # the subscriber's own estimate of its downlink
        self.estimate: int | None = None  # the downlink estimate the room allocates by (bits/s), if any
        self.mid_extension = 0
        self.closed = False
        self._stats = session.stats
        self.bwe: DownlinkEstimator | None = None  # made at the first transport-wide number sent
        self._wide = 0
        self._sent_seq: list[int] = []
        self._sent_time: list[float] = []
        self._sent_size: list[int] = []
        self._told_estimate = 0
        self._rtx_tokens = float(session.retransmission_rate)  # bytes; see retransmission_budget
        self._rtx_time = 0.0
        self._probe_rate = 0.0  # bytes/s of padding while probing
        self._probe_start = 0.0
        self._probe_sent = 0
        self.probe_until: float | None = None  # a probe by padding runs until then
        self.probe_next = 0.0
        self.probe_failed = False  # a probe met loss or a growing queue (read and reset by the room)

    def receive_rtp(self, data: bytes, now: float) -> None:
        stats = self._stats
        stats.rtp_received += 1
        stats.bytes_received += len(data)
        if len(data) > RTP_MAX_SIZE:
            stats.drops[DropReason.OVERSIZED] += 1
            return
        hdr_len = header_length(data)
        if hdr_len < 0:
            stats.drops[DropReason.MALFORMED_RTP] += 1
            return
        _, _, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        stream = self.streams.get(ssrc)
        if stream is not None:
            stream.producer.receive(stream, data, hdr_len, seq, ts, now)
            return
        stream = self.rtx_streams.get(ssrc)
        if stream is not None:
            stream.producer.receive_rtx(stream, data, hdr_len, now)
            return
        stream = self._bind(data, ssrc, now)
        if stream is None:
            return
        if stream.ssrc == ssrc:
            stream.producer.receive(stream, data, hdr_len, seq, ts, now)
        else:
            stream.producer.receive_rtx(stream, data, hdr_len, now)

    def _bind(self, data: bytes, ssrc: int, now: float) -> ReceiveStream | None:
        """Learn an SSRC that the SDP did not announce: its track from the packet's mid, its
        simulcast encoding from the rid (repaired rid for RTX). Unknown ones are dropped, counted."""
        drops = self._stats.drops
        mid = read_mid(data, self.mid_extension) if self.mid_extension else None
        producer = self.producers_by_mid.get(mid) if mid is not None else None
        if producer is None or ssrc in self.consumers:
            drops[DropReason.UNKNOWN_SSRC] += 1
            return None
        payload_type = data[1] & 0x7F
        rtx = payload_type == producer.codec.rtx_payload_type and payload_type != producer.codec.payload_type
        stream: ReceiveStream | None = producer.stream
        if producer.simulcast:
            ext_id = producer.extensions.repaired_rid if rtx else producer.extensions.rid
            rid = read_mid(data, ext_id) if ext_id else None
            stream = next((s for s in producer.streams if s.rid == rid), None)
        if stream is None:
            drops[DropReason.UNKNOWN_RID] += 1
            return None
        if payload_type == producer.codec.payload_type and stream.ssrc is None:
            stream.ssrc = ssrc
            self.streams[ssrc] = stream
            self.session.events.append(ProducerBound(producer.id, ssrc))
            if stream.keyframes.pending:  # asked for before the SSRC was known
                self.session.attend(producer, now)
        elif rtx and stream.rtx_ssrc is None:
            stream.rtx_ssrc = ssrc
            self.rtx_streams[ssrc] = stream
        else:
            drops[DropReason.UNKNOWN_SSRC] += 1
            return None
        return stream

    def receive_rtcp(self, data: bytes, now: float) -> None:
        self._stats.rtcp_received += 1
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self._stats.drops[DropReason.MALFORMED_RTCP] += 1
            return
        for packet in packets:
            if isinstance(packet, Nack):
                consumer = self.consumers.get(packet.media_ssrc)
                if consumer is not None:
                    self._stats.nacks_received += 1
                    consumer.on_nack(packet.lost, now, packet.excess)
            elif isinstance(packet, KeyframeRequest):
                consumer = self.consumers.get(packet.media_ssrc)
                if consumer is not None:
                    consumer.request_keyframe(now)
            elif isinstance(packet, SenderReport):
                stream = self.streams.get(packet.ssrc)
                if stream is not None:
                    stream.producer.on_sender_report(stream, packet.ntp, packet.rtp_timestamp, now)
                self._on_reports(packet.reports, now)
            elif isinstance(packet, ReceiverReport):
                self._on_reports(packet.reports, now)
            elif isinstance(packet, Remb):
                self.remb = packet.bitrate
            elif isinstance(packet, TransportFeedback):
                self._on_feedback(packet, now)

    def wide_seq(self, size: int, now: float) -> int:
        """The next transport-wide sequence number, for a packet of `size` bytes sent now."""
        if self.bwe is None:
            self.bwe = DownlinkEstimator()
            self._sent_seq = [-1] * SENT_RING
            self._sent_time = [0.0] * SENT_RING
            self._sent_size = [0] * SENT_RING
        seq = self._wide
        self._wide = (seq + 1) & 0xFFFF
        slot = seq & (SENT_RING - 1)
        self._sent_seq[slot] = seq
        self._sent_time[slot] = now
        self._sent_size[slot] = size
        return seq

    def _on_feedback(self, feedback: TransportFeedback, now: float) -> None:
        """What arrived of what we sent: the estimator's input. Numbers we did not send (or sent
        too long ago) are ignored, so a forged feedback can only report our own packets."""
        bwe = self.bwe
        if bwe is None:
            return
        results = []
        for seq, arrival in feedback.packets:
            slot = seq & (SENT_RING - 1)
            if self._sent_seq[slot] == seq:
                results.append((self._sent_time[slot], self._sent_size[slot], arrival))
        bwe.on_feedback(results, now)
        if self.probe_until is not None and (bwe.loss > PROBE_LOSS or bwe.detector.state == OVERUSE):
            self.probe_until = None  # the link has no room for it: stop at once (the room backs off)
            self.probe_failed = True
        told = self._told_estimate
        if abs(bwe.estimate - told) > told * ESTIMATE_STEP:
            self._told_estimate = bwe.estimate
            self.session.events.append(BandwidthEstimate(self.id, bwe.estimate))

    def _on_reports(self, reports: list[ReportBlock], now: float) -> None:
        for block in reports:
            consumer = self.consumers.get(block.ssrc)
            if consumer is not None:
                consumer.on_report(block.fraction_lost, block.jitter, block.lsr, block.dlsr, now)

    def retransmission_budget(self, now: float) -> float:
        """Bytes this subscriber may be sent again now: a token bucket refilled at the session's
        retransmission bitrate, holding at most one second of it (libwebrtc's RetransmissionRateLimiter).
        With a downlink estimate, at most RETRANSMISSION_SHARE of it: on a link already full,
        answering every NACK would only lose more."""
        rate = self.session.retransmission_rate
        if self.estimate is not None:
            rate = min(rate, self.estimate * RETRANSMISSION_SHARE / 8)
        tokens = self._rtx_tokens + (now - self._rtx_time) * rate
        self._rtx_time = now
        return tokens if tokens < rate else rate

    def spend_retransmission_budget(self, left: float) -> None:
        self._rtx_tokens = left

    def start_probe(self, rate: int, until: float, now: float) -> bool:
        """Send `rate` bits/s of padding until `until`, spread over PROBE_TICK bursts, with
        transport-wide numbers so that the feedback tells whether it all arrived. False when no
        video consumer can carry padding (no RTX negotiated): the caller probes otherwise."""
        if rate <= 0 or not any(c.rtx_payload_type is not None and c.started for c in self._videos()):
            return False
        self._probe_rate = rate / 8
        self._probe_start = now
        self._probe_sent = 0
        self.probe_until = until
        self.probe_next = now
        self.probe_failed = False
        self.session.probing(self)
        return True

    def stop_probe(self) -> None:
        self.probe_until = None

    def on_probe_timer(self, now: float) -> None:
        """One burst: what the probe's rate owes since its start, from the newest video packets."""
        until = self.probe_until
        if until is None or self.closed:
            return
        if now >= until:
            self.probe_until = None
            return
        due = self._probe_rate * (now - self._probe_start) - self._probe_sent
        for consumer in self._videos():
            if due <= 0:
                break
            sent = consumer.pad(due, now)
            due -= sent
            self._probe_sent += sent
        self.probe_next = now + PROBE_TICK

    def _videos(self) -> list[Consumer]:
        return [c for ssrc, c in self.consumers.items() if ssrc == c.ssrc and c.kind is Kind.VIDEO]

    def send_rtcp(self, packet: bytes) -> None:
        if not self.rtcp_outbox and not self.outbox:
            self.session.ready.append(self)
        self.rtcp_outbox.append(packet)
        self._stats.rtcp_sent += 1
