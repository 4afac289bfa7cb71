"""One class's media: the transports of its participants and the links between their tracks.

A session is the isolation boundary: a consumer can only be made from a producer of the same
session, so one class's media can never reach another class.
"""

from __future__ import annotations

from .consumer import Consumer
from .params import Codec, HeaderExtensions
from .producer import Producer
from .speakers import SpeakerDetector
from .stats import MediaStats
from .transport import Transport

TICK = 0.02  # upstream NACK and keyframe timers run at this resolution
RETRANSMISSION_BITRATE = 2_000_000  # bits per second that one subscriber may be sent again


class MediaSession:
    """Sans-IO: fed with packets and the time, it leaves datagrams in its transports' outboxes.

    After every input, the caller sends what `ready` lists (each transport's `outbox` and
    `rtcp_outbox`), empties those lists in place, and clears `ready`.
    """

    def __init__(self, stats: MediaStats | None = None, retransmission_bitrate: int = RETRANSMISSION_BITRATE) -> None:
        self.stats = stats or MediaStats()
        self.retransmission_rate = retransmission_bitrate / 8  # bytes per second, per subscriber transport
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.ready: list[Transport] = []
        # Fed by every microphone packet's audio level; the owner evaluates it at `speakers.due()`.
        self.speakers = SpeakerDetector()

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
        transport.outbox.clear()
        transport.rtcp_outbox.clear()
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
        source: str = "",
        max_bitrate: int = 1_500_000,
    ) -> Producer:
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
            source=source,
            max_bitrate=max_bitrate,
        )
        self.producers[producer_id] = producer
        transport.producers_by_mid[mid] = producer
        transport.mid_extension = transport.mid_extension or extensions.mid
        if ssrc is not None:
            transport.producers[ssrc] = producer
        if rtx_ssrc is not None and codec.rtx_payload_type is not None:
            transport.rtx_producers[rtx_ssrc] = producer
        return producer

    def remove_producer(self, producer: Producer) -> None:
        for consumer in list(producer.consumers):
            self.remove_consumer(consumer)
        transport = producer.transport
        transport.producers_by_mid.pop(producer.mid, None)
        if producer.ssrc is not None:
            transport.producers.pop(producer.ssrc, None)
        if producer.rtx_ssrc is not None:
            transport.rtx_producers.pop(producer.rtx_ssrc, None)
        self.producers.pop(producer.id, None)
        self.speakers.remove(producer.id)
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
        consumer = Consumer(
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
            consumer.paused = True  # resumed, at a keyframe for video, when the producer is unmuted
        elif consumer.needs_keyframe:
            producer.waiting_for_keyframe += 1
            producer.request_keyframe(now)
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        producer = consumer.producer
        if consumer in producer.consumers:
            producer.consumers.remove(consumer)
            if consumer.needs_keyframe and not consumer.started and not consumer.paused:
                producer.waiting_for_keyframe -= 1
        transport = consumer.transport
        transport.consumers.pop(consumer.ssrc, None)
        if consumer.rtx_ssrc is not None:
            transport.consumers.pop(consumer.rtx_ssrc, None)

    def handle_timer(self, now: float) -> None:
        for producer in self.producers.values():
            producer.on_timer(now)

    def get_timer(self, now: float) -> float | None:
        """When handle_timer should run next; None while nothing is published."""
        return now + TICK if self.producers else None

    def _check_owned(self, transport: Transport) -> None:
        if self.transports.get(transport.id) is not transport:
            raise ValueError("transport does not belong to this session")
