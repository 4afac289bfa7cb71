"""The shedding level, fed measures with a fake clock, and what each level keeps."""

from __future__ import annotations

import itertools

import pytest

from sfu.core.overload import (
    BACKLOG,
    BACKLOG_HIGH,
    HOLD,
    INTERVAL,
    MAX_HOLD,
    STEP,
    LoadShedder,
    Shed,
    keeps_audio,
    keeps_video,
    quarter,
)
from sfu.core.selection import VideoTrack


def feed(
    shedder: LoadShedder, start: float, seconds: float, busy: float, backlog: int | None
) -> list[tuple[float, Shed]]:
    """Measures every INTERVAL from `start` for `seconds`: the (time, level) of each change."""
    changes = []
    for i in range(round(seconds / INTERVAL)):
        now = start + i * INTERVAL
        if shedder.observe(now, busy, backlog):
            changes.append((round(now, 3), shedder.level))
    return changes


def test_a_backlog_that_grows_adds_a_level_per_step_up_to_the_teacher_camera() -> None:
    shedder = LoadShedder()
    now, backlog, changes = 0.0, BACKLOG, []
    for _ in range(40):
        if shedder.observe(now, 1.0, backlog):
            changes.append((round(now, 3), shedder.level))
        now += INTERVAL
        backlog += 0.01
    assert [level for _, level in changes] == [
        Shed.THUMBNAILS,
        Shed.STUDENT_CAMERAS,
        Shed.STUDENT_AUDIO,
        Shed.TEACHER_CAMERA_QUARTER,
        Shed.TEACHER_CAMERA_HALF,
        Shed.TEACHER_CAMERA_THREE_QUARTERS,
        Shed.TEACHER_CAMERA,
    ]
    assert changes[0][0] == pytest.approx(2 * INTERVAL)  # the third measure that did not shrink
    assert all(b[0] - a[0] >= STEP - 1e-9 for a, b in itertools.pairwise(changes))
    assert shedder.raised == 7


def test_a_level_that_sheds_nothing_is_passed_at_once() -> None:
    shedder = LoadShedder()
    assert shedder.observe(0.0, 1.0, BACKLOG_HIGH)
    assert shedder.skip(0.0) and shedder.skip(0.0) and shedder.level == Shed.STUDENT_AUDIO
    assert not shedder.observe(0.1, 1.0, BACKLOG_HIGH)  # the level that sheds has its time
    shedder.level = Shed.TEACHER_CAMERA
    assert not shedder.skip(1.0) and shedder.level == Shed.TEACHER_CAMERA


def test_a_backlog_that_shrinks_waits_for_the_step_to_work() -> None:
    shedder = LoadShedder()
    feed(shedder, 0.0, 0.3, 1.0, 4 * BACKLOG)
    assert shedder.level == Shed.THUMBNAILS
    changes = [shedder.observe(0.3 + i * INTERVAL, 1.0, 4 * BACKLOG - (i + 1) * 0.01) for i in range(10)]
    assert not any(changes) and shedder.level == Shed.THUMBNAILS


def test_a_long_backlog_adds_a_level_at_once_and_none_while_it_shrinks() -> None:
    shedder = LoadShedder()
    assert shedder.observe(0.0, 0.5, BACKLOG_HIGH + 0.05)
    assert shedder.level == Shed.THUMBNAILS
    assert not shedder.observe(INTERVAL, 0.5, BACKLOG_HIGH + 0.06)  # the step has not had its time
    assert not shedder.observe(STEP, 0.5, BACKLOG_HIGH + 0.01)  # shrinking: the step works
    assert shedder.observe(STEP + INTERVAL, 0.5, BACKLOG_HIGH + 0.02)  # growing again
    assert shedder.level == Shed.STUDENT_CAMERAS


def test_busy_without_a_backlog_is_keeping_up() -> None:
    shedder = LoadShedder()
    assert feed(shedder, 0.0, 5.0, 1.0, BACKLOG - 0.001) == []


