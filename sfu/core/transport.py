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
from .pacer import Pacer, ssrc_of
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
WIDE_OFFSET = 17  # of the transport-wide number's value in our headers: 12 + 4 (extension block) + 1
SENT_RING = 4096  # packets remembered by transport-wide number, for the subscriber's feedback (a power of two)
ESTIMATE_STEP = 0.1  # a change of the estimate by more than this fraction is an event
PROBE_LOSS = 0.1  # fraction of a probe's packets lost that ends it...
PROBE_LOST = 2  # ... once at least this many are
SMOOTHING = 2.5  # the pacer's rate, times the estimate, while the link has not shown its limit
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
        self.outbox: list[bytes] = []  # RTP to encrypt and send (video, paced once there is an estimate)
        self.audio_outbox: list[bytes] = []
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
        self.pacer: Pacer | None = None  # made with it
        self.wide_id = 0  # the transport-wide sequence number's extension id (first in our headers)
        self.priorities: dict[int, int] = {}  # video SSRC (and its RTX) -> the room's priority, for the pacer
        self._wide = 0
        self._sent_seq: list[int] = []
        self._sent_time: list[float] = []
        self._sent_size: list[int] = []
        self._told_estimate = 0
        self._rtx_tokens = float(session.retransmission_rate)  # bytes; see retransmission_budget
        self._rtx_time = 0.0
        self._rtx_offered = 0.0
        self.resent_bytes = 0  # retransmitted so far (the room counts them in what the link carries)
        self._probe_rate = 0.0  # bytes/s of padding while probing
        self._probe_start = 0.0
        self._probe_sent = 0
        self._probe_packets = 0  # reported by the feedback since the probe began
        self._probe_lost = 0
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
            self.pacer = Pacer()
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

    def _numbered(self, data: bytes) -> bool:
        """Whether a packet of ours carries a transport-wide number (at WIDE_OFFSET)."""
        return bool(data[0] & 0x10) and len(data) > WIDE_OFFSET + 1 and data[WIDE_OFFSET - 1] >> 4 == self.wide_id

    def renumber(self, packets: list[bytes], now: float) -> None:
        """Packets the pacer held leave now, perhaps before others numbered earlier: they take
        new transport-wide numbers, in the order and at the time they leave (the estimator reads
        send order and send time from them: the pacer's queue must not look like the network's).
        Their former numbers were forgotten when they were held (`forget`)."""
        for index, data in enumerate(packets):
            if self._numbered(data):
                seq = self.wide_seq(len(data), now)
                packets[index] = b"".join((data[:WIDE_OFFSET], bytes((seq >> 8, seq & 0xFF)), data[WIDE_OFFSET + 2 :]))

    def forget(self, packets: list[bytes]) -> None:
        """These packets wait (and will be numbered again as they leave): their numbers are not
        ours any more, so that a feedback reporting them missing does not count a loss."""
        sent_seq = self._sent_seq
        for data in packets:
            if self._numbered(data):
                seq = (data[WIDE_OFFSET] << 8) | data[WIDE_OFFSET + 1]
                if sent_seq[seq & (SENT_RING - 1)] == seq:
                    sent_seq[seq & (SENT_RING - 1)] = -1

    def discard(self, ssrcs: tuple[int, ...]) -> None:
        """Drop what the pacer holds of these SSRCs (a switch made it useless: the subscriber
        starts again from a keyframe); their numbers were forgotten when held, so that the
        feedback does not report them lost."""
        if self.pacer is None or not self.pacer.queued:
            return
        dropped = self.pacer.discard(lambda data: ssrc_of(data) in ssrcs)
        self._stats.drops[DropReason.SWITCHED_AWAY] += dropped

    def _pace(self) -> None:
        """The pacer's rate: the estimate's (and room for the padding of a probe in progress)
        while the link has lately shown its limit; otherwise SMOOTHING times it, as libwebrtc
        paces: bursts smoothed, nothing held that the estimate would not have to hold."""
        bwe = self.bwe
        if self.pacer is not None and bwe is not None:
            padding = int(self._probe_rate * 8) if self.probe_until is not None else 0
            factor = 1.0 if bwe.congested() else SMOOTHING
            self.pacer.set_estimate(int((bwe.estimate + padding) * factor))

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
        if self.probe_until is not None:
            self._probe_packets += len(results)
            self._probe_lost += sum(1 for result in results if result[2] is None)
            lost = self._probe_lost
            # One loss in a short feedback is chance on a lossy link; a queue growing behind a
            # link that cannot carry the probe is not (padding in bursts makes a queue the link
            # drains at once: the capacity measured tells them apart).
            capacity = bwe.capacity()
            full = bwe.detector.state == OVERUSE and (not capacity or capacity < bwe.estimate + self._probe_rate * 8)
            if full or (lost >= PROBE_LOST and lost > PROBE_LOSS * self._probe_packets):
                self.probe_until = None  # the link has no room for it: stop at once (the room backs off)
                self.probe_failed = True
        self._pace()
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
        self._rtx_offered = tokens if tokens < rate else rate
        return self._rtx_offered

    def spend_retransmission_budget(self, left: float) -> None:
        self.resent_bytes += int(self._rtx_offered - left)
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
        self._probe_packets = self._probe_lost = 0
        self.probe_until = until
        self.probe_next = now
        self.probe_failed = False
        self._pace()
        self.session.probing(self)
        return True

    def stop_probe(self) -> None:
        self.probe_until = None
        self._pace()

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
        if not self.rtcp_outbox and not self.outbox and not self.audio_outbox:
            self.session.ready.append(self)
        self.rtcp_outbox.append(packet)
        self._stats.rtcp_sent += 1
