"""A subscription: one published track forwarded to one subscriber, with its own numbering.

Each consumer rewrites SSRC, payload type, sequence number and timestamp, so the subscriber sees
one continuous stream whatever happens upstream (a pause, a restart, later a layer switch), and
rewrites the header extensions to the ids its own peer connection negotiated.
"""

from __future__ import annotations

import random
import struct
from typing import TYPE_CHECKING

from .events import ConsumerPaused, ConsumerResumed
from .forwarding import LayeredForwarder, SimpleForwarder
from .packet import RtpPacket
from .params import HeaderExtensions, Kind
from .rewriter import SeqRewriter
from .rtcp import build_sender_report
from .rtp import RTP_HEADER, find_extension, header_length
from .stats import DropReason

if TYPE_CHECKING:
    from .producer import Producer
    from .transport import Transport

_PT_SEQ_TS = struct.Struct("!BHI")
_SEQ = struct.Struct("!H")
HISTORY_SIZE = 1024  # sent packets remembered for NACKs; a power of two
# Answering NACKs, as libwebrtc's sender does: a packet is sent again at most once per round trip
# (plus 5 ms), at most MAX_RETRANSMISSIONS_PER_NACK for one NACK, within the subscriber's
# retransmission budget (Transport). Until a receiver report gives the round trip, DEFAULT_RTT.
MAX_RETRANSMISSIONS_PER_NACK = 128
PADDING_BURST = 8  # packets of probe padding one consumer sends at a time
RETRANSMIT_SLACK = 0.005
DEFAULT_RTT = 0.1
MAX_RTT = 1.0
MAX_SKIPPED_AT_START = 512


