"""The core's control contract: pause reasons, events, deadlines and batches, with a fake clock."""

from __future__ import annotations

import pytest

from sfu.core import (
    ConsumerPaused,
    ConsumerResumed,
    KeyframeReceived,
    MediaSession,
    ProducerBound,
    SpeakersChanged,
    StreamStalled,
)
from sfu.core.rtcp import KeyframeRequest, Nack, ReceiverReport, parse_rtcp

from .rtp_helpers import VP8_DELTA, VP8_KEY, rtp_packet
from .test_core_forwarding import OPUS, PUB_EXT, VP8, fields, setup_session


def events(session: MediaSession) -> list[object]:
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def test_a_consumer_forwards_only_while_no_reason_holds_it() -> None:
    session, pub, producer, subs = setup_session(OPUS, subscribers=1)
    sub, consumer = subs[0]
    pub.receive_rtp(rtp_packet(1, 0, 1111, pt=111), 0.0)
    consumer.set_paused("selection", True, 0.01)
    producer.mute(0.02)  # a second reason
    producer.unmute(0.03)
    pub.receive_rtp(rtp_packet(2, 960, 1111, pt=111), 0.04)  # still held by the selection
    consumer.set_paused("selection", False, 0.05)
    pub.receive_rtp(rtp_packet(3, 1920, 1111, pt=111), 0.06)
    seqs = [fields(p)[1] for p in session.take_ready()[0][1]]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1  # no gap for the subscriber
    assert session.stats.rtp_forwarded == 2  # the packet held back is not counted as forwarded
    assert events(session) == [ConsumerPaused("sub0", "p1", "selection"), ConsumerResumed("sub0", "p1")]


def test_resumed_video_waits_for_a_requested_keyframe() -> None:
    session, pub, producer, subs = setup_session(VP8, subscribers=1)
    sub, consumer = subs[0]
    pub.receive_rtp(rtp_packet(1, 0, 1111, payload=VP8_KEY), 0.0)
    consumer.set_paused("selection", True, 0.1)
    session.take_ready()
    consumer.set_paused("selection", False, 1.0)
    assert [type(p) for d in pub.rtcp_outbox for p in parse_rtcp(d)] == [KeyframeRequest]
    pub.receive_rtp(rtp_packet(2, 3000, 1111, payload=VP8_DELTA), 1.01)
    pub.receive_rtp(rtp_packet(3, 6000, 1111, payload=VP8_KEY), 1.02)
    batches = {t.id: rtp for t, rtp, _ in session.take_ready()}
    assert len(batches["sub0"]) == 1  # only the keyframe, continuing the numbering
    assert KeyframeReceived("p1") in events(session)


def test_no_deadline_when_idle_and_nack_deadline_only_while_a_gap_is_open() -> None:
    session, pub, producer, subs = setup_session(VP8, subscribers=1)
    session.handle_timer(0.0)
    session.take_ready()
    assert session.get_timer() is None  # nothing received, nothing pending: no wake-up at all
    pub.receive_rtp(rtp_packet(1, 0, 1111, payload=VP8_KEY), 1.0)
    assert session.timer_changed and session.get_timer() == 0.0  # the first receiver report is due
    session.handle_timer(1.0)
    assert next(type(p) for _, _, rtcp in session.take_ready() for d in rtcp for p in parse_rtcp(d)) is ReceiverReport
    assert session.get_timer() == 2.0  # one more round, to see whether the stream goes on
    pub.receive_rtp(rtp_packet(4, 0, 1111, payload=VP8_DELTA), 1.1)  # 2 and 3 lost
    assert session.timer_changed and session.get_timer() == 1.1
    session.handle_timer(1.1)
    sent = [p for _, _, rtcp in session.take_ready() for d in rtcp for p in parse_rtcp(d)]
    assert any(isinstance(p, Nack) and p.lost == [2, 3] for p in sent)
    retry = session.get_timer()
    assert retry == pytest.approx(1.15)  # the NACK retry, before the next report
    pub.receive_rtp(rtp_packet(2, 0, 1111, payload=VP8_DELTA), 1.12)
    pub.receive_rtp(rtp_packet(3, 0, 1111, payload=VP8_DELTA), 1.13)
    session.handle_timer(retry)
    assert session.get_timer() == 2.0  # gap closed: only the report remains
    session.handle_timer(2.0)
    assert session.get_timer() == 3.0
    session.handle_timer(3.0)  # nothing arrived since 2.0
    assert StreamStalled("p1") in events(session)
    assert session.get_timer() is None  # and then no wake-up at all


def test_rtcp_is_compounded_per_transport() -> None:
    session, pub, producer, subs = setup_session(VP8, subscribers=1)
    audio = session.add_producer(pub, "a1", mid="1", codec=OPUS, extensions=PUB_EXT, ssrc=3333)
    session.take_ready()
    pub.receive_rtp(rtp_packet(1, 0, 1111, payload=VP8_KEY), 0.0)
    pub.receive_rtp(rtp_packet(1, 0, 3333, pt=111), 0.0)
    session.handle_timer(0.0)
    [(transport, rtp, rtcp)] = [b for b in session.take_ready() if b[0] is pub]
    assert len(rtcp) == 1  # one datagram: RR with both blocks, then REMB
    packets = parse_rtcp(rtcp[0])
    assert isinstance(packets[0], ReceiverReport) and {b.ssrc for b in packets[0].reports} == {1111, 3333}
    assert audio.owner == "" and producer.role == ""


