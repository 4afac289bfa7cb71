"""The downlink estimator (sfu/core/bwe.py) fed with a made-up link: what a queue says about the
link's capacity, and what random loss does not say."""

from __future__ import annotations

import random

from sfu.core.bwe import DECREASE, DownlinkEstimator

SIZE = 1_200
DELAY = 0.02


def through(
    estimator: DownlinkEstimator,
    capacity: float,
    sending: float,
    start: float,
    seconds: float,
    loss: float = 0.0,
    seed: int = 1,
    free_at: float = 0.0,
) -> float:
    """Packets sent at `sending` bits/s for `seconds` through a link of `capacity` (a FIFO queue,
    no limit), reported in feedbacks every 50 ms; returns when the link is free again."""
    rng = random.Random(seed)
    interval = SIZE * 8 / sending
    batch: list[tuple[float, int, float | None]] = []
    next_feedback = start + 0.05
    now = start
    while now < start + seconds:
        leaves = max(now, free_at) + SIZE * 8 / capacity
        free_at = leaves
        lost = rng.random() < loss
        batch.append((now, SIZE, None if lost else leaves + DELAY))
        now += interval
        if now >= next_feedback:
            estimator.on_feedback(batch, now + DELAY)
            batch = []
            next_feedback += 0.05
    return free_at


def test_a_queue_behind_a_slower_link_tells_its_capacity() -> None:
    estimator = DownlinkEstimator(start=3_000_000)
    through(estimator, capacity=1_000_000, sending=900_000, start=0.0, seconds=2.0)  # no queue yet
    assert estimator.capacity() == 0
    through(estimator, capacity=1_000_000, sending=3_000_000, start=2.0, seconds=0.3)
    assert abs(estimator.capacity() - 1_000_000) < 50_000
    # Brought under what the link carries, not cut by steps over seconds.
    assert estimator.estimate <= DECREASE * 1_000_000 * 1.05


def test_a_link_that_falls_is_found_within_a_few_feedbacks() -> None:
    estimator = DownlinkEstimator(start=1_000_000)
    free = through(estimator, capacity=2_000_000, sending=1_800_000, start=0.0, seconds=4.0)
    before = estimator.estimate
    assert before >= 1_600_000
    through(estimator, capacity=300_000, sending=1_800_000, start=4.0, seconds=0.2, free_at=free)
    assert estimator.estimate <= 0.9 * 300_000, (before, estimator.estimate)


def test_random_loss_without_a_queue_is_no_capacity_and_no_cut() -> None:
    # 1 % of packets lost on a link that has room: the pair around a loss says nothing of the link.
    estimator = DownlinkEstimator(start=1_000_000)
    through(estimator, capacity=2_000_000, sending=1_000_000, start=0.0, seconds=5.0, loss=0.01, seed=4)
    assert estimator.capacity() == 0
    assert estimator.estimate >= 1_000_000


def test_the_trend_kept_by_running_sums_is_the_least_squares_slope() -> None:
    from sfu.core.bwe import WINDOW, TrendlineDetector

    detector = TrendlineDetector()
    rng = random.Random(2)
    points: list[tuple[float, float]] = []
    for step in range(500):
        x, y = step * 7.5 + 3_600_000.0, rng.uniform(-50, 50) + step * 0.3 + 1e5  # an hour in: large values
        detector._deltas += 1
        slope = detector._slope(x, y)
        points = [*points, (x, y)][-WINDOW:]
        if len(points) < WINDOW:
            assert slope is None
            continue
        mx = sum(p[0] for p in points) / WINDOW
        my = sum(p[1] for p in points) / WINDOW
        exact = sum((p[0] - mx) * (p[1] - my) for p in points) / sum((p[0] - mx) ** 2 for p in points)
        assert slope is not None and abs(slope - exact) < 1e-9, (step, slope, exact)


def test_forged_feedback_cannot_grow_the_estimators_memory() -> None:
    # A subscriber reporting the same packets again and again, each feedback's arrival times an
    # hour before the last one's (its clock is its own): the windows measured in arrival time
    # would never expire. What the estimator keeps stays bounded whatever the feedback says.
    from sfu.core import MediaSession
    from sfu.core.bwe import MAX_SAMPLES
    from sfu.core.twcc import build_feedback

    session = MediaSession()
    transport = session.create_transport("pupil:sub")
    for index in range(4000):
        transport.wide_seq(SIZE, index * 0.001)
    bwe = transport.bwe
    assert bwe is not None
    for round_ in range(30):
        start = 100_000.0 - round_ * 3_600.0
        arrivals: list[float | None] = [start + index * 0.0005 for index in range(4000)]
        transport.receive_rtcp(build_feedback(1, 0, 0, arrivals, round_), 4.0 + round_ * 0.05)
    assert len(bwe._acked) <= MAX_SAMPLES and len(bwe._busy) <= MAX_SAMPLES