def test_calm_takes_a_level_back_after_hold_and_a_relapse_doubles_hold() -> None:
    shedder = LoadShedder()
    feed(shedder, 0.0, 0.7, 1.0, BACKLOG_HIGH)
    assert shedder.level == Shed.STUDENT_AUDIO
    changes = feed(shedder, 1.0, 10.0, 0.5, 0)
    assert [level for _, level in changes] == [Shed.STUDENT_CAMERAS, Shed.THUMBNAILS, Shed.NOTHING]
    assert changes[0][0] == pytest.approx(1.0 + HOLD, abs=INTERVAL)
    # Back to overload soon after: the level comes back, and calm must now last twice as long.
    assert feed(shedder, 11.0, 0.1, 1.0, BACKLOG_HIGH) == [(11.0, Shed.THUMBNAILS)]
    assert shedder.hold == 2 * HOLD
    changes = feed(shedder, 11.1, 10.0, 0.5, 0)
    assert changes and changes[0][0] == pytest.approx(11.1 + 2 * HOLD, abs=INTERVAL)


def test_hold_is_bounded_and_forgiven_after_a_long_calm() -> None:
    shedder = LoadShedder()
    now = 0.0
    for _ in range(10):  # overload, calm until taken back, overload again at once
        while not shedder.level:
            shedder.observe(now, 1.0, BACKLOG_HIGH)
            now += INTERVAL
        while shedder.level:
            shedder.observe(now, 0.5, 0)
            now += INTERVAL
    assert shedder.hold == MAX_HOLD
    feed(shedder, now, 70.0, 0.5, 0)
    assert shedder.hold == HOLD


def test_neither_busy_nor_calm_keeps_the_level() -> None:
    shedder = LoadShedder()
    feed(shedder, 0.0, 0.1, 1.0, BACKLOG_HIGH)
    assert feed(shedder, 1.0, 30.0, 0.9, 0) == []  # too busy to take a level back
    assert shedder.level == Shed.THUMBNAILS


TEACHER_CAMERA = VideoTrack("t:cam", "t", "teacher", "camera")
TEACHER_SCREEN = VideoTrack("t:screen", "t", "teacher", "screen")
STUDENT_CAMERA = VideoTrack("s:cam", "s", "student", "camera")
STUDENT_SCREEN = VideoTrack("s:screen", "s", "student", "screen")


@pytest.mark.parametrize(
    ("level", "kept"),
    [
        (Shed.NOTHING, {"t:cam", "t:screen", "s:cam small", "s:cam large", "s:screen"}),
        (Shed.THUMBNAILS, {"t:cam", "t:screen", "s:cam large", "s:screen"}),
        (Shed.STUDENT_CAMERAS, {"t:cam", "t:screen", "s:screen"}),
        (Shed.STUDENT_AUDIO, {"t:cam", "t:screen"}),
        (Shed.TEACHER_CAMERA, {"t:screen"}),
    ],
)
def test_what_each_level_keeps_of_the_videos(level: Shed, kept: set[str]) -> None:
    cases = {
        "t:cam": (TEACHER_CAMERA, False),
        "t:screen": (TEACHER_SCREEN, False),
        "s:cam small": (STUDENT_CAMERA, False),
        "s:cam large": (STUDENT_CAMERA, True),
        "s:screen": (STUDENT_SCREEN, False),
    }
    # A subscriber of the last quarter: the last to lose the teacher's camera.
    assert {name for name, (track, large) in cases.items() if keeps_video(track, large, level, 3)} == kept


@pytest.mark.parametrize(
    ("level", "quarters"),
    [
        (Shed.STUDENT_AUDIO, 4),
        (Shed.TEACHER_CAMERA_QUARTER, 3),
        (Shed.TEACHER_CAMERA_HALF, 2),
        (Shed.TEACHER_CAMERA_THREE_QUARTERS, 1),
        (Shed.TEACHER_CAMERA, 0),
    ],
)
def test_the_teacher_camera_is_shed_a_quarter_of_the_class_at_a_time(level: Shed, quarters: int) -> None:
    assert sum(keeps_video(TEACHER_CAMERA, False, level, q) for q in range(4)) == quarters
    assert all(keeps_video(TEACHER_SCREEN, False, level, q) for q in range(4))


def test_a_subscriber_keeps_its_quarter_and_the_quarters_are_even() -> None:
    ids = [f"{i:016x}" for i in range(4000)]
    assert [quarter(i) for i in ids] == [quarter(i) for i in ids]
    assert all(900 < sum(1 for i in ids if quarter(i) == q) < 1100 for q in range(4))


@pytest.mark.parametrize("level", list(Shed))
def test_the_teacher_is_always_heard_and_the_speaker_until_the_last_level(level: Shed) -> None:
    assert keeps_audio("teacher", False, level)
    assert keeps_audio("student", True, level)
    assert keeps_audio("student", False, level) == (level < Shed.STUDENT_AUDIO)
