"""Which of a track's packets one subscriber is sent: the decision, apart from the rewrite.

A forwarder owns "waiting for a keyframe": a video consumer starts, and resumes after a pause, on
a keyframe. `SimpleForwarder` (one encoding, decided only before the start) answers `decide(packet)`
with None (forward) or the reason to drop; `LayeredForwarder` (simulcast streams, VP8 temporal
layers) decides on every packet: forward, skip, ignore or switch.
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


# What a layered forwarder makes of one packet (plain ints: compared on every packet).
FORWARD = 0
SKIP = 1  # a packet of the forwarded stream left out (a temporal layer): numbered as dropped
IGNORE = 2  # a packet of another stream: nothing to do with this subscriber's numbering
SWITCH = 3  # the keyframe that starts the target stream: restart the numbering on it, then forward


class LayeredForwarder:
    """Picks a spatial layer (a simulcast stream) and a temporal layer (VP8 TID) for one subscriber.

    A spatial switch, up or down, happens on a keyframe of the target stream (the caller asks for
    one); until it arrives the current stream goes on, so the picture never freezes longer than the
    time to that keyframe. A temporal layer is raised at the start of a frame that is a layer sync
    point (Y bit) and lowered at the start of any frame: frames of a higher layer are never
    referenced by lower ones, so dropping them whole leaves a decodable stream.
    """

    __slots__ = ("current", "paused", "target", "target_temporal", "temporal", "waiting")

    def __init__(self) -> None:
        self.paused = False
        self.current = -1  # the spatial layer forwarded; -1 before a start (or after a pause)
        self.temporal = 2  # the highest temporal layer forwarded
        self.target = 0
        self.target_temporal = 2
        self.waiting = True  # nothing forwarded until a keyframe of the target

    def decide(self, packet: RtpPacket) -> int:
        spatial = packet.spatial
        if spatial != self.current:
            if spatial == self.target and packet.keyframe:
                self.current = spatial
                self.temporal = self.target_temporal
                self.waiting = False
                return SWITCH
            return IGNORE
        tid = packet.temporal
        if packet.begins_frame:
            if self.target_temporal < self.temporal:
                self.temporal = self.target_temporal
            elif tid > self.temporal and tid <= self.target_temporal and packet.sync:
                self.temporal = tid
        return SKIP if tid > self.temporal else FORWARD

    def pause(self) -> None:
        self.paused = True
        self.current = -1
        self.waiting = True

    def resume(self) -> None:
        self.paused = False
        self.waiting = True

    def listens_to(self) -> tuple[int, ...]:
        """The streams whose packets this forwarder must see."""
        if self.paused:
            return ()
        if self.current < 0 or self.current == self.target:
            return (self.target,)
        return (self.current, self.target)
