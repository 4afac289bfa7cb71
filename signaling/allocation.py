"""The room's bandwidth, carried out: layers per subscriber, probing by steps, dynacast.

`sfu.core.allocator.allocate` decides; this module gathers what it needs from the live class
(priorities from roles, sources, the speaker and the pin; wishes from each page's tiles; each
subscriber's downlink estimate), applies the result to the consumers, and tells publishers which
of their simulcast layers anyone receives (`layers`, docs/protocol.md). It runs after every choice
of videos and every ALLOCATE_EVERY seconds, since estimates and bitrates move on their own.

The estimate is the core's, from the subscriber's transport-wide feedback (`sfu/core/bwe.py`), or
for a browser that sends none its own REMB, lowered on loss. Either follows what the subscriber
receives, so neither can show that a link has room for more: a subscriber held below what it wants
is, from time to time, given one step more than its estimate (a probe by the media itself). If loss
follows, it goes back at once and waits twice as long before the next try (PROBE_BACKOFF_MAX at
most); if not, the estimate has grown with what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfu.adapter.peer import LAYER_BITRATES
from sfu.core import Consumer, Kind
from sfu.core.allocator import (
    ACTIVE_SPEAKER,
    OTHER,
    PINNED,
    TEACHER_CAMERA,
    TEACHER_SCREEN,
    Allocation,
    Subscription,
    allocate,
)
from sfu.core.layered import LayeredConsumer

from .protocol import encode
from .tokens import Role

if TYPE_CHECKING:
    from sfu.core import Producer

    from .participant import Participant
    from .room import Room

ALLOCATE_EVERY = 1.0  # seconds between two allocations when nothing else triggers one
AUDIO_COST = 40_000  # bits/s counted per forwarded microphone (Opus with headers)
COOLING = 4.0  # seconds during which a video lowered is not raised again
DYNACAST_DELAY = 5.0  # seconds a layer must stay unwanted before its publisher stops encoding it
LOSS_HIGH = 0.1  # fraction lost above which the estimate is lowered
PROBE_LOSS = 0.05  # fraction lost during a probe that makes it fail
PROBE_STEP = 1.5  # a probe lets the subscriber receive up to this times what it used
# Seconds a probe lasts before it counts as a success: the core's estimate takes what arrived at
# once (sfu/core/bwe.py); a browser's REMB needs a few seconds to follow.
PROBE_TIME = 2.0
PROBE_TIME_REMB = 4.0
PROBE_AGAIN = 1.0  # seconds from a successful probe to the next, while more is wanted
PROBE_BACKOFF = 5.0  # seconds from a failed probe to the next, doubling on each failure
PROBE_BACKOFF_MAX = 60.0
TEMPORAL_SHARES = (0.5, 0.75, 1.0)  # a paused layer's nominal bitrate split by temporal layer


def wish(width: int) -> int:
    """The spatial layer a tile this wide (css px) needs: quarter, half or full resolution."""
    return 0 if width < 320 else 1 if width < 640 else 2


@dataclass
class Probe:
    """One subscriber's probing state."""

    backoff: float = PROBE_BACKOFF
    next_at: float = 0.0
    until: float | None = None  # a probe in progress ends then
    ceiling: int = 0  # the estimate the probe allows


