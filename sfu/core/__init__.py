"""The sans-IO media core: packets and a clock in, packets out.

Nothing here imports asyncio, opens a socket or reads a clock: `tests/test_core_forwarding.py`
(test_core_is_sans_io) checks it.
"""

from .consumer import Consumer
from .events import (
    BandwidthEstimate,
    ConsumerLayerChanged,
    ConsumerPaused,
    ConsumerResumed,
    Event,
    KeyframeReceived,
    ProducerBound,
    SpeakersChanged,
    StreamStalled,
)
from .params import Codec, HeaderExtensions, Kind
from .producer import Producer
from .session import MediaSession, SpeakerDetector
from .stats import DropReason, MediaStats
from .transport import Transport

__all__ = [
    "BandwidthEstimate",
    "Codec",
    "Consumer",
    "ConsumerLayerChanged",
    "ConsumerPaused",
    "ConsumerResumed",
    "DropReason",
    "Event",
    "HeaderExtensions",
    "KeyframeReceived",
    "Kind",
    "MediaSession",
    "MediaStats",
    "Producer",
    "ProducerBound",
    "SpeakerDetector",
    "SpeakersChanged",
    "StreamStalled",
    "Transport",
]
