"""A subscriber's pacer (sfu/core/pacer.py) inside the core: what it holds, in which order, how
it numbers what leaves, and what a subscriber can make it hold."""

from __future__ import annotations

from sfu.core import Codec, DropReason, HeaderExtensions, MediaSession, Transport
from sfu.core.consumer import Consumer
from sfu.core.pacer import MAX_HOLD, Pacer
from sfu.core.twcc import build_feedback

from .rtp_helpers import VP8_DELTA, VP8_KEY, rtp_packet

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97)
OPUS = Codec("audio/opus", 111, 48000)
PUB_EXT = HeaderExtensions(mid=4, audio_level=1)
SUB_EXT = HeaderExtensions(mid=1, audio_level=2, transport_cc=3)
PAYLOAD = b"\x00" * 1_000


def wide_seq(data: bytes) -> int:
    return (data[17] << 8) | data[18]


class Class:
    """Publishers of video (and one of audio) and one subscriber negotiating transport-cc."""

    def __init__(self, videos: int = 2) -> None:
        self.session = MediaSession()
        self.sub = self.session.create_transport("pupil:sub")
        self.seqs: dict[int, int] = {}
        self.consumers: list[Consumer] = []
        for index in range(videos):
            pub = self.session.create_transport(f"v{index}:pub")
            producer = self.session.add_producer(
                pub, f"v{index}", mid="0", codec=VP8, extensions=PUB_EXT, ssrc=1000 + index
            )
            self.consumers.append(
                self.session.add_consumer(
                    self.sub, producer, ssrc=5000 + index, payload_type=96, mid=str(index), extensions=SUB_EXT
                )
            )
        audio = self.session.create_transport("a:pub")
        producer = self.session.add_producer(audio, "a", mid="0", codec=OPUS, extensions=PUB_EXT, ssrc=900)
        self.session.add_consumer(self.sub, producer, ssrc=4000, payload_type=111, mid="9", extensions=SUB_EXT)
        self.audio_pub = audio
        self.now = 0.0

    def video(self, index: int, count: int, key: bool = False) -> None:
        """One frame of `count` packets of video `index`, arriving now."""
        transport = self.session.transports[f"v{index}:pub"]
        for i in range(count):
            seq = self.seqs.get(index, 0)
            self.seqs[index] = seq + 1
            payload = (VP8_KEY if key and i == 0 else VP8_DELTA) + PAYLOAD
            data = rtp_packet(seq, 3000 * seq, 1000 + index, payload=payload, marker=i == count - 1)
            transport.receive_rtp(data, self.now)

    def audio(self) -> None:
        seq = self.seqs.get(-1, 0)
        self.seqs[-1] = seq + 1
        self.audio_pub.receive_rtp(rtp_packet(seq, 960 * seq, 900, pt=111, payload=b"opus"), self.now)

    def take(self) -> list[bytes]:
        sent = []
        for transport, rtp, _ in self.session.take_ready(self.now):
            if transport is self.sub:
                sent += rtp
        return sent

    def run_until(self, until: float) -> list[bytes]:
        """What leaves up to `until`, the timer called as the core asks."""
        sent = self.take()
        while (deadline := self.session.get_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.session.handle_timer(self.now)
            sent += self.take()
        self.now = until
        return sent


def paced(room: Class, bitrate: int) -> Transport:
    for index in range(len(room.consumers)):
        room.video(index, 1, key=True)
    room.take()
    assert room.sub.pacer is not None  # made with the transport-wide numbers
    room.sub.pacer.set_estimate(bitrate)
    room.run_until(0.1)
    return room.sub


def test_a_burst_waits_and_leaves_at_the_estimate() -> None:
    room = Class()
    transport = paced(room, 400_000)  # 50 kB/s: a 20 kB keyframe takes 0.4 s
    room.video(0, 20, key=True)
    first = room.take()
    assert 1 <= len(first) <= 10  # what fits in the burst leaves now
    assert transport.pacer is not None and transport.pacer.queued and room.session.get_timer() is not None
    sent = first + room.run_until(1.0)
    assert len(sent) == 20 and not transport.pacer.queued
    # Audio is never held, even behind a keyframe.
    room.video(0, 20, key=True)
    room.take()
    room.audio()
    assert [d[8:12] for d in room.take()] == [(4000).to_bytes(4, "big")]


def test_the_teacher_leaves_before_a_thumbnail_queued_earlier() -> None:
    room = Class()
    transport = paced(room, 400_000)
    transport.priorities = {5000: 1, 5001: 4}  # video 1 is the teacher's
    room.video(0, 10, key=True)
    room.video(1, 10, key=True)
    sent = room.take() + room.run_until(1.0)
    order = [int.from_bytes(d[8:12], "big") for d in sent]
    first_thumbnail = order.index(5000)
    # Once the pacer has to choose, the teacher's packets go first; each stream keeps its order.
    assert order[first_thumbnail:].count(5001) <= 1, order
    for ssrc in (5000, 5001):
        seqs = [int.from_bytes(d[2:4], "big") for d in sent if int.from_bytes(d[8:12], "big") == ssrc]
        assert seqs == sorted(seqs)


def test_what_waited_is_numbered_as_it_leaves_and_is_no_loss() -> None:
    room = Class()
    transport = paced(room, 300_000)
    transport.priorities = {5000: 1, 5001: 4}
    sent: list[tuple[int, float]] = []
    for step in range(40):  # two streams at ~800 kbit/s each through a 300 kbit/s pacer, 1 s
        room.video(step % 2, 3, key=step < 2)
        sent += [(wide_seq(d), room.now) for d in room.run_until(room.now + 0.025)]
    numbers = [seq for seq, _ in sent]
    assert numbers == sorted(numbers), "transport-wide numbers must follow the send order"
    # The subscriber got everything sent (the numbers it never saw were never sent as such).
    bwe = transport.bwe
    assert bwe is not None
    base, top = numbers[0], numbers[-1]
    arrivals: list[float | None] = [None] * (top - base + 1)
    for seq, at in sent:
        arrivals[seq - base] = at + 0.02
    transport.receive_rtcp(build_feedback(1, 0, base, arrivals), room.now)
    assert bwe.loss == 0.0


def test_a_switch_down_drops_what_the_pacer_holds_of_the_old_layer() -> None:
    from .sim import Sim

    sim = Sim(seed=2)
    sim.publish_simulcast("teacher")
    sim.subscribe("pupil", "teacher", wide=True)
    transport = sim.subscribers["pupil"][0]
    consumer = next(iter(transport.consumers.values()))
    consumer.set_layers(2, 2, sim.now)  # type: ignore[attr-defined]
    sim.run(2.0)
    assert transport.pacer is not None
    sim.subscribers["pupil"][1].wide_id = 0  # no more feedback: the estimate stays where set
    sim.run(2.1)
    assert transport.bwe is not None
    transport.bwe.estimate = 50_000  # the link fell: the full layer piles up in the pacer
    transport.pacer.set_estimate(50_000)
    sim.run(2.3)
    assert transport.pacer.queued > 0
    consumer.set_layers(0, 2, sim.now, at_once=True)  # type: ignore[attr-defined]
    assert not transport.pacer.queued
    assert sim.session.stats.drops[DropReason.SWITCHED_AWAY] > 0


def test_a_feedback_claiming_a_tiny_link_cannot_make_the_server_hold_much() -> None:
    # A subscriber whose feedback drives its estimate to the floor while a 1.6 Mbit/s video is
    # forwarded to it: what the pacer holds stays within MAX_HOLD of that inflow.
    room = Class(videos=1)
    transport = paced(room, 50_000)
    peak = 0
    for _ in range(200):  # 10 s of 5 packets every 25 ms
        room.video(0, 5)
        room.run_until(room.now + 0.025)
        assert transport.pacer is not None
        peak = max(peak, transport.pacer.queued)
    inflow = 5 * len(PAYLOAD) / 0.025  # bytes per second
    assert peak <= inflow * (MAX_HOLD + 0.1), (peak, inflow)


def test_the_pacer_alone() -> None:
    pacer = Pacer()
    assert pacer.fits([b"x" * 1000] * 5, 0.0)  # no estimate yet: nothing held
    pacer.set_estimate(80_000)  # 10 kB/s
    outbox = [b"x" * 1000] * 10
    assert not pacer.fits(outbox, 1.0)
    pacer.hold(outbox, {})
    first = pacer.due(1.0)
    assert 1 <= len(first) < 10 and pacer.next_at is not None and pacer.next_at > 1.0
    assert pacer.queued == (10 - len(first)) * 1000
    assert not pacer.fits([b"y" * 100], pacer.next_at)  # nothing passes what is held
    assert len(pacer.due(pacer.next_at)) >= 1
