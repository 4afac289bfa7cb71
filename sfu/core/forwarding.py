"""Which of a track's packets one subscriber is sent: the decision, apart from the rewrite.

A forwarder answers `decide(packet)` with None (forward) or the reason to drop. It is the one
owner of "waiting for a keyframe": a video consumer starts, and resumes after a pause, on a
keyframe. Later strategies (simulcast layers, temporal layers) are other forwarders.
"""

from __future__ import annotations

from .packet import RtpPacket
from .stats import DropReason


class SimpleForwarder:
    """One encoding, forwarded whole once a keyframe (video) has arrived."""

    __slots__ = ("needs_keyframe", "paused", "waiting")

    def __init__(self, needs_keyframe: bool) -> None:
        self.needs_keyframe = needs_keyframe  # video: a decoder cannot start on a delta frame
        self.waiting = needs_keyframe
        self.paused = False

    def decide(self, packet: RtpPacket) -> DropReason | None:
        if self.paused:
            return DropReason.PAUSED
        if self.waiting:
            if not packet.keyframe:
                return DropReason.WAITING_FOR_KEYFRAME
            self.waiting = False
        return None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Forward again; video waits for the next keyframe (the caller requests one)."""
        self.paused = False
        self.waiting = self.needs_keyframe
