"""The sans-IO media core: packets and a clock in, packets out.

Nothing here imports asyncio, opens a socket or reads a clock: `tests/test_core_sans_io.py`
checks it.
"""

from .consumer import Consumer
from .params import Codec, HeaderExtensions, Kind
from .producer import Producer
from .session import MediaSession
from .stats import DropReason, MediaStats
from .transport import Transport

__all__ = [
    "Codec",
    "Consumer",
    "DropReason",
    "HeaderExtensions",
    "Kind",
    "MediaSession",
    "MediaStats",
    "Producer",
    "Transport",
]
