"""Last-N video choice: rows of (tracks, view, speakers, N) -> what one subscriber is sent."""

from __future__ import annotations

import pytest

from sfu.core.selection import VideoTrack, View, choose_videos, shown_large

# A class: a teacher's camera and screen, five students' cameras, one student's screen share.
T_CAM = VideoTrack("t:cam", "t", "teacher", "camera")
T_SCR = VideoTrack("t:scr", "t", "teacher", "screen")
CAMS = [VideoTrack(f"s{i}:cam", f"s{i}", "student", "camera") for i in range(1, 6)]
S1, S2, S3, S4, S5 = CAMS
S2_SCR = VideoTrack("s2:scr", "s2", "student", "screen")
CLASS = [T_CAM, *CAMS]


def tiles(*tracks: VideoTrack, width: int = 160) -> dict[str, tuple[int, int]]:
    return {t.track_id: (width, width * 9 // 16) for t in tracks}


ROWS = [
    # (name, tracks in publication order, view, speakers most recent first, N, subscriber, expected)
    ("no limit, no view: everything", CLASS, None, [], 0, "x", [T_CAM, S1, S2, S3, S4, S5]),
    ("own tracks are never chosen", CLASS, None, [], 0, "s3", [T_CAM, S1, S2, S4, S5]),
    ("teacher first, then publication order", CLASS, None, [], 3, "x", [T_CAM, S1, S2]),
    ("recent speakers before the rest", CLASS, None, ["s4", "s2"], 3, "x", [T_CAM, S4, S2]),
    ("most recent speaker first", CLASS, None, ["s2", "s4"], 0, "x", [T_CAM, S2, S4, S1, S3, S5]),
    ("a speaker named twice keeps the first", CLASS, None, ["s5", "s1", "s5"], 3, "x", [T_CAM, S5, S1]),
    ("screen shares before the teacher", [*CLASS, T_SCR], None, [], 2, "x", [T_SCR, T_CAM]),
    ("a student's screen before the teacher's camera", [*CLASS, S2_SCR], None, ["s1"], 2, "x", [S2_SCR, T_CAM]),
    ("pinned before speakers", CLASS, View(tiles(*CLASS), pinned="s5"), ["s1"], 3, "x", [T_CAM, S5, S1]),
    ("pinned nobody who publishes", CLASS, View(tiles(*CLASS), pinned="zz"), ["s3"], 2, "x", [T_CAM, S3]),
    ("only what the page shows", CLASS, View(tiles(S2, S3)), ["s3"], 10, "x", [S3, S2]),
    ("the teacher off screen is not sent", CLASS, View(tiles(S1)), [], 10, "x", [S1]),
    ("a hidden tab gets nothing", [*CLASS, T_SCR], View({}), ["s1"], 10, "x", []),
    ("unknown ids in the view are ignored", CLASS, View({"gone": (640, 360), **tiles(S4)}), [], 10, "x", [S4]),
    ("pinned but off screen: not sent", CLASS, View(tiles(S1), pinned="s2"), [], 10, "x", [S1]),
    (
        "audio only keeps screen shares on screen",
        [*CLASS, T_SCR, S2_SCR],
        View(tiles(*CLASS, T_SCR, S2_SCR), audio_only=True),
        ["s1"],
        10,
        "x",
        [T_SCR, S2_SCR],
    ),
    ("audio only without a screen share: nothing", CLASS, View(tiles(*CLASS), audio_only=True), [], 0, "x", []),
    ("N larger than the class", CLASS, None, [], 50, "x", [T_CAM, S1, S2, S3, S4, S5]),
    ("N = 1 with a screen share: the screen", [*CLASS, T_SCR], None, ["s1"], 1, "x", [T_SCR]),
    ("the teacher receives students by speaker", CLASS, None, ["s3"], 2, "t", [S3, S1]),
]


@pytest.mark.parametrize(
    ("tracks", "view", "speakers", "last_n", "subscriber", "expected"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_choose_videos(
    tracks: list[VideoTrack],
    view: View | None,
    speakers: list[str],
    last_n: int,
    subscriber: str,
    expected: list[VideoTrack],
) -> None:
    assert choose_videos(tracks, view, speakers, last_n, subscriber) == tuple(t.track_id for t in expected)


@pytest.mark.parametrize(
    ("receiving", "view", "expected"),
    [
        (["t:cam", "s1:cam"], None, set()),  # before a view, every tile is a thumbnail
        (["t:cam", "s1:cam"], View({"t:cam": (960, 540), "s1:cam": (160, 90)}), {"t:cam"}),
        (["s1:cam"], View({"s1:cam": (480, 270)}), {"s1:cam"}),  # the threshold itself is large
        (["s1:cam"], View({"s1:cam": (479, 900)}), set()),  # width decides, not height
        ([], View({"s1:cam": (960, 540)}), set()),  # drawn large but not received (beyond N): not large
    ],
)
def test_shown_large(receiving: list[str], view: View | None, expected: set[str]) -> None:
    assert shown_large(receiving, view, 480) == expected
