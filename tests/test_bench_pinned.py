"""The pinned benchmark's marginal cost: the least-squares slope of the server's CPU against the
packets delivered over the N series, and its intercept, the CPU spent with nothing to forward."""

from __future__ import annotations

import pytest

from benchmarks.pinned import marginal


def test_the_slope_is_the_cost_of_one_more_packet_and_the_intercept_the_fixed_part() -> None:
    # 2 % of a core for ICE, timers and the event loop, then 15 µs per delivered packet
    points = [(pps, 0.02 + pps * 15e-6) for pps in (575, 1150, 2300, 4600)]
    slope, fixed = marginal(points)
    assert slope == pytest.approx(15.0)
    assert fixed == pytest.approx(0.02)
    # the averages carry the fixed part: above the marginal cost, most at the smallest N
    averages = [cpu / pps * 1e6 for pps, cpu in points]
    assert averages[0] == pytest.approx(49.8, abs=0.1) and averages[-1] == pytest.approx(19.3, abs=0.1)


def test_noisy_points_give_the_least_squares_line() -> None:
    # y = 1, 3, 2 at x = 1, 2, 3 (in packets/s and cores): slope 0.5, intercept 1
    slope, fixed = marginal([(1.0, 1.0), (2.0, 3.0), (3.0, 2.0)])
    assert slope == pytest.approx(0.5e6)
    assert fixed == pytest.approx(1.0)


def test_one_packet_rate_has_no_slope() -> None:
    with pytest.raises(ValueError, match="two different packet rates"):
        marginal([(1000.0, 0.1), (1000.0, 0.2)])
