"""Sequence numbers for one subscriber: continuous even when packets are dropped on purpose.

After mediasoup's SeqManager (sync / drop / input). A packet the server chooses not to send (a
paused stream, a frame before the keyframe, later a temporal layer) must not leave a hole the
subscriber would NACK: each dropped packet shifts the numbering of every newer packet down by
one, while an older packet arriving late still gets the number it would have had.

Inputs are extended sequence numbers (the producer's, never wrapping), outputs 16-bit.
"""

from __future__ import annotations

import bisect

WINDOW = 1 << 12  # inputs older than the newest by this much are refused; drops older are folded


class SeqRewriter:
    """Maps a publisher's extended sequence numbers to a subscriber's 16-bit ones."""

    __slots__ = ("base", "dropped", "first", "max_input", "started")

    def __init__(self) -> None:
        self.base = 0  # output = input + base - (dropped inputs below it)
        self.first = 0  # the first input after the last sync; older ones are refused
        self.max_input = -1  # the newest input, sent or dropped
        self.started = False
        # Dropped inputs newer than max_input - WINDOW, sorted. While it is empty, a newer input
        # maps to input + base: Consumer.forward inlines that case (a call costs more than the rest).
        self.dropped: list[int] = []

    def sync(self, ext_seq: int, next_output: int) -> None:
        """Make `ext_seq` map to `next_output` (a start, or a restart after a source change)."""
        self.base = next_output - ext_seq
        self.first = ext_seq
        self.max_input = ext_seq - 1
        self.started = True
        self.dropped.clear()

    def drop(self, ext_seq: int) -> None:
        """Leave out the newest packet, without a gap: newer packets take its number.

        An older packet (out of order) dropped here keeps its number: a gap the subscriber may NACK,
        as mediasoup does, since newer numbers were already sent."""
        if ext_seq > self.max_input:
            self.max_input = ext_seq
            self.dropped.append(ext_seq)
            if self.dropped[0] < ext_seq - WINDOW:
                self._fold(ext_seq - WINDOW)

    def input(self, ext_seq: int) -> int | None:
        """The output number of a packet to send, or None when it must not be sent (dropped
        before, older than the sync point, or too old to place)."""
        if ext_seq < self.first or ext_seq < self.max_input - WINDOW:
            return None
        dropped = self.dropped
        if dropped:
            below = bisect.bisect_left(dropped, ext_seq)
            if below < len(dropped) and dropped[below] == ext_seq:
                return None
            out = ext_seq + self.base - below
        else:
            out = ext_seq + self.base
        if ext_seq > self.max_input:
            self.max_input = ext_seq
        return out & 0xFFFF

    def output_of(self, ext_seq: int) -> int | None:
        """The number an input was (or would be) sent with, without changing anything: for NACKs."""
        if ext_seq < self.first:
            return None
        dropped = self.dropped
        below = bisect.bisect_left(dropped, ext_seq) if dropped else 0
        if below < len(dropped) and dropped[below] == ext_seq:
            return None
        return (ext_seq + self.base - below) & 0xFFFF

    def next_output(self) -> int:
        """The number that continues this output (for a sync after a pause or a source change):
        one past the newest input's, every drop (all at or below max_input) taken off."""
        return self.max_input + self.base - len(self.dropped) + 1

    def _fold(self, limit: int) -> None:
        dropped = self.dropped
        index = bisect.bisect_left(dropped, limit)
        self.base -= index
        del dropped[:index]
