"""What the core tells its driver, as values: the driver polls them with `MediaSession.next_event()`.

Frozen dataclasses, as aioquic's events: the room reacts to them (announce a track, recompute a
selection, outline a speaker) without reaching into the core's objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProducerBound:
    """A producer learnt its media SSRC from a packet's mid (it was not in the SDP)."""

    producer_id: str
    ssrc: int


@dataclass(frozen=True, slots=True)
class KeyframeReceived:
    """A keyframe arrived for a producer that consumers were waiting on."""

    producer_id: str


@dataclass(frozen=True, slots=True)
class SpeakersChanged:
    """The speaker detector's choice changed: the active speaker and the K loudest (producer ids)."""

    active: str | None
    loudest: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsumerPaused:
    """A consumer stopped forwarding (its first pause reason arrived)."""

    transport_id: str
    producer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConsumerResumed:
    """A consumer's last pause reason went: it forwards again (video from the next keyframe)."""

    transport_id: str
    producer_id: str


@dataclass(frozen=True, slots=True)
class StreamStalled:
    """A producer that was receiving (and is not muted) got nothing during a whole report
    interval (1 to 2 s of silence); it flows again with its next packet, without an event."""

    producer_id: str


@dataclass(frozen=True, slots=True)
class ConsumerLayerChanged:
    """A layered consumer now forwards another spatial or temporal layer (a switch completed)."""

    transport_id: str
    producer_id: str
    spatial: int
    temporal: int


@dataclass(frozen=True, slots=True)
class BandwidthEstimate:
    """A subscriber's downlink estimate moved by more than a tenth since the last one told."""

    transport_id: str
    bitrate: int


Event = (
    ProducerBound
    | KeyframeReceived
    | SpeakersChanged
    | ConsumerPaused
    | ConsumerResumed
    | StreamStalled
    | ConsumerLayerChanged
    | BandwidthEstimate
)