class RoomAllocator:
    """One class's allocation: applies `allocate` and keeps what it needs between runs."""

    def __init__(self, room: Room) -> None:
        self.room = room
        settings = room.settings
        self.room_budget = settings.room_egress_bitrate or None
        self.max_downlink = settings.max_downlink_bitrate or None
        self.probes: dict[str, Probe] = {}
        self.lowered: dict[tuple[str, str], float] = {}  # (subscriber, track) -> when lowered
        self.wanted_at: dict[tuple[str, str], float] = {}  # (track, rid) -> last time anyone wanted it
        self.active: dict[str, tuple[str, ...]] = {}  # track -> rids its publisher was told to send
        self.last: Allocation | None = None
        self.estimated = 0  # sums over the class, for the metrics
        self.allocated = 0
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._timer = self.room.live.loop.call_later(ALLOCATE_EVERY, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.room.detached:
            return
        self.run()
        self.start()

    def soon(self) -> None:
        """Run again as soon as the loop is free (an estimate moved): several asks, one run."""
        if self._soon is None:
            self._soon = self.room.live.loop.call_soon(self._run_soon)

    def _run_soon(self) -> None:
        self._soon = None
        if not self.room.detached:
            self.run()

    def close(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._tasks:
            task.cancel()

    # One run

    def run(self) -> None:
        room = self.room
        now = room.live.now()
        producers = [p for p in room.live.session.producers.values() if p.kind is Kind.VIDEO and not p.closed]
        bitrates = {p.id: self._layers(p, now) for p in producers}
        rows: list[Subscription] = []
        consumers: dict[tuple[str, str], LayeredConsumer] = {}
        estimates: dict[str, int] = {}
        audio: dict[str, int] = {}
        for participant in list(room.participants.values()):
            if participant.closed:
                continue
            layered = [c for c in participant.subscriber.consumers.values() if isinstance(c, LayeredConsumer)]
            if not layered:
                continue
            audio[participant.id] = AUDIO_COST * sum(
                1 for c in participant.subscriber.consumers.values() if c.kind is Kind.AUDIO and not c.paused
            )
            estimate = self._estimate(participant, layered, now)
            participant.subscriber.transport.estimate = estimate  # bounds its retransmissions too
            if estimate is not None:
                estimates[participant.id] = estimate
            for consumer in layered:
                producer = consumer.producer
                if producer.id not in bitrates:
                    continue
                key = (participant.id, producer.id)
                consumers[key] = consumer
                rows.append(
                    Subscription(
                        participant.id,
                        producer.id,
                        self._priority(participant, producer),
                        self._wish(participant, consumer),
                        bitrates[producer.id],
                        None if consumer.paused else consumer.target_layers,  # paused: resuming is going up
                    )
                )
        cooling = frozenset(key for key, at in self.lowered.items() if now - at < COOLING)
        allocation = allocate(rows, self._with_probes(estimates, now), audio, self.room_budget, cooling)
        self._apply(allocation, consumers, now)
        self._after_probes(allocation, estimates, now)
        self._dynacast([p for p in producers if p.simulcast], allocation, now)
        self.last = allocation
        self.allocated = sum(allocation.used.values())
        self.estimated = sum(estimates.values())
        room.live.flush()  # keyframe requests of the switches

    def _layers(self, producer: Producer, now: float) -> tuple[tuple[int, ...], ...]:
        """Measured bitrates, with the nominal ones of the layers dynacast stopped (they can resume)."""
        measured = producer.layer_bitrates(now)
        if not producer.simulcast:
            return measured
        active = self.active.get(producer.id)
        layers = []
        for rid, bitrates in zip(producer.rids, measured, strict=True):
            if active is not None and rid not in active:
                nominal = LAYER_BITRATES.get(rid, 0)
                bitrates = tuple(int(nominal * share) for share in TEMPORAL_SHARES)
            layers.append(bitrates)
        return tuple(layers)

    def _priority(self, subscriber: Participant, producer: Producer) -> int:
        teacher = producer.role == Role.TEACHER.value
        if producer.source == "screen":
            return TEACHER_SCREEN if teacher else ACTIVE_SPEAKER
        if teacher:
            return TEACHER_CAMERA
        if producer.owner == self.room.forwarding.active:
            return ACTIVE_SPEAKER
        view = subscriber.view
        if view is not None and view.pinned == producer.owner:
            return PINNED
        return OTHER

    @staticmethod
    def _wish(subscriber: Participant, consumer: Consumer) -> int | None:
        if consumer.pause_reasons - {"bandwidth"}:
            return None  # not chosen, or muted: costs nothing
        view = subscriber.view
        if view is None:
            return 0  # before a view, every tile is a thumbnail
        return wish(view.tiles.get(consumer.producer.id, (0, 0))[0])

    def _estimate(self, participant: Participant, consumers: list[LayeredConsumer], now: float) -> int | None:
        """The subscriber's downlink estimate: the core's, from its transport feedback, or its own
        REMB for a browser that sends none (None: unknown, no limit); lowered on loss, within the
        operator's cap."""
        transport = participant.subscriber.transport
        bwe = transport.bwe
        estimate = bwe.estimate if bwe is not None and bwe.feedbacks else transport.remb
        loss = max((c.fraction_lost for c in consumers if not c.paused), default=0) / 256
        if loss > LOSS_HIGH and self.last is not None:
            used = self.last.used.get(participant.id)
            if used is not None:
                lowered = int(used * (1 - loss / 2))
                estimate = lowered if estimate is None else min(estimate, lowered)
        probe = self.probes.get(participant.id)
        if probe is not None and probe.until is not None and loss > PROBE_LOSS:
            probe.until = None  # the step was too much: back at once, and wait longer next time
            probe.backoff = min(probe.backoff * 2, PROBE_BACKOFF_MAX)
            probe.next_at = now + probe.backoff
        if self.max_downlink is not None:
            estimate = self.max_downlink if estimate is None else min(estimate, self.max_downlink)
        return estimate

    def _with_probes(self, estimates: dict[str, int], now: float) -> dict[str, int]:
        """The estimates, raised for the subscribers that are probing (never above the operator's cap)."""
        raised = dict(estimates)
        for sub, probe in self.probes.items():
            if probe.until is not None and sub in raised:
                ceiling = probe.ceiling if self.max_downlink is None else min(probe.ceiling, self.max_downlink)
                raised[sub] = max(raised[sub], ceiling)
        return raised

    def _after_probes(self, allocation: Allocation, estimates: dict[str, int], now: float) -> None:
        """End the probes that lasted without loss; start one for a subscriber held below its wish."""
        for sub, estimate in estimates.items():
            probe = self.probes.setdefault(sub, Probe(next_at=now + PROBE_AGAIN))  # the first soon
            if probe.until is not None:
                if now >= probe.until:
                    probe.until = None
                    probe.backoff = PROBE_BACKOFF
                    probe.next_at = now + PROBE_AGAIN
                continue
            used = allocation.used.get(sub, 0)
            capped = self.max_downlink is not None and estimate >= self.max_downlink
            if allocation.wanted.get(sub, 0) > estimate and now >= probe.next_at and not capped:
                participant = self.room.participants.get(sub)
                bwe = participant.subscriber.transport.bwe if participant is not None else None
                probe.until = now + (PROBE_TIME if bwe is not None and bwe.feedbacks else PROBE_TIME_REMB)
                probe.ceiling = int(max(used, estimate) * PROBE_STEP)

    def _apply(self, allocation: Allocation, consumers: dict[tuple[str, str], LayeredConsumer], now: float) -> None:
        for key, layers in allocation.layers.items():
            consumer = consumers[key]
            if consumer.pause_reasons - {"bandwidth"}:
                consumer.set_paused("bandwidth", False, now)  # held for another reason: not ours to hold
                continue
            if layers is None:
                if "bandwidth" not in consumer.pause_reasons and not consumer.paused:
                    self.lowered[key] = now
                consumer.set_paused("bandwidth", True, now)
                continue
            before = consumer.target_layers
            if "bandwidth" in consumer.pause_reasons:
                consumer.set_layers(*layers, now)
                consumer.set_paused("bandwidth", False, now)
            elif layers != before:
                if layers < before:
                    self.lowered[key] = now
                consumer.set_layers(*layers, now)
        for key in [k for k in self.lowered if k not in allocation.layers]:
            del self.lowered[key]

    # Dynacast

    def _dynacast(self, producers: list[Producer], allocation: Allocation, now: float) -> None:
        """Tell each simulcast publisher the layers someone receives, the lowest always: a layer
        unwanted for DYNACAST_DELAY stops, a wanted one starts at once."""
        for (_, track), layers in allocation.layers.items():
            if layers is not None:
                producer = self.room.live.session.producers.get(track)
                if producer is not None and producer.simulcast:
                    self.wanted_at[(track, producer.rids[layers[0]])] = now
        for producer in producers:
            if producer.id not in self.active:  # a new track: every layer gets the delay to be wanted
                for rid in producer.rids:
                    self.wanted_at.setdefault((producer.id, rid), now)
            active = tuple(
                rid
                for index, rid in enumerate(producer.rids)
                if index == 0 or now - self.wanted_at.get((producer.id, rid), float("-inf")) < DYNACAST_DELAY
            )
            if self.active.get(producer.id, producer.rids) == active:
                continue
            self.active[producer.id] = active
            owner = self.room.participants.get(producer.owner)
            if owner is not None and not owner.closed:
                self._spawn(self.room.send_to(owner, encode("layers", mid=producer.mid, active=list(active))))
        gone = {p.id for p in producers}
        for track in [t for t in self.active if t not in gone]:
            del self.active[track]
        for key in [k for k in self.wanted_at if k[0] not in gone]:
            del self.wanted_at[key]

    def paused_layers(self) -> int:
        """Simulcast layers that publishers of this class were told to stop."""
        producers = self.room.live.session.producers
        return sum(len(producers[t].rids) - len(a) for t, a in self.active.items() if t in producers)

    def departed(self, participant: Participant) -> None:
        self.probes.pop(participant.id, None)
        for key in [k for k in self.lowered if k[0] == participant.id]:
            del self.lowered[key]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
