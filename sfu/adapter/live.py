"""Drives one class's sans-IO media session from asyncio: the clock, the timer, the flush."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
        # Told (active, loudest) by producer id when the speakers change.
        self.on_speakers: Callable[[str | None, tuple[str, ...]], None] | None = None

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
        now = self.now()
        self.session.handle_timer(now)
        speakers = self.session.speakers
        due = speakers.due()
        if due is not None and due <= now + 0.001:
            changed = speakers.evaluate(now)
            if changed is not None and self.on_speakers is not None:
                self.on_speakers(*changed)
        self.flush()
        self.arm_timer()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
