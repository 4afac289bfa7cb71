"""The speaker detector on a fake clock: packets every 20 ms, evaluations at the deadlines it gives."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sfu.core.speakers import SpeakerDetector

PACKET = 0.02
Script = Callable[[float], dict[str, int]]  # time -> level byte of each track sending a packet then
Report = tuple[float, str | None, tuple[str, ...]]


def run(detector: SpeakerDetector, script: Script, until: float, start: float = 0.0) -> list[Report]:
    """Feed packets and evaluate at each deadline, as the session's timer would; the reports, timed."""
    reports: list[Report] = []
    now = start
    while now < until:
        for producer_id, level in script(now).items():
            detector.observe(producer_id, level, now)
        now = round(now + PACKET, 6)
        due = detector.due()
        while due is not None and due <= now:
            result = detector.evaluate(due)
            if result is not None:
                reports.append((due, *result))
            due = detector.due() if detector.due() != due else None
    return reports


def talk(**spans: tuple[float, float, int]) -> Script:
    """Each track sends from its start to its end at a level; silence (127) outside its span."""

    def script(now: float) -> dict[str, int]:
        return {name: (level if start <= now < end else 127) for name, (start, end, level) in spans.items()}

    return script


def selected_at(reports: list[Report], when: float) -> tuple[str | None, tuple[str, ...]]:
    state: tuple[str | None, tuple[str, ...]] = (None, ())
    for at, active, loudest in reports:
        if at <= when:
            state = (active, loudest)
    return state


def test_idle_until_audio_then_every_interval_then_idle_again() -> None:
    detector = SpeakerDetector(3)
    assert detector.due() is None
    assert detector.evaluate(5.0) is None
    detector.observe("a", 127, 1.0)
    assert detector.due() == pytest.approx(1.1)
    assert detector.evaluate(1.05) is None  # not due yet
    assert detector.evaluate(1.1) is None  # silence: nothing to report
    assert detector.due() == pytest.approx(1.2)
    assert detector.evaluate(1.2) is None  # an interval without packets: nothing more to watch
    assert detector.due() is None


@pytest.mark.parametrize(
    ("name", "spans", "k", "when", "expected"),
    [
        ("a student who starts talking is selected within 300 ms", {"s": (1.0, 3.0, 30)}, 3, 1.3, ("s", ("s",))),
        ("silence is nobody", {"s": (0.0, 3.0, 127)}, 3, 3.0, (None, ())),
        ("background noise under the threshold is nobody", {"s": (0.0, 3.0, 70)}, 3, 3.0, (None, ())),
        ("one loud packet (a click) is nobody", {"s": (1.0, 1.02, 5)}, 3, 2.0, (None, ())),
        (
            "a short pause mid-word keeps the speaker",
            {"s": (0.0, 1.0, 25), "t": (1.3, 3.0, 127)},
            3,
            1.3,
            ("s", ("s",)),
        ),
        ("held 1.5 s after going quiet", {"s": (0.0, 1.0, 25)}, 3, 2.3, ("s", ("s",))),
        ("then dropped, and nobody is active", {"s": (0.0, 1.0, 25)}, 3, 2.8, (None, ())),
        (
            "K = 1: the louder of two",
            {"a": (0.0, 3.0, 40), "b": (0.0, 3.0, 20)},
            1,
            1.0,
            ("b", ("b",)),
        ),
        (
            "a newcomer clearly louder replaces the quietest",
            {"a": (0.0, 3.0, 20), "b": (0.0, 3.0, 45), "c": (1.0, 3.0, 10)},
            2,
            1.5,
            ("c", ("a", "c")),
        ),
        (
            "a newcomer hardly louder does not",
            {"a": (0.0, 3.0, 20), "b": (0.0, 3.0, 45), "c": (1.0, 3.0, 42)},
            2,
            2.5,
            ("a", ("a", "b")),
        ),
        (
            "a held speaker gives its slot to a newcomer at once",
            {"a": (0.0, 3.0, 20), "b": (0.0, 1.0, 30), "c": (1.5, 3.0, 35)},
            2,
            1.8,
            ("a", ("a", "c")),
        ),
        (
            "the active speaker keeps the floor against a similar voice",
            {"a": (0.0, 3.0, 30), "b": (0.5, 3.0, 27)},
            3,
            2.0,
            ("a", ("a", "b")),
        ),
        (
            "and loses it to a clearly louder one",
            {"a": (0.0, 3.0, 30), "b": (0.5, 3.0, 15)},
            3,
            2.0,
            ("b", ("a", "b")),
        ),
        (
            "the active speaker pauses: the other one speaking takes over",
            {"a": (0.0, 1.0, 20), "b": (0.0, 3.0, 35)},
            3,
            1.5,
            ("b", ("a", "b")),
        ),
    ],
)
def test_selection(
    name: str,
    spans: dict[str, tuple[float, float, int]],
    k: int,
    when: float,
    expected: tuple[str | None, tuple[str, ...]],
) -> None:
    reports = run(SpeakerDetector(k), talk(**spans), 3.0)
    assert selected_at(reports, when) == expected, reports


def test_selected_within_300_ms_of_the_first_word() -> None:
    reports = run(SpeakerDetector(3), talk(s=(0.73, 3.0, 35)), 2.0)
    first = next(at for at, _, loudest in reports if "s" in loudest)
    assert first - 0.73 <= 0.3


def test_a_sender_that_flags_voice_is_trusted() -> None:
    """V set on some packets: the loud packets without it are not speech (a sender's own VAD said so)."""
    flagged = run(SpeakerDetector(3), lambda now: {"s": 0x80 | 30 if now < 0.2 else 20}, 3.0)
    assert selected_at(flagged, 3.0) == (None, ())
    unflagged = run(SpeakerDetector(3), lambda now: {"s": 20}, 3.0)  # aiortc never sets V: the level decides
    assert selected_at(unflagged, 3.0) == ("s", ("s",))


def test_reports_only_changes() -> None:
    reports = run(SpeakerDetector(3), talk(a=(0.0, 10.0, 25)), 10.0)
    assert [(active, loudest) for _, active, loudest in reports] == [("a", ("a",))]


def test_removed_speaker_is_reported_gone() -> None:
    detector = SpeakerDetector(3)
    assert selected_at(run(detector, talk(a=(0.0, 3.0, 25), b=(0.0, 3.0, 35)), 1.0), 1.0) == ("a", ("a", "b"))
    detector.remove("a")
    assert run(detector, talk(b=(0.0, 3.0, 35)), 1.2, start=1.0) == [(pytest.approx(1.1), "b", ("b",))]
    detector.remove("b")
    detector.remove("nobody")
    due = detector.due()
    assert due is not None
    assert detector.evaluate(due) == (None, ())
