"""A subscriber's downlink estimate from its transport-wide feedback, after libwebrtc's GCC.

Sans-IO: fed with what was sent (send time, size) and what the feedback says arrived (arrival
time or lost), it keeps an estimate in bits per second. Two signals, as GCC:

- delay: packets sent in 5 ms bursts form groups; the change of one-way delay between groups is
  accumulated, smoothed, and its trend over the last 20 groups (a least-squares slope) compared
  with an adaptive threshold: above it the link's queue is growing (overuse), below its negative
  the queue drains (underuse);
- loss: above 10 % the estimate is lowered in proportion; under 2 % it may grow.

Rate control is AIMD: overuse brings the estimate to 85 % of what the link carries; otherwise
it grows 8 % a second, never beyond 1.5 times what was acknowledged lately, so an idle
subscriber's estimate does not run away. Probes (`sfu/core/bandwidth.py`) are how it learns more.

An SFU is an app-limited sender (the layers it forwards seldom fill the estimate), so "what the
link carries" is not the acknowledged bitrate, as for a browser's encoder, but the link's
capacity: measured from the packets that waited in its queue (their arrival spacing is the time
the link took to send them, as BBR's delivery rate). It also gives a third, faster signal: a
queue of more than 50 ms behind a link that delivers well under the estimate (a link that fell)
cuts the estimate to that capacity at once, instead of waiting for the trend or for losses that
a full queue reports only once it has drained.
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
MAX_SAMPLES = 4096  # packets the windows below keep at most, whatever the arrival times a feedback claims
ACKED_WINDOW = 0.5  # seconds of acknowledged packets the acknowledged bitrate is measured over
LOSS_HIGH, LOSS_LOW = 0.1, 0.02
LOSS_SEVERE = 0.3  # lost above this, the link carries what arrived
LOSS_INTERVAL = 0.3  # seconds between two loss-based decreases
MIN_SPAN = 0.02  # seconds of arrivals a feedback must cover to measure what the link carries
PROBE_CREDIT = 0.95  # of the acknowledged bitrate, taken as the estimate when nothing went wrong
BUSY = 0.01  # seconds above the shortest one-way delay: the packet waited, the link was busy
BASE_WINDOW = 10.0  # seconds over which the shortest one-way delay is kept
QUEUE_CUT = 0.05  # seconds of queue: the estimate is brought under what the link carries
CONGESTION_MEMORY = 5.0  # seconds after a cut during which the link counts as full
CUT_SPAN = 0.05  # seconds of busy link the capacity compared with the estimate is measured over
CUT_RATIO = 0.7  # of the estimate: a link carrying less than this has fallen

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
        self._history: deque[tuple[float, float]] = deque()
        # The regression's sums over the window, kept as points come and go (a full sum at every
        # group cost more than the rest of the estimator), about an origin moved to the window's
        # start every WINDOW points so that they stay small (and exact).
        self._origin = (0.0, 0.0)
        self._sums = [0.0, 0.0, 0.0, 0.0]  # x, y, xy, xx
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
        slope = self._slope((arrival - self._first_arrival) * 1000, self._smoothed)
        if slope is None:
            return
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

    def _slope(self, x: float, y: float) -> float | None:
        """The least-squares slope of the last WINDOW points, this one included (None: fewer)."""
        history = self._history
        sums = self._sums
        ox, oy = self._origin
        if len(history) == WINDOW:
            px, py = history.popleft()
            px -= ox
            py -= oy
            sums[0] -= px
            sums[1] -= py
            sums[2] -= px * py
            sums[3] -= px * px
        history.append((x, y))
        if self._deltas % WINDOW == 0:
            ox, oy = self._origin = history[0]
            sums[:] = [0.0, 0.0, 0.0, 0.0]
            for hx, hy in history:
                hx -= ox
                hy -= oy
                sums[0] += hx
                sums[1] += hy
                sums[2] += hx * hy
                sums[3] += hx * hx
        else:
            x -= ox
            y -= oy
            sums[0] += x
            sums[1] += y
            sums[2] += x * y
            sums[3] += x * x
        if len(history) < WINDOW:
            return None
        sx, sy, sxy, sxx = sums
        denominator = WINDOW * sxx - sx * sx
        return (WINDOW * sxy - sx * sy) / denominator if denominator > 1e-9 else 0.0


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
        self._last_feedback = float("-inf")
        self.feedbacks = 0
        self.loss = 0.0  # the fraction the last feedback reported lost
        # (feedback time, its shortest one-way delay), the delays increasing: the window's
        # shortest is the first (a sliding minimum, no scan per feedback)
        self._base: deque[tuple[float, float]] = deque()
        self._busy: deque[tuple[float, int, float]] = deque()  # (arrival, bytes, seconds the link spent)
        self._busy_bytes = 0
        self._busy_time = 0.0
        self._last_arrival: float | None = None

    def acked_bitrate(self) -> int:
        if len(self._acked) < 2:
            return 0
        span = max(self._acked[-1][0] - self._acked[0][0], 0.05)
        return int(self._acked_bytes * 8 / span)

    def congested(self) -> bool:
        """Whether the estimate was cut within CONGESTION_MEMORY of the last feedback: the link
        has shown its limit lately, and the subscriber's pacer holds to the estimate."""
        return self._last_feedback - max(self._last_decrease, self._last_loss_cut) < CONGESTION_MEMORY

    def capacity(self) -> int:
        """What the link carries when it is busy, over the last half second (0: not seen busy)."""
        if self._busy_time < MIN_SPAN:
            return 0
        return int(self._busy_bytes * 8 / self._busy_time)

    def on_feedback(self, results: list[tuple[float, int, float | None]], now: float) -> None:
        """One feedback's packets, in transport-wide order: (send time, size, arrival or None)."""
        if not results:
            return
        self.feedbacks += 1
        self._last_feedback = now
        lost = 0
        # One-way delays carry the two clocks' offset; only their excess over the shortest is queue.
        base = self._base[0][1] if self._base else None
        shortest = float("inf")
        queue = 0.0
        busy_bytes = 0
        busy_time = 0.0
        previous = self._last_arrival
        detector = self.detector
        acked_list = self._acked
        busy_list = self._busy
        for send, size, arrival in results:
            if arrival is None:
                lost += 1
                previous = None  # the link may have spent time on it: the next spacing tells nothing
                continue
            detector.add(send, arrival)
            acked_list.append((arrival, size))
            self._acked_bytes += size
            delay = arrival - send
            if delay < shortest:
                shortest = delay
            if base is not None:
                queue = delay - base
                if queue > BUSY and previous is not None and arrival > previous:
                    # It waited: the link was sending it from the previous arrival to this one.
                    busy_bytes += size
                    busy_time += arrival - previous
                    busy_list.append((arrival, size, arrival - previous))
            previous = arrival
        self._last_arrival = previous
        if shortest != float("inf"):
            lows = self._base
            while lows and lows[-1][1] >= shortest:
                lows.pop()
            lows.append((now, shortest))
            while now - lows[0][0] > BASE_WINDOW:
                lows.popleft()
        self._busy_bytes += busy_bytes
        self._busy_time += busy_time
        # Windows in the subscriber's arrival times, which a forged feedback may send backwards:
        # bounded in packets too.
        while acked_list and (acked_list[-1][0] - acked_list[0][0] > ACKED_WINDOW or len(acked_list) > MAX_SAMPLES):
            self._acked_bytes -= acked_list.popleft()[1]
        while busy_list and (
            (previous is not None and previous - busy_list[0][0] > ACKED_WINDOW) or len(busy_list) > MAX_SAMPLES
        ):
            _, size, spent = busy_list.popleft()
            self._busy_bytes -= size
            self._busy_time -= spent
        acked = self.acked_bitrate()
        loss = self.loss = lost / len(results)
        state = detector.state
        carried = 0
        if busy_time >= MIN_SPAN:
            # The newest CUT_SPAN of it: a feedback may straddle the moment the link fell.
            recent_bytes, recent_time = 0, 0.0
            for index in range(len(busy_list) - 1, -1, -1):
                _, size, spent = busy_list[index]
                recent_bytes += size
                recent_time += spent
                if recent_time >= CUT_SPAN:
                    break
            carried = int(recent_bytes * 8 / recent_time)
        if carried and queue > QUEUE_CUT and DECREASE * carried < self.estimate:
            # A queue stands behind a link that carries less than the estimate: sending at the
            # estimate would only keep it full. What the link carries is measured, not guessed
            # by cuts in turn (a link that fell is found in one feedback).
            if carried < CUT_RATIO * self.estimate:  # fell: what was measured before no longer holds
                busy_list.clear()
                busy_list.append((previous or now, busy_bytes, busy_time))
                self._busy_bytes, self._busy_time = busy_bytes, busy_time
            self.estimate = max(self.floor, int(DECREASE * carried))
            self._last_decrease = now
        elif state == OVERUSE and now - self._last_decrease > 0.2:
            link = max(acked, self.capacity())
            decreased = int(DECREASE * link) if link else int(self.estimate * DECREASE)
            if decreased < self.estimate:  # a queue growing behind a link the estimate fills
                self.estimate = decreased
                self._last_decrease = now
        elif state == NORMAL and loss <= LOSS_LOW:
            elapsed = min(1.0, now - self._last_increase) if self._last_increase is not None else 0.0
            grown = int(self.estimate * INCREASE_PER_SECOND**elapsed)
            ceiling = int(1.5 * acked) + 10_000
            if grown > self.estimate and (self.estimate < ceiling or not acked):
                self.estimate = min(grown, ceiling) if acked else grown
            # More was sent than estimated (a probe) and it all arrived without a queue building:
            # the link carries it (though not more than it was measured carrying, when it was).
            capacity = self.capacity()
            self.estimate = max(self.estimate, int(PROBE_CREDIT * (min(acked, capacity) if capacity else acked)))
        self._last_increase = now
        if loss > LOSS_HIGH and now - self._last_loss_cut > LOSS_INTERVAL:
            # Lowered in proportion, but not below what arrives anyway: a burst of tail drops
            # when a probe overshoots must not take the estimate far under the link. A link
            # that loses most of what it is sent carries no more than this feedback saw arrive:
            # one that fell from 2 Mbit/s to 300 kbit/s is found at once, not in seconds of cuts.
            lowered = max(int(self.estimate * (1 - 0.5 * loss)), int(DECREASE * max(acked, self.capacity())))
            arrived = _arrival_rate(results) if loss > LOSS_SEVERE else 0
            if arrived:
                lowered = max(min(lowered, arrived), int(DECREASE * arrived))
            self.estimate = min(self.estimate, lowered)
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