def test_ssrc_bound_by_mid_is_an_event() -> None:
    session = MediaSession()
    pub = session.create_transport("pub")
    producer = session.add_producer(
        pub, "a", mid="1", codec=OPUS, extensions=PUB_EXT, owner="alice", role="teacher", source="microphone"
    )
    pub.receive_rtp(rtp_packet(7, 960, 4242, pt=111, extensions=[(4, b"1")]), 0.0)
    assert events(session) == [ProducerBound("a", 4242)]
    assert (producer.owner, producer.role, producer.source) == ("alice", "teacher", "microphone")


class FakeDetector:
    """Loudest = the lowest level seen; evaluates 100 ms after the first observation."""

    def __init__(self) -> None:
        self.levels: dict[str, int] = {}
        self.next: float | None = None
        self.last: tuple[str | None, tuple[str, ...]] | None = None

    def observe(self, producer_id: str, level: int, now: float) -> None:
        self.levels[producer_id] = level
        if self.next is None:
            self.next = now + 0.1

    def remove(self, producer_id: str) -> None:
        self.levels.pop(producer_id, None)

    def due(self) -> float | None:
        return self.next

    def evaluate(self, now: float) -> tuple[str | None, tuple[str, ...]] | None:
        self.next = None
        loudest = tuple(sorted(self.levels, key=self.levels.__getitem__))
        result = (loudest[0] if loudest else None, loudest)
        if result == self.last:
            return None
        self.last = result
        return result


def test_audio_levels_flow_into_the_detector_and_speakers_come_out_as_events() -> None:
    detector = FakeDetector()
    session = MediaSession(detector=detector)
    pub = session.create_transport("pub")
    session.add_producer(pub, "a", mid="1", codec=OPUS, extensions=PUB_EXT, ssrc=1)
    session.add_producer(pub, "b", mid="2", codec=OPUS, extensions=PUB_EXT, ssrc=2)
    pub.receive_rtp(rtp_packet(1, 0, 1, pt=111, extensions=[(1, b"\x8a")]), 0.0)
    pub.receive_rtp(rtp_packet(1, 0, 2, pt=111, extensions=[(1, b"\x30")]), 0.01)
    assert detector.levels == {"a": 0x0A, "b": 0x30}
    assert session.get_timer() == 0.0  # the first report; then the detector at 0.1
    session.handle_timer(0.0)
    assert session.get_timer() == 0.1
    session.handle_timer(0.1)
    assert events(session) == [SpeakersChanged("a", ("a", "b"))]
    assert session.get_timer() == 1.0  # only the report round that finds the streams stalled
    session.remove_producer(session.producers["a"])
    assert "a" not in detector.levels


def test_take_ready_hands_back_lists_the_core_no_longer_holds() -> None:
    session, pub, producer, subs = setup_session(OPUS, subscribers=1)
    session.take_ready()
    pub.receive_rtp(rtp_packet(1, 0, 1111, pt=111, extensions=[(4, b"0")]), 0.0)
    [(transport, rtp, rtcp)] = session.take_ready()
    assert not session.ready and not transport.outbox
    pub.receive_rtp(rtp_packet(2, 960, 1111, pt=111), 0.02)
    assert len(rtp) == 1  # the batch taken is not touched by later input
    assert [fields(p)[1] for p in session.take_ready()[0][1]] == [(fields(rtp[0])[1] + 1) & 0xFFFF]


def test_a_receive_stream_per_ssrc_meters_its_bitrate() -> None:
    session, pub, producer, subs = setup_session(OPUS, subscribers=0)
    assert pub.streams[1111] is producer.stream
    for i in range(50):  # one second of 20 ms packets
        pub.receive_rtp(rtp_packet(i, i * 960, 1111, pt=111, payload=bytes(88)), i * 0.02)
    assert producer.bitrate(0.99) == 50 * (12 + 88) * 8
    # At 1.55 s the window is the slots from 0.6 s: about 20 packets (a slot boundary may fall either side).
    assert 19 * 800 <= producer.bitrate(1.55) <= 20 * 800
    assert producer.bitrate(5.0) == 0


def test_a_consumer_starting_on_a_late_keyframe_leaves_no_gap() -> None:
    session, pub, producer, subs = setup_session(VP8, subscribers=1)
    session.take_ready()
    pub.receive_rtp(rtp_packet(11, 3000, 1111, payload=VP8_DELTA), 0.0)  # 10, the keyframe, is late
    pub.receive_rtp(rtp_packet(12, 3000, 1111, payload=VP8_DELTA), 0.0)
    pub.receive_rtp(rtp_packet(10, 0, 1111, payload=VP8_KEY), 0.01)  # retransmitted: the start
    pub.receive_rtp(rtp_packet(13, 6000, 1111, payload=VP8_DELTA), 0.04)
    pub.receive_rtp(rtp_packet(11, 3000, 1111, payload=VP8_DELTA), 0.05)  # never seen by the subscriber
    [(_, rtp, _)] = [b for b in session.take_ready() if b[0].id == "sub0"]
    seqs = [fields(p)[1] for p in rtp]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1  # 10 then 13, numbered back to back
