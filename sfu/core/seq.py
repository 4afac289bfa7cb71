"""Wrap-around arithmetic for 16-bit sequence numbers and 32-bit timestamps."""

from __future__ import annotations


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between two 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


class SeqExtender:
    """Turns 16-bit sequence numbers into a monotonic 64-bit space (RFC 3550, A.1).

    Keeping an extended sequence number lets caches, NACK lists and reports compare packets
    across wrap-around without special cases.
    """

    __slots__ = ("first", "highest", "started")

    def __init__(self) -> None:
        self.highest = 0
        self.first = 0
        self.started = False

    def extend(self, seq: int) -> int:
        if not self.started:
            self.started = True
            self.highest = self.first = seq + 0x10000  # room below for late packets
            return self.highest
        ext = self.highest + seq_diff(seq, self.highest & 0xFFFF)
        if ext > self.highest:
            self.highest = ext
        elif ext < self.first:
            self.first = ext
        return ext
