"""A subscriber's downlink estimate from its transport-wide feedback, after libwebrtc's GCC.

Sans-IO: fed with what was sent (send time, size) and what the feedback says arrived (arrival
time or lost), it keeps an estimate in bits per second. Two signals, as GCC:

- delay: packets sent in 5 ms bursts form groups; the change of one-way delay between groups is
  accumulated, smoothed, and its trend over the last 20 groups (a least-squares slope) compared
  with an adaptive threshold: above it the link's queue is growing (overuse), below its negative
  the queue drains (underuse);
- loss: above 10 % the estimate is lowered in proportion; under 2 % it may grow.

Rate control is AIMD: overuse brings the estimate to 85 % of what was acknowledged lately;
otherwise it grows 8 % a second, never beyond 1.5 times what the link is known to carry (the
acknowledged bitrate), so an idle subscriber's estimate does not run away. Media the allocator
sends above the estimate (a probe by steps, `signaling/allocation.py`) is how it learns more.
"""

from __future__ import annotations

from collections import deque

BURST = 0.005  # seconds: packets sent this close together form one group
WINDOW = 20  # groups in the trend's regression
SMOOTHING = 0.9
GAIN = 4.0
THRESHOLD = 12.5  # ms, the adaptive threshold's start, kept within 6..600
K_UP, K_DOWN = 0.0087, 0.039
OVERUSE_TIME = 0.01  # seconds the trend must stay above the threshold
DECREASE = 0.85
INCREASE_PER_SECOND = 1.08
ACKED_WINDOW = 0.5  # seconds of acknowledged packets the acknowledged bitrate is measured over
LOSS_HIGH, LOSS_LOW = 0.1, 0.02
LOSS_SEVERE = 0.3  # lost above this, the link carries what arrived
LOSS_INTERVAL = 0.3  # seconds between two loss-based decreases
MIN_SPAN = 0.02  # seconds of arrivals a feedback must cover to measure what the link carries
PROBE_CREDIT = 0.95  # of the acknowledged bitrate, taken as the estimate when nothing went wrong

OVERUSE, NORMAL, UNDERUSE = 1, 0, -1


class TrendlineDetector:
    """The delay signal: is a queue building between the server and the subscriber?"""

    def __init__(self) -> None:
        self.state = NORMAL
        self.threshold = THRESHOLD
        self._group: list[float] | None = None  # first send, last send, last arrival
        self._previous: list[float] | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._first_arrival: float | None = None
        self._history: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._deltas = 0
        self._overuse_since: float | None = None
        self._last_update: float | None = None

    def add(self, send: float, arrival: float) -> None:
        group = self._group
        if group is None:
            self._group = [send, send, arrival]
            return
        if send - group[0] <= BURST:
            group[1] = max(group[1], send)
            group[2] = max(group[2], arrival)
            return
        previous = self._previous
        if previous is not None:
            delay = (group[2] - previous[2]) - (group[1] - previous[1])
            self._update(delay * 1000, group[2])
        self._previous = group
        self._group = [send, send, arrival]

    def _update(self, delay_ms: float, arrival: float) -> None:
        self._deltas += 1
        self._accumulated += delay_ms
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._history.append(((arrival - self._first_arrival) * 1000, self._smoothed))
        if len(self._history) < WINDOW:
            return
        xs = [x for x, _ in self._history]
        ys = [y for _, y in self._history]
        mean_x = sum(xs) / WINDOW
        mean_y = sum(ys) / WINDOW
        denominator = sum((x - mean_x) ** 2 for x in xs)
        slope = (
            sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / denominator if denominator else 0.0
        )
        trend = slope * min(self._deltas, 60) * GAIN
        if trend > self.threshold:
            if self._overuse_since is None:
                self._overuse_since = arrival
            if arrival - self._overuse_since >= OVERUSE_TIME:
                self.state = OVERUSE
        elif trend < -self.threshold:
            self._overuse_since = None
            self.state = UNDERUSE
        else:
            self._overuse_since = None
            self.state = NORMAL
        elapsed = min(0.1, arrival - self._last_update) if self._last_update is not None else 0.0
        self._last_update = arrival
        k = K_DOWN if abs(trend) < self.threshold else K_UP
        if abs(trend) <= self.threshold + 15:  # a spike far above does not drag the threshold with it
            self.threshold = min(600.0, max(6.0, self.threshold + k * (abs(trend) - self.threshold) * elapsed * 1000))


