"""The room allocator, in rows: priorities, estimates, the room budget, hysteresis."""

from __future__ import annotations

import pytest

from sfu.core.allocator import (
    ACTIVE_SPEAKER,
    OTHER,
    PINNED,
    TEACHER_CAMERA,
    TEACHER_SCREEN,
    Subscription,
    allocate,
    options,
)

# A camera in three simulcast layers with three temporal layers each (cumulative bits/s).
CAMERA = ((60_000, 100_000, 150_000), (200_000, 350_000, 500_000), (600_000, 1_000_000, 1_500_000))
SCREEN = ((400_000, 700_000, 1_000_000),)  # one full-resolution encoding, temporal layers only
PLAIN = ((800_000,),)  # one encoding, no temporal layers


def row(track: str, priority: int = OTHER, wish: int | None = 2, layers=CAMERA, sub: str = "s", current=None):  # type: ignore[no-untyped-def]
    return Subscription(sub, track, priority, wish, layers, current)


@pytest.mark.parametrize(
    ("rows", "estimate", "expected"),
    [
        # Everything fits: each gets the most its tile needs.
        ([row("t", TEACHER_CAMERA), row("a", wish=0)], 5_000_000, {"t": (2, 2), "a": (0, 2)}),
        # A 300 kbit/s pupil: the teacher's camera first (half size, 7.5 frames a second), the thumbnail
        # at its lowest.
        ([row("t", TEACHER_CAMERA), row("a", wish=0)], 300_000, {"t": (1, 0), "a": (0, 0)}),
        # Too little for both lowest layers: the lower priority is paused.
        ([row("t", TEACHER_CAMERA), row("a")], 100_000, {"t": (0, 0), "a": None}),
        # Too little even for one: the teacher's camera still gets its lowest layer, a student's does not.
        ([row("t", TEACHER_CAMERA), row("a")], 50_000, {"t": (0, 0), "a": None}),
        ([row("t", TEACHER_CAMERA, layers=PLAIN), row("a", layers=PLAIN)], 300_000, {"t": (0, 0), "a": None}),
        # The screen before the teacher's camera, the speaker before the pinned, before the others.
        (
            [row("c", TEACHER_CAMERA), row("s", TEACHER_SCREEN, layers=SCREEN)],
            1_200_000,
            {"s": (0, 2), "c": (0, 2)},
        ),
        (
            [row("o"), row("p", PINNED), row("v", ACTIVE_SPEAKER)],
            800_000,
            {"v": (2, 0), "p": (0, 1), "o": (0, 0)},
        ),
        # Not wanted (off screen, not chosen): paused, costs nothing.
        ([row("t", TEACHER_CAMERA), row("x", wish=None)], 1_700_000, {"t": (2, 2), "x": None}),
        # A layer not flowing is skipped: f is off, h is the top.
        (
            [row("t", TEACHER_CAMERA, layers=(CAMERA[0], CAMERA[1], (0, 0, 0)))],
            5_000_000,
            {"t": (1, 2)},
        ),
        # One encoding without temporal layers: on or paused.
        ([row("t", layers=PLAIN)], 900_000, {"t": (0, 0)}),
        ([row("t", layers=PLAIN)], 700_000, {"t": None}),
    ],
)
def test_rows(rows: list[Subscription], estimate: int, expected: dict[str, tuple[int, int] | None]) -> None:
    result = allocate(rows, {"s": estimate})
    assert {track: layers for (_, track), layers in result.layers.items()} == expected
    essential = sum(r.layers[0][0] for r in rows if r.priority >= TEACHER_CAMERA)
    assert result.used["s"] <= max(estimate, essential)


def test_audio_is_counted_first() -> None:
    result = allocate([row("t", TEACHER_CAMERA)], {"s": 650_000}, audio={"s": 100_000})
    assert result.layers[("s", "t")] == (1, 2)  # 550 kbit/s left for video: h and its headroom
    assert result.used["s"] == 600_000
    assert result.wanted["s"] == 1_600_000  # what a probe would try to reach


def test_a_room_budget_goes_to_the_teachers_screen_first() -> None:
    rows = [
        row(track, priority, wish, layers, sub)
        for sub in ("a", "b", "c")
        for track, priority, wish, layers in (
            ("screen", TEACHER_SCREEN, 0, SCREEN),
            ("camera", TEACHER_CAMERA, 0, CAMERA),
            (f"peer-{sub}", OTHER, 0, CAMERA),
        )
    ]
    result = allocate(rows, {}, room_budget=3_700_000)
    assert all(result.layers[(sub, "screen")] == (0, 2) for sub in "abc")  # the screen in full for all
    assert all(result.layers[(sub, "camera")] is not None for sub in "abc")  # the rest with what is left
    assert sum(result.used.values()) <= 3_700_000
    short = allocate(rows, {}, room_budget=1_300_000)
    assert [short.layers[(sub, "screen")] for sub in "abc"] == [(0, 0)] * 3  # everyone sees the screen
    assert [short.layers[(sub, "camera")] for sub in "abc"] == [(0, 0), None, None]
    assert all(short.layers[(sub, f"peer-{sub}")] is None for sub in "abc")


def test_going_up_needs_headroom_and_going_down_does_not() -> None:
    current = row("t", TEACHER_CAMERA, current=(1, 2))
    # h is 500 kbit/s; f's first step needs 600 kbit/s plus 10 % headroom.
    assert allocate([current], {"s": 640_000}).layers[("s", "t")] == (1, 2)
    assert allocate([current], {"s": 670_000}).layers[("s", "t")] == (2, 0)
    # The current layer is kept without headroom; below it, down at once.
    assert allocate([current], {"s": 500_000}).layers[("s", "t")] == (1, 2)
    assert allocate([current], {"s": 499_000}).layers[("s", "t")] == (1, 1)


def test_a_video_lowered_recently_is_not_raised_again() -> None:
    lowered = row("t", TEACHER_CAMERA, current=(0, 2))
    cooling = frozenset({("s", "t")})
    assert allocate([lowered], {"s": 5_000_000}, cooling=cooling).layers[("s", "t")] == (0, 2)
    assert allocate([lowered], {"s": 5_000_000}).layers[("s", "t")] == (2, 2)


def test_subscribers_are_allocated_apart() -> None:
    rows = [row("t", TEACHER_CAMERA, sub="fast"), row("t", TEACHER_CAMERA, sub="slow")]
    result = allocate(rows, {"fast": 3_000_000, "slow": 300_000})
    assert result.layers[("fast", "t")] == (2, 2)  # one pupil's poor link lowers nobody else's video
    assert result.layers[("slow", "t")] == (1, 0)


def test_options_are_ordered_from_the_cheapest() -> None:
    assert [o[:2] for o in options(row("t", wish=1))] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert options(row("t", wish=None)) == []
