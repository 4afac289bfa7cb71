"""Simulcast and temporal layers in the simulation: what a subscriber's decoder sees across switches."""

from __future__ import annotations

import itertools

from sfu.core import ConsumerLayerChanged
from sfu.core.layered import LayeredConsumer

from .sim import Received, Sim

KEYFRAME_WAIT = 0.6  # a PLI may wait out the 0.5 s request interval, then the next frame is a keyframe


def only_stream(sim: Sim, name: str) -> Received:
    subscriber = sim.subscribers[name][1]
    assert len(subscriber.streams) == 1  # one SSRC whatever the layer: the consumer's own
    return next(iter(subscriber.streams.values()))


def consumer_of(sim: Sim, name: str) -> LayeredConsumer:
    consumer = next(iter(sim.subscribers[name][0].consumers.values()))
    assert isinstance(consumer, LayeredConsumer)
    return consumer


def teacher_and_pupil() -> tuple[Sim, LayeredConsumer]:
    """A simulcast teacher and one pupil subscribed, one second in: on q, every temporal layer."""
    sim = Sim()
    sim.publish_simulcast("teacher")
    sim.subscribe("pupil", "teacher")
    consumer = consumer_of(sim, "pupil")
    sim.run(1.0)
    return sim, consumer


def longest_freeze(stream: Received, after: float = 0.0) -> float:
    times = [t for t, _, _ in stream.frames if t >= after]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_switching_layers_keeps_one_continuous_stream() -> None:
    sim = Sim()
    layers = sim.publish_simulcast("teacher")
    sim.subscribe("pupil", "teacher")
    consumer = consumer_of(sim, "pupil")
    sim.run(1.0)
    assert consumer.current_layers == (0, 2)
    for spatial, at in ((2, 1.0), (1, 3.0), (0, 5.0)):
        consumer.set_layers(spatial, 2, sim.now)
        sim.run(at + 2.0)
        assert consumer.current_layers == (spatial, 2)
    stream = only_stream(sim, "pupil")
    assert stream.first_is_keyframe
    assert stream.gaps() == []  # no hole in the numbering across three switches
    ids = [pid for _, pid, _ in stream.frames]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(ids))  # picture ids continue
    assert longest_freeze(stream, after=0.5) < KEYFRAME_WAIT
    changes = [e for e in sim.events if isinstance(e, ConsumerLayerChanged)]
    assert [(e.spatial, e.temporal) for e in changes] == [(0, 2), (2, 2), (1, 2), (0, 2)]
    assert all(layer.resent == 0 for layer in layers)


def test_temporal_layers_lower_the_frame_rate_without_a_gap() -> None:
    sim, consumer = teacher_and_pupil()
    consumer.set_layers(0, 0, sim.now)
    sim.run(3.0)
    assert consumer.current_layers == (0, 0)
    consumer.set_layers(0, 2, sim.now)
    sim.run(5.0)
    assert consumer.current_layers == (0, 2)
    stream = only_stream(sim, "pupil")
    assert stream.gaps() == []  # the dropped frames were numbered as dropped: nothing to NACK
    low = [f for f in stream.frames if 1.2 <= f[0] < 3.0]
    full = [f for f in stream.frames if 3.2 <= f[0] < 5.0]
    assert {tid for _, _, tid in low} == {0}
    assert 11 <= len(low) <= 16  # 7.5 frames a second
    assert 50 <= len(full) <= 56  # 30 frames a second again
    ids = [pid for _, pid, _ in stream.frames]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(ids))


def test_a_paused_layered_consumer_costs_no_visit() -> None:
    sim, consumer = teacher_and_pupil()
    producer = consumer.producer
    assert [len(s.consumers) for s in producer.streams] == [1, 0, 0]
    consumer.set_paused("bandwidth", True, sim.now)
    assert [len(s.consumers) for s in producer.streams] == [0, 0, 0]
    consumer.set_paused("bandwidth", False, sim.now)
    consumer.set_layers(1, 2, sim.now)
    assert [len(s.consumers) for s in producer.streams] == [0, 1, 0]  # resumed: waits for h's keyframe
    sim.run(2.5)
    assert consumer.current_layers == (1, 2)
