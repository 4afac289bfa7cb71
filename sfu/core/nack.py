"""Upstream loss recovery: which packets to ask the publisher for again, and when."""

from __future__ import annotations


class NackGenerator:
    """Tracks gaps in a published track's sequence numbers and schedules NACKs for them.

    A gap is asked for again every `retry_interval` until it arrives, `max_tries` is reached or it
    is older than `max_age`. A gap too large to recover (a publisher restart, a long outage) is
    not asked for at all: the caller requests a keyframe instead.
    """

    __slots__ = ("_highest", "_missing", "max_age", "max_gap", "max_tries", "retry_interval")

    def __init__(
        self,
        retry_interval: float = 0.05,
        max_tries: int = 10,
        max_age: float = 1.0,
        max_gap: int = 500,
    ) -> None:
        self._missing: dict[int, list[float]] = {}  # ext seq -> [first seen missing, last asked, tries]
        self._highest = -1
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_age = max_age
        self.max_gap = max_gap

    @property
    def highest(self) -> int:
        return self._highest

    def skip_to(self, ext_seq: int) -> None:
        """Forget every gap up to `ext_seq` and take it as received (packets not wanted again)."""
        if ext_seq > self._highest:
            self._highest = ext_seq
        for seq in [s for s in self._missing if s <= ext_seq]:
            del self._missing[seq]

    def deadline(self) -> float | None:
        """When poll() has something to do: a retry or an expiry; None while no gap is open."""
        missing = self._missing
        if not missing:
            return None
        retry, max_age = self.retry_interval, self.max_age
        return min(min(max(entry[1] + retry, entry[0]), entry[0] + max_age) for entry in missing.values())

    @property
    def missing(self) -> list[int]:
        return sorted(self._missing)

    def on_packet(self, ext_seq: int, now: float) -> bool:
        """Record an arrival; returns False when the gap was too large to recover by NACK."""
        highest = self._highest
        if highest < 0 or ext_seq == highest + 1:
            self._highest = ext_seq
            return True
        if ext_seq <= highest:
            self._missing.pop(ext_seq, None)
            return True
        self._highest = ext_seq
        gap = ext_seq - highest - 1
        if gap > self.max_gap or len(self._missing) + gap > self.max_gap:
            self._missing.clear()
            return False
        for seq in range(highest + 1, ext_seq):
            self._missing[seq] = [now, float("-inf"), 0]
        return True

    def poll(self, now: float) -> list[int]:
        """Extended sequence numbers to NACK now."""
        due: list[int] = []
        expired: list[int] = []
        for seq, entry in self._missing.items():
            if entry[2] >= self.max_tries or now - entry[0] > self.max_age:
                expired.append(seq)
            elif now >= entry[1] + self.retry_interval:  # the same sum as deadline(), so it is due then
                entry[1] = now
                entry[2] += 1
                due.append(seq)
        for seq in expired:
            del self._missing[seq]
        return due