def _header_template(ssrc: int, mid: str, ext: HeaderExtensions, kind: Kind) -> tuple[bytearray, int, int, int]:
    """A reusable header with the extension block laid out; returns it with the offsets of the
    abs-send-time, audio-level and transport-wide sequence number values (0 when absent)."""
    block = bytearray()
    ast_offset = level_offset = wide_offset = 0
    if ext.transport_cc:  # first, where the pacer finds it (WIDE_OFFSET)
        block.append((ext.transport_cc << 4) | 1)
        wide_offset = 16 + len(block)
        block += b"\x00\x00"
    if ext.mid and mid:
        value = mid.encode("ascii")[:16]
        block.append((ext.mid << 4) | (len(value) - 1))
        block += value
    if ext.abs_send_time:
        block.append((ext.abs_send_time << 4) | 2)
        ast_offset = 16 + len(block)
        block += b"\x00\x00\x00"
    if kind is Kind.AUDIO and ext.audio_level:
        block.append(ext.audio_level << 4)
        level_offset = 16 + len(block)
        block.append(0x7F)
    header = bytearray(RTP_HEADER.pack(0x80, 0, 0, 0, ssrc))
    if block:
        block += b"\x00" * (-len(block) % 4)
        header[0] = 0x90
        header += b"\xbe\xde" + (len(block) // 4).to_bytes(2, "big") + block
    return header, ast_offset, level_offset, wide_offset


class Consumer:
    """Forwards one producer's packets to one subscriber transport."""

    __slots__ = (
        "_ast_offset",
        "_first_byte",
        "_header",
        "_history",
        "_level_offset",
        "_outbox",
        "_ready",
        "_resent_at",
        "_resent_seq",
        "_rewriter",
        "_rtx_header",
        "_sr_lsr",
        "_sr_sent_at",
        "_stats",
        "_wide_offset",
        "clock_rate",
        "forwarder",
        "fraction_lost",
        "has_sent",
        "initial_seq",
        "initial_ts",
        "jitter",
        "kind",
        "last_time",
        "last_ts",
        "mid",
        "octets_sent",
        "packets_sent",
        "pause_reasons",
        "paused",
        "payload_type",
        "producer",
        "retransmissions",
        "rtt",
        "rtx_payload_type",
        "rtx_seq",
        "rtx_ssrc",
        "ssrc",
        "started",
        "stream",
        "transport",
        "ts_offset",
    )

    def __init__(
        self,
        transport: Transport,
        producer: Producer,
        *,
        ssrc: int,
        payload_type: int,
        mid: str,
        extensions: HeaderExtensions,
        rtx_ssrc: int | None = None,
        rtx_payload_type: int | None = None,
        initial_seq: int | None = None,
        initial_ts: int | None = None,
    ) -> None:
        self.producer = producer
        self.transport = transport
        self.kind = producer.kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc if rtx_payload_type is not None else None
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.mid = mid
        self.clock_rate = producer.codec.clock_rate
        self.paused = False  # while any pause reason holds; the hot path reads only this
        self.pause_reasons: set[str] = set()
        self.started = False  # synced to the source: packets go straight through the rewriter
        self.stream = producer.stream  # the stream forwarded: its cache answers NACKs
        self.forwarder: SimpleForwarder | LayeredForwarder = SimpleForwarder(needs_keyframe=self.kind is Kind.VIDEO)
        self._rewriter = SeqRewriter()
        self.ts_offset = 0
        self.last_ts = 0
        self.last_time = 0.0
        self.has_sent = False
        self.initial_seq = random.getrandbits(15) if initial_seq is None else initial_seq
        self.initial_ts = random.getrandbits(32) if initial_ts is None else initial_ts
        self.rtx_seq = random.getrandbits(15)
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmissions = 0
        self.fraction_lost = 0
        self.jitter = 0
        self.rtt: float | None = None  # seconds, from the subscriber's receiver reports
        self._sr_lsr = 0  # the last sender report sent, as a report block refers to it
        self._sr_sent_at = 0.0
        # Per history slot: the source packet last sent again from it, and when. Made on the first NACK.
        self._resent_seq: list[int] | None = None
        self._resent_at: list[float] = []
        self._header, self._ast_offset, self._level_offset, self._wide_offset = _header_template(
            ssrc, mid, extensions, self.kind
        )
        self._first_byte = self._header[0] & 0xDF  # version and extension bits; padding per packet
        self._rtx_header = _header_template(rtx_ssrc or 0, mid, extensions, self.kind)[0]
        self._history = [-1] * HISTORY_SIZE  # out seq -> extended source seq (checked by the rewriter)
        # Audio apart, never held by the subscriber's pacer.
        self._outbox = transport.audio_outbox if self.kind is Kind.AUDIO else transport.outbox
        if extensions.transport_cc:
            transport.wide_id = extensions.transport_cc
        self._ready = transport.session.ready
        self._stats = transport.session.stats
        self._prepare()

    def _prepare(self) -> None:
        """What a kind of consumer adds to the common state (LayeredConsumer: its forwarder)."""

    def forward(self, packet: RtpPacket, now: float) -> None:
        """Rewrite one packet of the producer and queue it for the subscriber.

        Until the stream is started (and again after a pause) the forwarder decides; once
        started, every packet goes through the rewriter, which refuses only what it cannot place."""
        if not self.started:
            reason = self.forwarder.decide(packet)
            if reason is not None:
                stats = self._stats
                stats.drops[reason] += 1
                stats.rtp_forwarded -= 1  # the fan-out counts every consumer it visits, ahead of the decision
                return
            self._start(packet, now)
        self._send(packet, packet.payload, now)

    def _send(self, packet: RtpPacket, payload: bytes, now: float) -> None:
        """Number one packet for the subscriber and queue it (the rewriter refuses only what it
        cannot place: older than the start, or numbered as dropped)."""
        ext_seq = packet.ext_seq
        rewriter = self._rewriter
        out_ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
        if ext_seq > rewriter.max_input and not rewriter.dropped:  # SeqRewriter.input, inlined
            rewriter.max_input = ext_seq
            out_seq = (ext_seq + rewriter.base) & 0xFFFF
            self.last_ts = out_ts
            self.last_time = now
        else:
            newest = ext_seq > rewriter.max_input
            rewritten = rewriter.input(ext_seq)
            if rewritten is None:
                stats = self._stats
                stats.drops[DropReason.BEFORE_STREAM_START] += 1
                stats.rtp_forwarded -= 1
                return
            out_seq = rewritten
            if newest:
                self.last_ts = out_ts
                self.last_time = now
        self._history[out_seq & (HISTORY_SIZE - 1)] = ext_seq
        header = self._header
        header[0] = self._first_byte | packet.padding
        _PT_SEQ_TS.pack_into(header, 1, packet.marker | self.payload_type, out_seq, out_ts)
        if self._ast_offset:
            header[self._ast_offset : self._ast_offset + 3] = packet.ast
        if self._level_offset:
            header[self._level_offset] = packet.level
        if self._wide_offset:  # the subscriber reports its arrival: the downlink estimate
            _SEQ.pack_into(header, self._wide_offset, self.transport.wide_seq(len(header) + len(payload), now))
        if not self._outbox:
            self._ready.append(self.transport)
        self._outbox.append(b"".join((header, payload)))
        self.packets_sent += 1
        self.octets_sent += len(payload)

    def _start(self, packet: RtpPacket, now: float) -> None:
        """Sync the rewriter and the timestamp offset so that the output continues where it
        stopped (or starts fresh)."""
        if self.has_sent:
            next_ts = self._continuation(now)[1]
            next_seq = self._rewriter.next_output()
            self._history = [-1] * HISTORY_SIZE
        else:
            next_seq = self.initial_seq
            next_ts = self.initial_ts
            self.has_sent = True
        rewriter = self._rewriter
        rewriter.sync(packet.ext_seq, next_seq)
        # Newer packets that arrived before this start (a keyframe retransmitted late) were never
        # sent: numbered as dropped, they leave no gap; arriving again, they are refused.
        highest = self.stream.seq.highest
        for ext_seq in range(packet.ext_seq + 1, min(highest, packet.ext_seq + MAX_SKIPPED_AT_START) + 1):
            rewriter.drop(ext_seq)
        self.ts_offset = (next_ts - packet.timestamp) & 0xFFFFFFFF
        self.last_ts = next_ts & 0xFFFFFFFF
        self.last_time = now
        self.started = True

    @property
    def last_seq(self) -> int:
        """The newest sequence number sent (or that a dropped packet would have had before it)."""
        return (self._rewriter.next_output() - 1) & 0xFFFF

    def _continuation(self, now: float) -> tuple[int, int]:
        """The sequence number and timestamp that continue this output without a jump."""
        elapsed = max(1, int((now - self.last_time) * self.clock_rate))
        return (self.last_seq + 1) & 0xFFFF, (self.last_ts + elapsed) & 0xFFFFFFFF

    def successor_start(self, now: float) -> tuple[int | None, int | None]:
        """Where a new stream on this SSRC should start so that the receiver sees no jump."""
        return self._continuation(now) if self.has_sent else (None, None)

    def set_paused(self, reason: str, paused: bool, now: float) -> None:
        """Hold or release forwarding for one reason ("muted": the producer's mute, "selection":
        the room's choice). It forwards while no reason holds it; resuming video waits for a
        keyframe (requested now), and any resume continues the subscriber's sequence numbers."""
        reasons = self.pause_reasons
        if paused == (reason in reasons):
            return
        events = self.transport.session.events
        if paused:
            reasons.add(reason)
            if len(reasons) == 1:
                self._pause()
                events.append(ConsumerPaused(self.transport.id, self.producer.id, reason))
        else:
            reasons.discard(reason)
            if not reasons:
                self._resume(now)
                events.append(ConsumerResumed(self.transport.id, self.producer.id))

    def pause(self) -> None:
        """The former API, kept for code written against it: a pause for the room's selection
        (the producer's mute is its own reason, set by Producer.mute)."""
        self.set_paused("selection", True, 0.0)

    def resume(self, now: float) -> None:
        self.set_paused("selection", False, now)

    def _pause(self) -> None:
        self.paused = True
        self.started = False
        self.forwarder.pause()

    def _resume(self, now: float) -> None:
        self.paused = False
        self.forwarder.resume()
        if self.forwarder.waiting:
            self.request_keyframe(now)

    def request_keyframe(self, now: float) -> None:
        """The subscriber needs a keyframe (a start, a resume, its own PLI): ask the publisher."""
        self.producer.request_keyframe(now)

    def route(self) -> None:
        """Tell the producer which of its streams this consumer sees: its one stream, always."""
        self.producer.route(self, (0,))

    def on_nack(self, lost: list[int], now: float, excess: int = 0) -> None:
        """Answer a subscriber's NACK from the producer's cache, as RTX where negotiated.

        A packet asked again within a round trip, retransmissions beyond the per-NACK cap and
        beyond the subscriber's budget are refused and counted: a NACK cannot make the server
        send more than the subscriber could have lost.
        """
        drops = self._stats.drops
        if excess:
            drops[DropReason.NACK_OVER_LIMIT] += excess
        resent_seq = self._resent_seq
        if resent_seq is None:
            resent_seq = self._resent_seq = [-1] * HISTORY_SIZE
            self._resent_at = [0.0] * HISTORY_SIZE
        resent_at = self._resent_at
        interval = RETRANSMIT_SLACK + (DEFAULT_RTT if self.rtt is None else self.rtt)
        transport = self.transport
        budget = transport.retransmission_budget(now)
        history = self._history
        rewriter = self._rewriter
        cache = self.stream.cache
        sent = missed = repeated = over_budget = 0
        for index, out_seq in enumerate(lost):
            if sent == MAX_RETRANSMISSIONS_PER_NACK:
                drops[DropReason.NACK_OVER_LIMIT] += len(lost) - index
                break
            slot = out_seq & (HISTORY_SIZE - 1)
            ext_seq = history[slot]
            if ext_seq < 0 or rewriter.output_of(ext_seq) != out_seq:
                missed += 1
                continue
            if resent_seq[slot] == ext_seq and now - resent_at[slot] < interval:
                repeated += 1
                continue
            data = cache.get(ext_seq)
            if data is None:
                missed += 1
                continue
            if len(data) > budget:  # the budget is spent: so is this NACK
                over_budget = len(lost) - index
                break
            budget -= len(data)
            resent_seq[slot] = ext_seq
            resent_at[slot] = now
            sent += 1
            self._resend(data, out_seq, now)
        transport.spend_retransmission_budget(budget)
        drops[DropReason.NACK_CACHE_MISS] += missed
        drops[DropReason.NACK_REPEATED] += repeated
        drops[DropReason.NACK_OVER_BUDGET] += over_budget
        self.retransmissions += sent
        self._stats.retransmissions += sent

    def _resend(self, data: bytes, out_seq: int, now: float) -> int:
        """Queue a cached packet again as first sent (numbered `out_seq`), on the RTX stream where
        negotiated; returns its size."""
        transport = self.transport
        hdr_len = header_length(data)
        out_ts = (RTP_HEADER.unpack_from(data)[3] + self.ts_offset) & 0xFFFFFFFF
        pt_byte = (data[1] & 0x80) | self.payload_type
        prefix = b""
        if self.rtx_payload_type is not None:
            header = self._rtx_header
            prefix = _SEQ.pack(out_seq)
            pt_byte = (data[1] & 0x80) | self.rtx_payload_type
            out_seq = self.rtx_seq
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        else:
            header = self._header
        header[0] = (header[0] & 0xDF) | (data[0] & 0x20)
        _PT_SEQ_TS.pack_into(header, 1, pt_byte, out_seq, out_ts)
        if self._ast_offset:
            header[self._ast_offset : self._ast_offset + 3] = abs_send_time(now)
        if self._level_offset:
            offset = find_extension(data, self.producer.extensions.audio_level)
            header[self._level_offset] = data[offset] if offset > 0 else 0x7F
        size = len(header) + len(prefix) + len(data) - hdr_len
        if self._wide_offset:
            _SEQ.pack_into(header, self._wide_offset, transport.wide_seq(size, now))
        if not self._outbox:
            self._ready.append(transport)
        self._outbox.append(b"".join((header, prefix, self._resent_payload(data[hdr_len:]))))
        return size

    def pad(self, budget: float, now: float) -> int:
        """Probe padding: copies of the newest packets sent, on the RTX stream (a receiver drops
        a copy it already has; if lost, nothing is missing). Returns the bytes queued, at most
        PADDING_BURST packets; nothing without RTX or before the stream started."""
        if self.rtx_payload_type is None or not self.started or self.paused:
            return 0
        history = self._history
        rewriter = self._rewriter
        cache = self.stream.cache
        out_seq = self.last_seq
        sent = count = 0
        while sent < budget and count < PADDING_BURST:
            ext_seq = history[out_seq & (HISTORY_SIZE - 1)]
            data = cache.get(ext_seq) if ext_seq >= 0 and rewriter.output_of(ext_seq) == out_seq else None
            if data is None:
                break
            sent += self._resend(data, out_seq, now)
            count += 1
            out_seq = (out_seq - 1) & 0xFFFF
        self._stats.probe_packets += count
        return sent

    def _resent_payload(self, payload: bytes) -> bytes:
        """A cached payload as it was first sent (a layered consumer rewrites its ids again)."""
        return payload

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        """Translate the publisher's SR into this stream's timestamps, for lip sync."""
        if self.started:
            self._sr_lsr = (ntp >> 16) & 0xFFFFFFFF
            self._sr_sent_at = now
            self.transport.send_rtcp(
                build_sender_report(self.ssrc, ntp, rtp_timestamp + self.ts_offset, self.packets_sent, self.octets_sent)
            )

    def on_report(self, fraction_lost: int, jitter: int, lsr: int, dlsr: int, now: float) -> None:
        """A receiver report block about this stream: loss, jitter, and the round trip (RFC 3550 6.4.1)."""
        self.fraction_lost = fraction_lost
        self.jitter = jitter
        if lsr and lsr == self._sr_lsr:
            rtt = now - self._sr_sent_at - dlsr / 65536
            if 0.0 <= rtt <= MAX_RTT:
                self.rtt = rtt


def abs_send_time(now: float) -> bytes:
    """The 24-bit 6.18 fixed-point send time of the abs-send-time extension."""
    return (int(now * 262144) & 0xFFFFFF).to_bytes(3, "big")
