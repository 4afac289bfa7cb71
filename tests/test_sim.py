"""Media behaviour in simulated time: same result every run, in milliseconds of CPU."""

from __future__ import annotations

from .sim import Sim


def test_nack_recovers_every_packet_under_5_percent_loss() -> None:
    sim = Sim(seed=7, loss=0.05, delay=0.02, jitter=0.005)
    sim.publish("cam", video=True)
    viewer = sim.subscribe("viewer", "cam")
    sim.run(until=3.0)
    [stream] = viewer.streams.values()
    assert sim.publishers["cam"][2].lost > 5 and sim.subscribers["viewer"][2].lost > 5  # loss both ways
    assert stream.first_is_keyframe
    assert len(stream.seqs) > 80  # about one packet a frame at 160x120
    recent = max(stream.seqs) - 20  # the last packets may still be on their way back
    assert [s for s in stream.gaps() if s < recent] == []


def test_a_late_joiner_starts_on_a_keyframe_it_asked_for() -> None:
    sim = Sim(seed=3, delay=0.03)
    sim.publish("cam", video=True)
    sim.run(until=0.5)  # mid-GOP: the recording's next keyframe is at 1 s
    late = sim.subscribe("late", "cam")
    sim.run(until=0.7)
    [stream] = late.streams.values()
    assert stream.first_is_keyframe and stream.gaps() == []
    assert sim.publishers["cam"][1].index >= 30  # the PLI made the publisher jump to a keyframe


def test_mute_and_unmute_continue_the_numbering_and_video_resumes_on_a_keyframe() -> None:
    sim = Sim(seed=5, delay=0.01)
    sim.publish("cam", video=True)
    sim.publish("mic", video=False)
    viewer = sim.subscribe("viewer", "cam")
    sim.subscribe("viewer", "mic")
    sim.run(until=0.5)
    for name in ("cam", "mic"):
        sim.session.producers[name].mute(sim.now)
    sim.run(until=1.4)
    for name in ("cam", "mic"):
        sim.session.producers[name].unmute(sim.now)
    sim.flush()
    before = {ssrc: len(s.seqs) for ssrc, s in viewer.streams.items()}
    sim.run(until=2.0)
    for ssrc, stream in viewer.streams.items():
        assert stream.gaps() == [], ssrc  # the subscriber never had a reason to NACK
        assert len(stream.seqs) > before[ssrc]
    video = viewer.streams[5000]
    resumed = video.seqs[before[5000]]
    assert resumed == video.seqs[before[5000] - 1] + 1
    assert resumed in video.keyframes  # the resume asked for a keyframe and started on it
    assert sim.session.stats.keyframe_requests_sent == 2  # on join, on resume
    # What was said while muted is neither asked for again after the unmute nor forwarded.
    assert sim.publishers["cam"][1].resent == 0 and sim.publishers["mic"][1].resent == 0


def test_an_idle_class_never_wakes_the_core() -> None:
    sim = Sim(seed=1)
    cam = sim.publish("cam", video=True)
    sim.subscribe("viewer", "cam")
    sim.run(until=1.0)
    cam.running = False
    sim.run(until=3.0)  # the last report, then silence
    wakeups = sim.core_wakeups
    sim.run(until=60.0)
    assert sim.core_wakeups == wakeups
    assert sim.session.get_timer() is None
