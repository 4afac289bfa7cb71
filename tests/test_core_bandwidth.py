"""The room's bandwidth between rounds (sfu/core/bandwidth.py): probing by padding, a switch down
at once when the link cannot carry the current layer, and dynacast, in the simulation."""

from __future__ import annotations

from sfu.adapter.peer import LAYER_BITRATES
from sfu.core.allocator import OTHER, TEACHER_CAMERA
from sfu.core.bandwidth import RoomBandwidth, Subscriber, Wanted
from sfu.core.layered import LayeredConsumer
from sfu.core.stats import DropReason
from sfu.core.twcc import build_feedback

from .sim import Sim, layer_recordings


def pupil_on_full(wide: bool = True) -> tuple[Sim, LayeredConsumer]:
    """A simulcast teacher; one pupil on its full layer, two seconds in."""
    sim = Sim(seed=5)
    sim.publish_simulcast("teacher")
    sim.subscribe("pupil", "teacher", wide=wide)
    consumer = next(iter(sim.subscribers["pupil"][0].consumers.values()))
    assert isinstance(consumer, LayeredConsumer)
    consumer.set_layers(2, 2, sim.now)
    sim.run(2.0)
    assert consumer.current_layers == (2, 2)
    return sim, consumer


def test_a_probe_pads_with_copies_on_rtx_at_its_rate_then_stops() -> None:
    sim, consumer = pupil_on_full()
    transport, subscriber, _, _ = sim.subscribers["pupil"]
    stats = sim.session.stats
    resent, rtx_before = stats.retransmissions, subscriber.rtx_received
    seqs_before = len(subscriber.streams[consumer.ssrc].seqs)
    assert transport.start_probe(400_000, sim.now + 0.5, sim.now)
    sim.run(3.0)
    padded = subscriber.rtx_received - rtx_before
    # 400 kbit/s for half a second is 25 kB: copies of the newest packets, on the RTX stream only.
    assert stats.probe_packets == padded > 0 and stats.retransmissions == resent
    assert 10 <= padded <= 60, padded  # full-layer packets are about 1 kB
    assert subscriber.streams[consumer.ssrc].duplicates >= padded - 1  # the decoder had them all
    assert len(subscriber.streams[consumer.ssrc].seqs) > seqs_before  # the media went on meanwhile
    assert transport.probe_until is None  # over at its end


def test_a_probe_needs_rtx_and_ends_at_the_first_loss() -> None:
    sim, _ = pupil_on_full(wide=False)  # no transport-cc here, so no RTX either (tests/sim.py)
    assert not sim.subscribers["pupil"][0].start_probe(400_000, sim.now + 1.0, sim.now)
    sim, _ = pupil_on_full()
    transport = sim.subscribers["pupil"][0]
    assert transport.start_probe(400_000, sim.now + 1.0, sim.now)
    sim.run(sim.now + 0.1)
    # A feedback on the last 40 packets sent, half of them lost.
    last = (transport.wide_seq(100, sim.now) - 40) & 0xFFFF
    arrivals = [sim.now if i % 2 else None for i in range(40)]
    transport.receive_rtcp(build_feedback(1, 0, last, arrivals), sim.now)
    assert transport.probe_until is None and transport.probe_failed


def test_a_layer_the_link_cannot_carry_stops_at_once() -> None:
    sim, consumer = pupil_on_full()
    bandwidth = RoomBandwidth(nominal=LAYER_BITRATES)
    transport = sim.subscribers["pupil"][0]
    assert transport.bwe is not None
    transport.bwe.estimate = 200_000  # the link fell under the full layer (1.5 Mbit/s)
    transport.bwe.feedbacks += 1
    pupil = Subscriber("pupil", transport, [Wanted(consumer, TEACHER_CAMERA, 2)])
    bandwidth.run([pupil], sim.session.producers.values(), sim.now)
    assert consumer.target_layers[0] == 0
    assert consumer.current_layers is None  # the full layer no longer sent, before the keyframe
    waiting = sim.session.stats.drops[DropReason.WAITING_FOR_KEYFRAME]
    sim.run(sim.now + 1.0)
    assert consumer.current_layers is not None and consumer.current_layers[0] == 0
    assert sim.session.stats.drops[DropReason.WAITING_FOR_KEYFRAME] >= waiting


def test_dynacast_stops_an_unwanted_layer_after_its_delay_and_resumes_it() -> None:
    sim, consumer = pupil_on_full()
    bandwidth = RoomBandwidth(nominal=LAYER_BITRATES)
    transport = sim.subscribers["pupil"][0]
    producers = sim.session.producers
    small = Subscriber("pupil", transport, [Wanted(consumer, TEACHER_CAMERA, 0)])  # a thumbnail
    changes = {}
    for step in range(8):
        sim.run(2.0 + step)
        changes[step] = bandwidth.run([small], producers.values(), sim.now)
        sim.dynacast(changes[step])
    stopped = [step for step, changed in changes.items() if changed]
    assert len(stopped) == 1 and changes[stopped[0]] == {"teacher": ("q",)}
    assert bandwidth.paused_layers(producers) == 2
    assert not sim.layers["teacher"][2].running
    large = Subscriber("pupil", transport, [Wanted(consumer, TEACHER_CAMERA, 2)])
    assert bandwidth.run([large], producers.values(), sim.now) == {"teacher": ("q", "f")}


