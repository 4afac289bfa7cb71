"""A subscriber's video released at the pace its downlink can take, as libwebrtc's pacer does.

Without it, a keyframe (tens of packets at once) or a burst of retransmissions enters the
subscriber's bottleneck all together: on a slow link with a short queue, its tail is dropped,
asked for again, sent again in a burst... and the picture waits for a keyframe that cannot pass.
The pacer lets through at once what fits in a small burst and holds the rest, released at
PACE_FACTOR times the downlink estimate (the estimate is what the room allocates by), the most
important pictures first. Audio is not held (the transport keeps it apart): a voice waits for no
keyframe.

Sans-IO: `fits` says whether what the transport queued may leave now (the usual case, kept
short: it runs for every packet forwarded); otherwise `hold` takes it in and `due` says what
leaves, `next_at` when more may. Held packets are kept per priority, each stream in its order;
the work is per packet held or released, never per packet waiting (a long queue costs memory, not
time). What is held never waits much more than MAX_HOLD: a longer queue leaves faster (a
subscriber whose feedback claims a tiny downlink cannot make the server hold its media forever).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

PACE_FACTOR = 1.0
BURST = 0.02  # seconds of the pace rate that may leave at once
MIN_BURST = 2_400  # bytes: two full packets, whatever the rate
TICK = 0.001  # seconds: the shortest wait for held packets (a timer's granularity)
MAX_HOLD = 2.0  # seconds: a queue longer than this at the pace rate leaves faster


def ssrc_of(data: bytes) -> int:
    return int.from_bytes(data[8:12], "big")


class Pacer:
    """The release of one subscriber transport's video."""

    __slots__ = ("_budget", "_burst", "_drain", "_queues", "_time", "next_at", "queued", "rate")

    def __init__(self) -> None:
        self.rate = 0.0  # bytes per second; 0: not pacing (no estimate yet)
        self.queued = 0  # bytes held
        self.next_at: float | None = None  # when held packets may leave (None: none held)
        self._queues: dict[int, deque[bytes]] = {}  # priority -> packets held, oldest first
        self._budget = 0.0
        self._burst = float(MIN_BURST)
        self._drain = 0.0  # a faster rate while more than MAX_HOLD is held
        self._time = 0.0

    def set_estimate(self, bitrate: int) -> None:
        self.rate = bitrate * PACE_FACTOR / 8
        self._burst = max(self.rate * BURST, MIN_BURST)

    def fits(self, outbox: list[bytes], now: float) -> bool:
        """Whether `outbox` may leave now as it is (then counted as sent): nothing held before
        it, and within the budget."""
        rate = self.rate
        if not rate:
            return not self.queued
        budget = self._budget + (now - self._time) * (self._drain or rate)
        if budget > self._burst:
            budget = self._burst
        self._time = now
        self._budget = budget
        if self.queued:
            return False
        size = len(outbox[0]) if len(outbox) == 1 else sum(map(len, outbox))
        if size > budget:
            return False
        self._budget = budget - size
        return True

    def hold(self, packets: list[bytes], priorities: Mapping[int, int]) -> None:
        """Take these packets in (`priorities`: SSRC -> the room's priority; the teacher's
        picture before a thumbnail)."""
        queues = self._queues
        for data in packets:
            priority = priorities.get(ssrc_of(data), 0)
            queue = queues.get(priority)
            if queue is None:
                queue = queues[priority] = deque()
            queue.append(data)
            self.queued += len(data)

    def due(self, now: float) -> list[bytes]:
        """What leaves now of what is held, most important first (`fits` ran at `now`)."""
        budget = self._budget if self.rate else float("inf")
        leaving = []
        for priority in sorted(self._queues, reverse=True):
            queue = self._queues[priority]
            while queue and budget > 0:
                data = queue.popleft()
                budget -= len(data)
                self.queued -= len(data)
                leaving.append(data)
            if not queue:
                del self._queues[priority]
        self._budget = budget
        if not self.queued:
            self.next_at = None
            self._drain = 0.0
        else:
            # A queue longer than MAX_HOLD at the pace rate leaves faster, so that it lasts no
            # longer (libwebrtc's pacer does the same; dropping it all on the link would lose it).
            self._drain = self.queued / MAX_HOLD if self.queued > self.rate * MAX_HOLD else 0.0
            self.next_at = now + max(-budget / (self._drain or self.rate), TICK)
        return leaving

    def discard(self, unwanted: Callable[[bytes], bool]) -> int:
        """Drop the held packets `unwanted` says are; returns how many."""
        dropped = 0
        for priority, queue in list(self._queues.items()):
            kept: deque[bytes] = deque()
            for data in queue:
                if unwanted(data):
                    dropped += 1
                    self.queued -= len(data)
                else:
                    kept.append(data)
            if kept:
                self._queues[priority] = kept
            else:
                del self._queues[priority]
        if not self.queued:
            self.next_at = None
        return dropped