class DownlinkEstimator:
    """The estimate of one subscriber's downlink, in bits per second."""

    def __init__(self, start: int = 1_000_000, floor: int = 50_000, cap: int = 20_000_000) -> None:
        self.estimate = start
        self.floor = floor
        self.cap = cap  # whatever a forged feedback claims, never above this
        self.detector = TrendlineDetector()
        self._acked: deque[tuple[float, int]] = deque()  # (arrival, bytes)
        self._acked_bytes = 0
        self._last_increase: float | None = None
        self._last_decrease = float("-inf")
        self._last_loss_cut = float("-inf")
        self.feedbacks = 0
        self.loss = 0.0  # the fraction the last feedback reported lost

    def acked_bitrate(self) -> int:
        if len(self._acked) < 2:
            return 0
        span = max(self._acked[-1][0] - self._acked[0][0], 0.05)
        return int(self._acked_bytes * 8 / span)

    def on_feedback(self, results: list[tuple[float, int, float | None]], now: float) -> None:
        """One feedback's packets, in transport-wide order: (send time, size, arrival or None)."""
        if not results:
            return
        self.feedbacks += 1
        lost = 0
        for send, size, arrival in results:
            if arrival is None:
                lost += 1
                continue
            self.detector.add(send, arrival)
            self._acked.append((arrival, size))
            self._acked_bytes += size
        while self._acked and self._acked[-1][0] - self._acked[0][0] > ACKED_WINDOW:
            self._acked_bytes -= self._acked.popleft()[1]
        acked = self.acked_bitrate()
        loss = self.loss = lost / len(results)
        state = self.detector.state
        if state == OVERUSE and now - self._last_decrease > 0.2:
            self.estimate = int(DECREASE * acked) if acked else int(self.estimate * DECREASE)
            self._last_decrease = now
        elif state == NORMAL and loss <= LOSS_LOW:
            elapsed = min(1.0, now - self._last_increase) if self._last_increase is not None else 0.0
            grown = int(self.estimate * INCREASE_PER_SECOND**elapsed)
            ceiling = int(1.5 * acked) + 10_000
            if grown > self.estimate and (self.estimate < ceiling or not acked):
                self.estimate = min(grown, ceiling) if acked else grown
            # More was sent than estimated (the allocator's probe by steps) and it all arrived
            # without a queue building: the link carries it.
            self.estimate = max(self.estimate, int(PROBE_CREDIT * acked))
        self._last_increase = now
        if loss > LOSS_HIGH and now - self._last_loss_cut > LOSS_INTERVAL:
            # Lowered in proportion, but not below what arrives anyway: a burst of tail drops
            # when a probe overshoots must not take the estimate far under the link. A link
            # that loses most of what it is sent carries no more than this feedback saw arrive:
            # one that fell from 2 Mbit/s to 300 kbit/s is found at once, not in seconds of cuts.
            lowered = max(int(self.estimate * (1 - 0.5 * loss)), int(DECREASE * acked))
            arrived = _arrival_rate(results) if loss > LOSS_SEVERE else 0
            if arrived:
                lowered = max(min(lowered, arrived), int(DECREASE * arrived))
            self.estimate = lowered
            self._last_loss_cut = now
        self.estimate = max(self.floor, min(self.cap, self.estimate))


def _arrival_rate(results: list[tuple[float, int, float | None]]) -> int:
    """Bits per second that arrived over one feedback's span (0 when too short to tell)."""
    first = last = None
    size = 0
    for _, length, arrival in results:
        if arrival is None:
            continue
        if first is None or arrival < first:
            first = arrival
        if last is None or arrival > last:
            last = arrival
        size += length
    if first is None or last is None or last - first < MIN_SPAN:
        return 0
    return int(size * 8 / (last - first))
