"""One class's media: the transports of its participants and the links between their tracks.

A session is the isolation boundary: a consumer can only be made from a producer of the same
session, so one class's media can never reach another class.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from .consumer import Consumer
from .events import Event, SpeakersChanged, StreamStalled
from .layered import LayeredConsumer
from .pacer import Pacer
from .params import Codec, HeaderExtensions, Kind
from .producer import Producer
from .rtcp import build_receiver_report, build_remb
from .stats import MediaStats
from .transport import Transport

REPORT_INTERVAL = 1.0  # receiver reports and REMB towards publishers, for every track at once
MAX_REPORT_BLOCKS = 31  # per RTCP receiver report (a 5-bit count)
MAX_RTCP_DATAGRAM = 1200  # RTCP packets are compounded up to this size
RETRANSMISSION_BITRATE = 2_000_000  # bits per second that one subscriber may be sent again


class SpeakerDetector(Protocol):
    """What the session needs of a speaker detector (sfu/core/speakers.py provides one)."""

    def observe(self, producer_id: str, level: int, now: float) -> None: ...

    def remove(self, producer_id: str) -> None: ...

    def due(self) -> float | None: ...

    def evaluate(self, now: float) -> tuple[str | None, tuple[str, ...]] | None: ...


class MediaSession:
    """Sans-IO, as aioquic: fed with packets and the time; the caller then takes what to send
    (`take_ready()`), what happened (`next_event()`) and when to call again (`get_timer()`)."""

    def __init__(
        self,
        stats: MediaStats | None = None,
        retransmission_bitrate: int = RETRANSMISSION_BITRATE,
        detector: SpeakerDetector | None = None,
    ) -> None:
        self.stats = stats or MediaStats()
        self.retransmission_rate = retransmission_bitrate / 8  # bytes per second, per subscriber transport
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.ready: list[Transport] = []  # transports with something queued; see take_ready
        self.events: deque[Event] = deque()
        self.detector = detector
        self.timer_changed = False  # an earlier deadline appeared since get_timer(): re-arm
        self._wake: float | None = None  # the earliest deadline known (a lower bound is fine)
        self._attention: dict[Producer, None] = {}  # producers with a NACK or keyframe deadline
        self._next_report = 0.0
        self._reports_due = False  # a track received something since the last reports
        self._probing: dict[Transport, None] = {}  # transports sending probe padding
        self._pacing: dict[Transport, None] = {}  # transports whose pacer holds packets
        self._detecting = False  # the detector has a deadline get_timer() knows of

    # Inputs from the producers (their hot path calls these only on a change)

    def attend(self, producer: Producer, at: float) -> None:
        """A producer has a deadline (a NACK to send, a keyframe request pending) at `at`."""
        self._attention[producer] = None
        self._wake_at(at)

    def reports_due(self) -> None:
        if not self._reports_due:
            self._reports_due = True
            self._wake_at(self._next_report)

    def observe_level(self, producer_id: str, level: int, now: float) -> None:
        """An audio packet's level (0 loud .. 127 silent), handed to the speaker detector."""
        detector = self.detector
        if detector is not None:
            detector.observe(producer_id, level, now)
            if not self._detecting:
                self._detecting = True
                due = detector.due()
                if due is not None:
                    self._wake_at(due)

    def _wake_at(self, at: float) -> None:
        if self._wake is None or at < self._wake:
            self._wake = at
            self.timer_changed = True

    # Outputs

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self.events.popleft() if self.events else None

    def take_ready(self, now: float | None = None) -> list[tuple[Transport, list[bytes], list[bytes]]]:
        """What to send now, per transport: its RTP packets and its RTCP compounded into datagrams.
        With `now`, subscribers' video goes through their pacers (what they hold leaves later, by
        the timer); without, everything queued leaves.

        The lists handed back belong to the caller; the core keeps its own outboxes."""
        batches = []
        for transport in self.ready:
            if transport.closed:
                continue
            outbox = transport.outbox
            pacer = transport.pacer
            if pacer is None or now is None or pacer.fits(outbox, now):  # the usual case
                rtp = outbox.copy()
                outbox.clear()
            else:
                rtp = self._paced(transport, pacer, now)
            if transport.audio_outbox:
                rtp = transport.audio_outbox + rtp
                transport.audio_outbox.clear()
            rtcp = _compound(transport.rtcp_outbox)
            transport.rtcp_outbox.clear()
            if rtp or rtcp:
                batches.append((transport, rtp, rtcp))
        self.ready.clear()
        return batches

    def _paced(self, transport: Transport, pacer: Pacer, now: float) -> list[bytes]:
        """What leaves when the pacer holds packets, or must hold some of these."""
        outbox = transport.outbox
        if outbox:
            transport.forget(outbox)  # numbered again as they leave
            pacer.hold(outbox, transport.priorities)
            outbox.clear()
        rtp = pacer.due(now)
        transport.renumber(rtp, now)
        if pacer.next_at is not None:
            self._pacing[transport] = None
            self._wake_at(pacer.next_at)
        return rtp

    def create_transport(self, transport_id: str) -> Transport:
        if transport_id in self.transports:
            raise ValueError(f"transport {transport_id} exists")
        transport = Transport(self, transport_id)
        self.transports[transport_id] = transport
        return transport

    def close_transport(self, transport: Transport) -> None:
        """Remove a transport with every producer and consumer on it."""
        for producer in list(transport.producers_by_mid.values()):
            self.remove_producer(producer)
        for consumer in set(transport.consumers.values()):
            self.remove_consumer(consumer)
        transport.closed = True
        self._probing.pop(transport, None)
        transport.outbox.clear()
        transport.audio_outbox.clear()
        transport.rtcp_outbox.clear()
        self._pacing.pop(transport, None)
        self.transports.pop(transport.id, None)

    def add_producer(
        self,
        transport: Transport,
        producer_id: str,
        *,
        mid: str,
        codec: Codec,
        extensions: HeaderExtensions,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        rids: tuple[str, ...] = (),
        source: str = "",
        owner: str = "",
        role: str = "",
        max_bitrate: int = 1_500_000,
    ) -> Producer:
        """Publish a track; `owner`, `role` and `source` are the room's metadata, kept as given.
        `rids` names its simulcast encodings, lowest first: their SSRCs are learnt from packets."""
        self._check_owned(transport)
        if producer_id in self.producers or mid in transport.producers_by_mid:
            raise ValueError(f"producer {producer_id} (mid {mid}) exists")
        producer = Producer(
            transport,
            producer_id,
            mid=mid,
            codec=codec,
            extensions=extensions,
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            rids=rids,
            source=source,
            owner=owner,
            role=role,
            max_bitrate=max_bitrate,
        )
        self.producers[producer_id] = producer
        transport.producers_by_mid[mid] = producer
        transport.mid_extension = transport.mid_extension or extensions.mid
        stream = producer.stream
        if stream.ssrc is not None:
            transport.streams[stream.ssrc] = stream
        if stream.rtx_ssrc is not None and codec.rtx_payload_type is not None:
            transport.rtx_streams[stream.rtx_ssrc] = stream
        return producer

    def remove_producer(self, producer: Producer) -> None:
        for consumer in list(producer.consumers):
            self.remove_consumer(consumer)
        transport = producer.transport
        transport.producers_by_mid.pop(producer.mid, None)
        for stream in producer.streams:
            if stream.ssrc is not None:
                transport.streams.pop(stream.ssrc, None)
            if stream.rtx_ssrc is not None:
                transport.rtx_streams.pop(stream.rtx_ssrc, None)
        self.producers.pop(producer.id, None)
        self._attention.pop(producer, None)
        if self.detector is not None and producer.kind is Kind.AUDIO:
            self.detector.remove(producer.id)
        producer.closed = True

    def add_consumer(
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
        now: float = 0.0,
    ) -> Consumer:
        """Subscribe `transport` to `producer`; video asks the publisher for a keyframe at once."""
        self._check_owned(transport)
        if self.producers.get(producer.id) is not producer:
            raise ValueError("producer does not belong to this session")
        if producer.transport is transport:
            raise ValueError("a transport cannot consume its own producer")
        if ssrc in transport.consumers or (rtx_ssrc is not None and rtx_ssrc in transport.consumers):
            raise ValueError(f"SSRC {ssrc} is already used on this transport")
        kind = LayeredConsumer if producer.layered else Consumer
        consumer = kind(
            transport,
            producer,
            ssrc=ssrc,
            payload_type=payload_type,
            mid=mid,
            extensions=extensions,
            rtx_ssrc=rtx_ssrc,
            rtx_payload_type=rtx_payload_type,
            initial_seq=initial_seq,
            initial_ts=initial_ts,
        )
        transport.consumers[ssrc] = consumer
        if consumer.rtx_ssrc is not None:
            transport.consumers[consumer.rtx_ssrc] = consumer
        producer.consumers.append(consumer)
        if producer.muted:
            # Resumed, at a keyframe for video, when the producer is unmuted.
            consumer.paused = True
            consumer.pause_reasons.add("muted")
            consumer.forwarder.pause()
        elif consumer.forwarder.waiting:
            consumer.request_keyframe(now)
        consumer.route()
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        producer = consumer.producer
        if consumer in producer.consumers:
            producer.consumers.remove(consumer)
            producer.route(consumer, ())
        transport = consumer.transport
        transport.consumers.pop(consumer.ssrc, None)
        if consumer.rtx_ssrc is not None:
            transport.consumers.pop(consumer.rtx_ssrc, None)

    def probing(self, transport: Transport) -> None:
        """A transport started a probe (Transport.start_probe): its bursts are timer work."""
        self._probing[transport] = None
        self._wake_at(transport.probe_next)

    def handle_timer(self, now: float) -> None:
        """Run what is due: upstream NACKs and keyframe requests, probe padding, paced packets,
        reports, speaker evaluation."""
        for producer in list(self._attention):
            producer.on_timer(now)
            if producer.deadline() is None:
                del self._attention[producer]
        for transport in list(self._probing):
            if now >= transport.probe_next:
                transport.on_probe_timer(now)
            if transport.probe_until is None or transport.closed:
                del self._probing[transport]
        for transport in list(self._pacing):
            pacer = transport.pacer
            if transport.closed or pacer is None or pacer.next_at is None:
                del self._pacing[transport]
            elif now >= pacer.next_at:
                del self._pacing[transport]
                self.ready.append(transport)  # take_ready releases what is due
        if self._reports_due and now >= self._next_report:
            self._send_reports(now)
        detector = self.detector
        if detector is not None:
            due = detector.due()
            if due is not None and now >= due:
                changed = detector.evaluate(now)
                if changed is not None:
                    self.events.append(SpeakersChanged(changed[0], changed[1]))
            self._detecting = detector.due() is not None

    def get_timer(self, now: float | None = None) -> float | None:
        """The earliest real deadline, or None when nothing is due (no metronome: an idle class
        never wakes the server). `now` is accepted for the former signature and ignored."""
        deadline: float | None = None
        for producer in self._attention:
            at = producer.deadline()
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        for transport in self._probing:
            if deadline is None or transport.probe_next < deadline:
                deadline = transport.probe_next
        for transport in self._pacing:
            at = transport.pacer.next_at if transport.pacer is not None else None
            if at is not None and (deadline is None or at < deadline):
                deadline = at
        if self._reports_due and (deadline is None or self._next_report < deadline):
            deadline = self._next_report
        if self.detector is not None:
            due = self.detector.due()
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        self._wake = deadline
        self.timer_changed = False
        return deadline

    def _send_reports(self, now: float) -> None:
        """One receiver report (and one REMB) per publishing transport, for all its tracks."""
        self._next_report = now + REPORT_INTERVAL
        reported = False
        for transport in self.transports.values():
            producers = transport.producers_by_mid.values()
            blocks = []
            for producer in producers:
                found = producer.report_blocks(now)
                if found:
                    blocks.extend(found)
                elif producer.stream.received and not producer.stream.stalled and not producer.muted:
                    producer.stream.stalled = True  # until its next packet (ReceiveStream.receive)
                    self.events.append(StreamStalled(producer.id))
            reported = reported or bool(blocks)
            for start in range(0, len(blocks), MAX_REPORT_BLOCKS):
                transport.send_rtcp(
                    build_receiver_report(transport.rtcp_ssrc, blocks[start : start + MAX_REPORT_BLOCKS])
                )
            # One REMB per publisher (browsers take it for the whole connection): the sum of its
            # video tracks' caps, whoever subscribes. A weak subscriber gets a lower layer (the
            # allocator's choice); it does not lower what everyone else receives.
            cap = 0
            ssrcs: list[int] = []
            for producer in producers:
                if producer.kind is Kind.VIDEO and producer.has_received():
                    cap += producer.max_bitrate
                    ssrcs.extend(stream.ssrc for stream in producer.streams if stream.ssrc is not None)
            if ssrcs:
                transport.send_rtcp(build_remb(transport.rtcp_ssrc, cap, ssrcs))
        # One more round after the last one that reported anything: it finds the streams that
        # stopped (StreamStalled), then the reports stop until a packet arrives.
        self._reports_due = reported
        if reported:
            self._wake_at(self._next_report)

    def _check_owned(self, transport: Transport) -> None:
        if self.transports.get(transport.id) is not transport:
            raise ValueError("transport does not belong to this session")


def _compound(packets: list[bytes]) -> list[bytes]:
    """RTCP packets joined into compound datagrams of at most MAX_RTCP_DATAGRAM bytes (RFC 3550 6.1)."""
    if len(packets) < 2:
        return packets.copy()
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for packet in packets:
        if current and size + len(packet) > MAX_RTCP_DATAGRAM:
            out.append(b"".join(current))
            current, size = [], 0
        current.append(packet)
        size += len(packet)
    out.append(b"".join(current))
    return out
