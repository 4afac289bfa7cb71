"""Drives one class's sans-IO media session from asyncio: the clock, the timer, the flush."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core import Event, MediaSession, MediaStats
from ..core.session import RETRANSMISSION_BITRATE, SpeakerDetector

if TYPE_CHECKING:
    from .batch import BatchSender
    from .peer import PeerTransport


class LiveSession:
    """Owns a `MediaSession` and the peer connections that feed it."""

    def __init__(
        self,
        stats: MediaStats,
        retransmission_bitrate: int = RETRANSMISSION_BITRATE,
        detector: SpeakerDetector | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = MediaSession(stats, retransmission_bitrate, detector)
        # Called with each core event after every flush (the room sets it); events are drained
        # either way, so that an unread queue cannot grow.
        self.on_event: Callable[[Event], None] | None = None
        self.peers: dict[str, PeerTransport] = {}
        # Shared sockets that peers queued protected packets on during this flush: sent at its end.
        self.senders: dict[BatchSender, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self.loop.time()

    def flush(self) -> None:
        """Send what the core queued, and re-arm the timer if an earlier deadline appeared:
        called after every input, written once. On a shared media port every copy of a packet
        leaves in one sendmmsg, once all peers have queued theirs."""
        session = self.session
        if session.ready:
            peers = self.peers
            for transport, rtp, rtcp in session.take_ready(self.now()):
                peer = peers.get(transport.id)
                if peer is not None:
                    peer.send(rtp, rtcp)
            senders = self.senders
            if senders:
                for sender in senders:
                    sender.send()
                senders.clear()
        if session.events:
            on_event = self.on_event
            while (event := session.next_event()) is not None:
                if on_event is not None:
                    on_event(event)
        if session.timer_changed:
            self.arm_timer()

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
