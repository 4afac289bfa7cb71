"""One encoding of a published track as it arrives: numbering, cache, loss, reports, bitrate.

A `Producer` is the track; it holds one `ReceiveStream` per SSRC: one, or one per simulcast rid.
What belongs to the packets of one SSRC lives here: the sequence extender, the packet cache for
NACKs, the upstream NACK generator, keyframe requests, the receiver-report state, the consumers
it feeds, and the bitrate meters (per temporal layer too) the allocator reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cache import PacketCache
from .keyframe import KeyframeRequester
from .nack import NackGenerator
from .rtcp import ReportBlock
from .seq import SeqExtender
from .stats import DropReason

if TYPE_CHECKING:
    from .consumer import Consumer
    from .producer import Producer

METER_SLOTS = 10  # the bitrate meter's window: 10 slots of 100 ms
SHARES_SPAN = 0.5  # seconds of packets the temporal layers' shares are measured over
METER_SLOT = 0.1


class ReceiveStream:
    """The packets of one SSRC of a track."""

    __slots__ = (
        "_expected_prior",
        "_jitter",
        "_meter",
        "_meter_slot",
        "_received_prior",
        "_shares_at",
        "_sr_ntp",
        "_sr_time",
        "_temporal_shares",
        "_transit",
        "cache",
        "clock_rate",
        "consumers",
        "floor",
        "keyframes",
        "nack",
        "producer",
        "received",
        "rid",
        "rtx_ssrc",
        "seq",
        "spatial",
        "ssrc",
        "stalled",
        "temporal_bytes",
    )

    def __init__(
        self, producer: Producer, ssrc: int | None, clock_rate: int, video: bool, spatial: int = 0, rid: str = ""
    ) -> None:
        self.producer = producer
        self.ssrc = ssrc
        self.rtx_ssrc: int | None = None
        self.spatial = spatial
        self.rid = rid
        self.consumers: list[Consumer] = []  # those that see this stream's packets (Producer.route)
        self.keyframes = KeyframeRequester()
        self.temporal_bytes = [0, 0, 0, 0]  # by VP8 TID since the last layer_bitrates()
        self._temporal_shares: tuple[float, ...] = (1.0,)
        self._shares_at = float("-inf")
        self.clock_rate = clock_rate
        self.seq = SeqExtender()
        self.cache = PacketCache(1024 if video else 128)
        self.nack = NackGenerator() if video else None
        self.floor = 0  # packets below this extended sequence number were sent while muted
        self.received = 0
        self.stalled = False  # a report round found nothing new (StreamStalled was emitted)
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = 0
        self._jitter = 0.0
        self._sr_ntp = 0
        self._sr_time = 0.0
        self._meter = [0] * METER_SLOTS  # bytes per 100 ms slot, a ring
        self._meter_slot = 0

    def receive(self, data: bytes, seq: int, ts: int, now: float) -> int:
        """Take one media packet; returns its extended sequence number, or -1 when it is dropped
        (a duplicate, or sent while the track was muted)."""
        ext_seq = self.seq.extend(seq)
        producer = self.producer
        if ext_seq < self.floor:
            producer.stats.drops[DropReason.MUTED] += 1  # sent while muted, arriving late
            return -1
        if ext_seq in self.cache:
            producer.stats.drops[DropReason.DUPLICATE] += 1
            return -1
        self.cache.put(ext_seq, data)
        session = producer.session
        if self.received == self._received_prior:
            session.reports_due()  # the first packet since the last report
            self.stalled = False
        self.received += 1
        nack = self.nack
        if nack is not None:
            gap = ext_seq > nack.highest + 1 and nack.highest >= 0
            if not nack.on_packet(ext_seq, now):
                producer.request_keyframe(now)
            elif gap:
                session.attend(producer, now)  # NACK the gap at once
        # RFC 3550 interarrival jitter, in timestamp units.
        transit = int(now * self.clock_rate) - ts
        if self.received > 1:
            delta = abs(transit - self._transit)
            if delta < 0x10000000:
                self._jitter += (delta - self._jitter) / 16
        self._transit = transit
        slot = int(now / METER_SLOT)
        if slot != self._meter_slot:
            self._advance_meter(slot)
        self._meter[slot % METER_SLOTS] += len(data)
        return ext_seq

    def skip_muted(self, seq: int) -> None:
        """A packet sent while muted: never asked for again, never accepted late."""
        ext_seq = self.seq.extend(seq)
        if ext_seq >= self.floor:
            self.floor = ext_seq + 1
            if self.nack is not None:
                self.nack.skip_to(ext_seq)

    def bitrate(self, now: float) -> int:
        """Bits per second received over the last second (the current slot included)."""
        self._advance_meter(int(now / METER_SLOT))
        return int(sum(self._meter) * 8 / (METER_SLOTS * METER_SLOT))

    def layer_bitrates(self, now: float) -> tuple[int, ...]:
        """The bitrate with temporal layers 0..t included, for each layer seen (one entry without
        temporal layers). The shares are measured over SHARES_SPAN at least (a round soon after
        another would otherwise see a keyframe alone, as if the layer had no temporal layers) and
        smoothed over successive measures."""
        total = self.bitrate(now)
        counts = self.temporal_bytes
        seen = sum(counts)
        if seen and now - self._shares_at >= SHARES_SPAN:
            self._shares_at = now
            layers = max(i for i, count in enumerate(counts) if count) + 1
            shares = []
            running = 0
            for tid in range(layers):
                running += counts[tid]
                shares.append(running / seen)
            previous = self._temporal_shares
            if len(previous) == layers:
                shares = [(a + b) / 2 for a, b in zip(previous, shares, strict=True)]
            self._temporal_shares = tuple(shares)
            for tid in range(len(counts)):
                counts[tid] = 0
        return tuple(int(total * share) for share in self._temporal_shares)

    def _advance_meter(self, slot: int) -> None:
        meter = self._meter
        for index in range(self._meter_slot + 1, min(slot, self._meter_slot + METER_SLOTS) + 1):
            meter[index % METER_SLOTS] = 0
        if slot > self._meter_slot:
            self._meter_slot = slot

    def on_sender_report(self, ntp: int, now: float) -> None:
        self._sr_ntp = ntp
        self._sr_time = now

    def report_block(self, now: float) -> ReportBlock | None:
        """This stream's receiver-report block, or None when nothing arrived since the last one."""
        if self.ssrc is None or self.received == self._received_prior:
            return None
        highest = self.seq.highest - 0x10000
        expected = highest - (self.seq.first - 0x10000) + 1
        lost = expected - self.received
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        lsr = (self._sr_ntp >> 16) & 0xFFFFFFFF
        dlsr = int((now - self._sr_time) * 65536) if self._sr_ntp else 0
        return ReportBlock(self.ssrc, min(fraction, 255), lost, highest, int(self._jitter), lsr, dlsr)