def test_what_a_subscriber_can_make_the_server_pad_is_bounded() -> None:
    # Feedback saying everything arrived at once (an unlimited link, or a subscriber lying about
    # one) and a wish for the full layer: probes stop once the estimate covers the wish, and until
    # then pad at most 1.2 times what is wanted, half a second in every one and a half.
    sim = Sim(seed=9)
    sim.publish_simulcast("teacher", frames=layer_recordings())  # 150 kbit/s, 500 kbit/s, 1.5 Mbit/s
    sim.subscribe("pupil", "teacher", wide=True)
    transport = sim.subscribers["pupil"][0]
    consumer = next(iter(transport.consumers.values()))
    assert isinstance(consumer, LayeredConsumer)
    bandwidth = RoomBandwidth(nominal=LAYER_BITRATES)
    pupil = Subscriber("pupil", transport, [Wanted(consumer, TEACHER_CAMERA, 2)])
    sim.run(0.5)
    assert transport.bwe is not None
    transport.bwe.estimate = 100_000  # starting low, it must be found by probing
    starts: list[float] = []
    for step in range(3, 83):
        sim.run(step * 0.25)
        bandwidth.run([pupil], sim.session.producers.values(), sim.now)
        downlink = bandwidth.downlinks.get("pupil")
        if downlink is not None and downlink.until is not None and (not starts or starts[-1] != downlink.until):
            starts.append(downlink.until)
        sim.flush()
    assert bandwidth.last is not None
    wanted = bandwidth.last.wanted["pupil"]
    padded = sim.session.stats.probe_packets * 1_200 * 8  # bits, every packet at its largest
    assert starts and padded <= 1.2 * wanted * 0.5 * len(starts), (starts, padded, wanted)
    assert len(starts) <= 20 / 1.5
    assert transport.bwe.estimate >= wanted  # found, then left alone
    last = sim.session.stats.probe_packets
    sim.run(sim.now + 3.0)
    bandwidth.run([pupil], sim.session.producers.values(), sim.now)
    sim.run(sim.now + 2.0)
    assert sim.session.stats.probe_packets == last


def three_videos(estimate: int) -> tuple[Sim, RoomBandwidth, Subscriber]:
    """A teacher and two pupils' cameras to one pupil whose estimate is fixed (no feedback)."""
    sim = Sim(seed=4)
    for name in ("teacher", "ada", "bob"):
        sim.publish_simulcast(name, frames=layer_recordings())
        sim.subscribe("pupil", name, wide=True)
    transport, subscriber, _, _ = sim.subscribers["pupil"]
    consumers = {c.producer.id: c for c in set(transport.consumers.values())}
    for consumer in consumers.values():
        consumer.set_layers(2, 2, sim.now)  # type: ignore[attr-defined]
    sim.run(1.0)
    subscriber.wide_id = 0
    sim.run(1.2)
    assert transport.bwe is not None
    transport.bwe.estimate = estimate
    videos = [
        Wanted(c, TEACHER_CAMERA if track == "teacher" else OTHER, 2)  # type: ignore[arg-type]
        for track, c in consumers.items()
    ]
    return sim, RoomBandwidth(nominal=LAYER_BITRATES), Subscriber("pupil", transport, videos)


def test_on_a_slow_link_keyframes_are_asked_one_at_a_time_the_teacher_first() -> None:
    sim, bandwidth, pupil = three_videos(300_000)
    producers = sim.session.producers.values()
    assert all(v.consumer.current_layers == (2, 2) for v in pupil.videos)
    bandwidth.run([pupil], producers, sim.now)  # the link fell under the full layers
    # 300 kbit/s takes about 11 kB of keyframes in 0.3 s: the teacher's (6.5 kB), not three. The
    # others stop at once too (nothing of theirs can pass) and come back in later rounds.
    waiting = {v.consumer.producer.id for v in pupil.videos if not v.consumer.paused}
    assert waiting == {"teacher"}, waiting
    assert next(v for v in pupil.videos if v.priority == TEACHER_CAMERA).consumer.target_layers[0] == 0
    for step in range(1, 14):  # once their cooling is over (COOLING), one by one
        sim.run(1.2 + step * 0.5)
        bandwidth.run([pupil], producers, sim.now)
    assert all(v.consumer.current_layers is not None for v in pupil.videos)


def test_a_video_lowered_is_raised_before_its_cooling_ends_once_the_link_grew() -> None:
    sim, consumer = pupil_on_full()
    bandwidth = RoomBandwidth(nominal=LAYER_BITRATES)
    transport = sim.subscribers["pupil"][0]
    assert transport.bwe is not None
    sim.subscribers["pupil"][1].wide_id = 0  # the estimate stays where the test puts it
    sim.run(sim.now + 0.2)
    pupil = Subscriber("pupil", transport, [Wanted(consumer, TEACHER_CAMERA, 2)])
    transport.bwe.estimate = 150_000
    bandwidth.run([pupil], sim.session.producers.values(), sim.now)
    assert consumer.target_layers[0] == 0
    sim.run(sim.now + 1.0)
    transport.bwe.estimate = 160_000  # within a quarter: still cooling
    bandwidth.run([pupil], sim.session.producers.values(), sim.now)
    assert consumer.target_layers[0] == 0
    transport.bwe.estimate = 5_000_000
    bandwidth.run([pupil], sim.session.producers.values(), sim.now)
    assert consumer.target_layers[0] > 0


def test_rounds_close_together_keep_the_temporal_layers() -> None:
    # A round 50 ms after another (an estimate event) used to see a keyframe alone and take the
    # layer for one without temporal layers: the teacher then lost its higher ones.
    sim, _ = pupil_on_full()
    producer = sim.session.producers["teacher"]
    first = producer.layer_bitrates(sim.now)
    sim.run(sim.now + 0.05)
    assert [len(layer) for layer in producer.layer_bitrates(sim.now)] == [len(layer) for layer in first] == [3, 3, 3]
