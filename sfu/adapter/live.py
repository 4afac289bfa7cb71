"""Drives one class's sans-IO media session from asyncio: the clock, the timer, the flush."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core import MediaSession, MediaStats
from ..core.events import Event
from ..core.session import RETRANSMISSION_BITRATE
from ..core.speakers import SpeakerDetector

if TYPE_CHECKING:
    from .peer import PeerTransport


class LiveSession:
    """Owns a `MediaSession` and the peer connections that feed it."""

    def __init__(
        self, stats: MediaStats, retransmission_bitrate: int = RETRANSMISSION_BITRATE, speakers: int = 3
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = MediaSession(stats, retransmission_bitrate, detector=SpeakerDetector(speakers))
        self.peers: dict[str, PeerTransport] = {}
        self._timer: asyncio.TimerHandle | None = None
        # The owner's handler of the core's events (speakers changed, ...); without one they are dropped.
        self.on_event: Callable[[Event], None] | None = None

    def now(self) -> float:
        return self.loop.time()

    def flush(self) -> None:
        """Send what the core queued, and re-arm the timer if an earlier deadline appeared:
        called after every input, written once."""
        session = self.session
        if session.ready:
            peers = self.peers
            for transport, rtp, rtcp in session.take_ready():
                peer = peers.get(transport.id)
                if peer is not None:
                    peer.send(rtp, rtcp)
        if session.events:
            self._dispatch()
        if session.timer_changed:
            self.arm_timer()

    def _dispatch(self) -> None:
        """Hand every event to the owner, oldest first: the core's queue never grows unread."""
        session = self.session
        handler = self.on_event
        event = session.next_event()
        while event is not None:
            if handler is not None:
                handler(event)
            event = session.next_event()

    def arm_timer(self) -> None:
        """Schedule handle_timer at the core's earliest deadline (none when nothing is due)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer()
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self.now())
        self.flush()
        self.arm_timer()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
