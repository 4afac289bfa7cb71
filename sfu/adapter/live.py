"""Drives one class's sans-IO media session from asyncio: the clock, the timer, the flush."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..core import MediaSession, MediaStats
from ..core.session import RETRANSMISSION_BITRATE

if TYPE_CHECKING:
    from .peer import PeerTransport


class LiveSession:
    """Owns a `MediaSession` and the peer connections that feed it."""

    def __init__(self, stats: MediaStats, retransmission_bitrate: int = RETRANSMISSION_BITRATE) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = MediaSession(stats, retransmission_bitrate)
        self.peers: dict[str, PeerTransport] = {}
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self.loop.time()

    def flush(self) -> None:
        """Send what the core queued: called after every input, written once."""
        ready = self.session.ready
        if not ready:
            return
        peers = self.peers
        for transport in ready:
            peer = peers.get(transport.id)
            if peer is not None and (transport.outbox or transport.rtcp_outbox):
                peer.send(transport.outbox, transport.rtcp_outbox)
            transport.outbox.clear()
            transport.rtcp_outbox.clear()
        ready.clear()

    def arm_timer(self) -> None:
        if self._timer is None:
            deadline = self.session.get_timer(self.now())
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
