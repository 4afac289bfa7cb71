"""A class's bandwidth, round after round: the allocator's choice carried out on the consumers.

`allocate` (sfu/core/allocator.py) is a pure function of one moment. What lasts between two
rounds lives here, sans-IO like the rest of the core (fed with the consumers and the time):

- each subscriber's downlink (`Downlink`): the estimate to allocate by (the core's from transport-
  wide feedback, else the subscriber's REMB), lowered on loss, within the operator's cap; and the
  probing that finds out whether the link has room for more. The estimators only follow what
  arrives, so a subscriber held below what it wants is sent more now and then: padding (copies of
  its recent video packets on the RTX stream, harmless if lost) at the rate the next step needs,
  or, where no RTX was negotiated, the next step itself. A probe that meets loss or a falling
  estimate ends at once and the next waits twice as long (PROBE_BACKOFF_MAX at most);
- cooling: a video lowered is not raised again for COOLING seconds (no oscillation), unless its
  subscriber's estimate has grown by a quarter since (what lowered it no longer holds);
- a switch down because the link cannot carry the current layer (its bitrate above the whole
  estimate) happens at once: the old layer stops instead of filling the queue until the lower
  layer's keyframe, which then arrives sooner;
- dynacast: which simulcast layers anyone receives; one unwanted for DYNACAST_DELAY is reported
  so that its publisher stops encoding it (the lowest always stays).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .allocator import ESSENTIAL, Allocation, Subscription, allocate
from .layered import LayeredConsumer
from .params import Kind
from .producer import Producer
from .transport import Transport

AUDIO_COST = 40_000  # bits/s counted per forwarded microphone (Opus with headers)
COOLING = 4.0  # seconds during which a video lowered is not raised again
RECOVERED = 1.25  # ... unless its subscriber's estimate has grown this much since
DYNACAST_DELAY = 5.0  # seconds a layer must stay unwanted before its publisher stops encoding it
LOSS_HIGH = 0.1  # fraction lost (receiver reports) above which the estimate is lowered
PROBE_LOSS = 0.05  # fraction lost (receiver reports) during a probe that makes it fail
PROBE_STEP = 1.25  # a first probe sends this times what the subscriber uses; each success, this times more
PROBE_STEP_MAX = 2.0
PROBE_STEP_AFTER_FAILURE = 1.1  # a link found full is probed again more gently
PROBE_MARGIN = 1.2  # ... and never more than this times what the subscriber wants
PROBE_FALL = 0.9  # an estimate falling under this fraction of its value at the start ends a probe
# Seconds a probe lasts before it counts as a success: the core's estimate takes what arrived
# within a few feedbacks (sfu/core/bwe.py); a browser's REMB needs a few seconds to follow.
PROBE_TIME = 0.5
PROBE_TIME_REMB = 4.0
PROBE_AGAIN = 1.0  # seconds from a successful probe (or a subscriber's start) to the next
PROBE_BACKOFF = 1.0  # seconds from a failed probe to the next, doubling on each failure
PROBE_BACKOFF_MAX = 4.0
BACKLOG = 0.1  # seconds of the estimate held by a subscriber's pacer, beyond which nothing is raised
REPAIR_WINDOW = 1.0  # seconds over which the retransmissions sent to a subscriber are measured
KEYFRAME_SECONDS = 0.35  # a keyframe weighs about this many seconds of its layer's bitrate
KEYFRAME_BURST = 0.3  # seconds of a subscriber's estimate that keyframes asked in one round may take
RAISE_BURST = 0.5  # ... and the most one raise's keyframe may take (the picture waits for it)
Layers = tuple[tuple[int, ...], ...]  # per spatial layer, the bitrate with temporal layers 0..t
TEMPORAL_SHARES = (0.5, 0.75, 1.0)  # a paused layer's nominal bitrate split by temporal layer


@dataclass(slots=True)
class Wanted:
    """One video a subscriber receives, as the room ranks it: its priority and the spatial layer
    its tile needs (None: not chosen, or muted, so it costs nothing)."""

    consumer: LayeredConsumer
    priority: int
    max_spatial: int | None


@dataclass(slots=True)
class Subscriber:
    """One subscriber's round input: its transport and videos, and the audio it is sent (bits/s)."""

    id: str
    transport: Transport
    videos: list[Wanted]
    audio: int = 0


@dataclass(slots=True)
class Downlink:
    """One subscriber's probing state."""

    backoff: float = PROBE_BACKOFF
    next_at: float = 0.0
    until: float | None = None  # a probe in progress ends then
    ceiling: int = 0  # the estimate a probe by media allows (0: probing by padding)
    started_with: int = 0  # the estimate when the probe began
    step: float = PROBE_STEP  # how much more than it uses the next probe tries
    resent: int = 0  # the transport's retransmitted bytes when last measured
    resent_at: float = 0.0
    repair: int = 0  # bits/s of retransmissions lately: the link carries them besides the layers

    def fail(self, now: float) -> None:
        """The step was too much: back at once, wait longer before the next, try less."""
        self.until = None
        self.backoff = min(self.backoff * 2, PROBE_BACKOFF_MAX)
        self.next_at = now + self.backoff
        self.step = PROBE_STEP_AFTER_FAILURE

    def succeed(self, now: float) -> None:
        """The link carried it: try again soon, and more (the estimate grows by steps that grow,
        as GCC's probes do, so a link that recovered is found in a few seconds)."""
        self.until = None
        self.backoff = PROBE_BACKOFF
        self.next_at = now + PROBE_AGAIN
        self.step = min(self.step * PROBE_STEP, PROBE_STEP_MAX)


@dataclass
class RoomBandwidth:
    """One class's allocation state; `run` is one round."""

    room_budget: int | None = None  # bits/s for all the class's subscribers together
    max_downlink: int | None = None  # the operator's cap on one subscriber's estimate
    nominal: Mapping[str, int] = field(default_factory=dict)  # a simulcast layer's bitrate by rid, while stopped
    downlinks: dict[str, Downlink] = field(default_factory=dict)
    # (subscriber, track) -> when lowered, and the subscriber's estimate then
    lowered: dict[tuple[str, str], tuple[float, int | None]] = field(default_factory=dict)
    wanted_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (track, rid) -> last wanted
    active: dict[str, tuple[str, ...]] = field(default_factory=dict)  # track -> rids its publisher sends
    last: Allocation | None = None
    estimated: int = 0  # sums over the class, for the metrics
    allocated: int = 0

    def run(
        self, subscribers: Iterable[Subscriber], producers: Iterable[Producer], now: float
    ) -> dict[str, tuple[str, ...]]:
        """Allocate and apply; returns the simulcast tracks whose publisher must now send other
        layers (track -> rids)."""
        videos = [p for p in producers if p.kind is Kind.VIDEO and not p.closed]
        measured = {p.id: p.layer_bitrates(now) for p in videos}  # once a round: it is not free
        bitrates = {p.id: self._layers(p, measured[p.id]) for p in videos}
        rows: list[Subscription] = []
        consumers: dict[tuple[str, str], LayeredConsumer] = {}
        essential: set[tuple[str, str]] = set()
        busy: set[str] = set()  # subscribers whose pacer holds a backlog
        estimates: dict[str, int] = {}
        audio: dict[str, int] = {}
        transports: dict[str, Transport] = {}
        for sub in subscribers:
            if not sub.videos:
                continue
            transports[sub.id] = sub.transport
            audio[sub.id] = sub.audio
            downlink = self.downlinks.get(sub.id)
            if downlink is None:
                downlink = self.downlinks[sub.id] = Downlink(next_at=now + PROBE_AGAIN, resent_at=now)
            estimate = self._estimate(sub, downlink, now)
            sub.transport.estimate = estimate  # bounds its retransmissions too
            if estimate is not None:
                # What is resent takes room from the layers (libwebrtc lowers its encoder's target
                # by its protection overhead): on a full link, retransmissions would otherwise keep
                # it full, and a full link loses more.
                estimates[sub.id] = max(estimate - downlink.repair, estimate // 2)
                # Nothing is raised while the pacer holds more than BACKLOG of the estimate (a
                # raise adds a keyframe to a queue that has not drained the last one).
                pacer = sub.transport.pacer
                if pacer is not None and pacer.queued * 8 > estimate * BACKLOG:
                    busy.add(sub.id)
            priorities = sub.transport.priorities
            priorities.clear()
            for video in sub.videos:
                consumer = video.consumer
                priorities[consumer.ssrc] = video.priority
                if consumer.rtx_ssrc is not None:
                    priorities[consumer.rtx_ssrc] = video.priority
                track = consumer.producer.id
                if track not in bitrates:
                    continue
                consumers[(sub.id, track)] = consumer
                if video.priority >= ESSENTIAL:
                    essential.add((sub.id, track))
                current = None if consumer.paused else consumer.target_layers  # paused: resuming is going up
                rows.append(Subscription(sub.id, track, video.priority, video.max_spatial, bitrates[track], current))
        cooling = frozenset(
            key
            for key, (at, then) in self.lowered.items()
            if now - at < COOLING and (then is None or key[0] not in estimates or estimates[key[0]] < then * RECOVERED)
        ) | frozenset(key for key in consumers if key[0] in busy)
        allocation = allocate(rows, self._with_probes(estimates), audio, self.room_budget, cooling)
        self._apply(allocation, consumers, estimates, essential, measured, now)
        self._probe(allocation, estimates, transports, now)
        changed = self._dynacast([p for p in videos if p.simulcast], allocation, now)
        for sub_id in [s for s in self.downlinks if s not in transports]:
            del self.downlinks[sub_id]
        self.last = allocation
        self.allocated = sum(allocation.used.values())
        self.estimated = sum(estimates.values())
        return changed

    def _layers(self, producer: Producer, measured: Layers) -> Layers:
        """Measured bitrates, with the nominal ones of the layers dynacast stopped (they can resume)."""
        active = self.active.get(producer.id)
        if not producer.simulcast or active is None:
            return measured
        layers = []
        for rid, bitrates in zip(producer.rids, measured, strict=True):
            if rid not in active:
                nominal = self.nominal.get(rid, 0)
                bitrates = tuple(int(nominal * share) for share in TEMPORAL_SHARES)
            layers.append(bitrates)
        return tuple(layers)

    def _estimate(self, sub: Subscriber, downlink: Downlink, now: float) -> int | None:
        """The estimate to allocate by (None: unknown, no limit); a probe that meets loss or a
        falling estimate ends here."""
        transport = sub.transport
        if now - downlink.resent_at >= REPAIR_WINDOW:
            downlink.repair = int((transport.resent_bytes - downlink.resent) * 8 / (now - downlink.resent_at))
            downlink.resent, downlink.resent_at = transport.resent_bytes, now
        bwe = transport.bwe
        estimate = bwe.estimate if bwe is not None and bwe.feedbacks else transport.remb
        loss = max((v.consumer.fraction_lost for v in sub.videos if not v.consumer.paused), default=0) / 256
        if loss > LOSS_HIGH and self.last is not None:
            used = self.last.used.get(sub.id)
            if used is not None:
                lowered = int(used * (1 - loss / 2))
                estimate = lowered if estimate is None else min(estimate, lowered)
        if downlink.until is not None:
            fell = estimate is not None and estimate < downlink.started_with * PROBE_FALL
            if loss > PROBE_LOSS or fell or transport.probe_failed:
                downlink.fail(now)
                transport.stop_probe()
        transport.probe_failed = False
        if self.max_downlink is not None:
            estimate = self.max_downlink if estimate is None else min(estimate, self.max_downlink)
        return estimate

    def _with_probes(self, estimates: dict[str, int]) -> dict[str, int]:
        """The estimates, raised for the subscribers probing by media (never above the operator's cap)."""
        raised = dict(estimates)
        for sub, downlink in self.downlinks.items():
            if downlink.until is not None and downlink.ceiling and sub in raised:
                ceiling = downlink.ceiling if self.max_downlink is None else min(downlink.ceiling, self.max_downlink)
                raised[sub] = max(raised[sub], ceiling)
        return raised

    def _probe(
        self, allocation: Allocation, estimates: dict[str, int], transports: dict[str, Transport], now: float
    ) -> None:
        """End the probes that lasted without trouble; start one for a subscriber held below its wish."""
        for sub, estimate in estimates.items():
            downlink = self.downlinks[sub]
            if downlink.until is not None:
                if now >= downlink.until:
                    downlink.succeed(now)
                continue
            wanted = allocation.wanted.get(sub, 0)
            capped = self.max_downlink is not None and estimate >= self.max_downlink
            if wanted <= estimate or now < downlink.next_at or capped:
                continue
            transport = transports[sub]
            used = allocation.used.get(sub, 0)
            target = int(min(max(used, estimate) * downlink.step, wanted * PROBE_MARGIN))
            if self.max_downlink is not None:
                target = min(target, self.max_downlink)
            feedback = transport.bwe is not None and transport.bwe.feedbacks
            downlink.until = now + (PROBE_TIME if feedback else PROBE_TIME_REMB)
            downlink.started_with = estimate
            padded = transport.start_probe(max(target - used, 0), downlink.until, now)
            downlink.ceiling = 0 if padded else target

    def _apply(
        self,
        allocation: Allocation,
        consumers: dict[tuple[str, str], LayeredConsumer],
        estimates: dict[str, int],
        essential: set[tuple[str, str]],
        measured: Mapping[str, Layers],
        now: float,
    ) -> None:
        # Keyframes a subscriber may be sent this round, in bytes (see KEYFRAME_BURST), less
        # those it still waits for: on a slow link, three keyframes asked at once arrive after all
        # three, and all three pictures wait. The most important switch goes first.
        keyframes = {sub: estimate * KEYFRAME_BURST / 8 for sub, estimate in estimates.items()}
        for (sub, _), consumer in consumers.items():
            if sub in keyframes:
                keyframes[sub] -= self._keyframe(consumer, measured)
        for key, layers in allocation.layers.items():
            consumer = consumers[key]
            if consumer.pause_reasons - {"bandwidth"}:
                consumer.set_paused("bandwidth", False, now)  # held for another reason: not ours to hold
                continue
            if layers is None:
                if "bandwidth" not in consumer.pause_reasons and not consumer.paused:
                    self.lowered[key] = (now, estimates.get(key[0]))
                consumer.set_paused("bandwidth", True, now)
                continue
            before = consumer.target_layers
            resuming = "bandwidth" in consumer.pause_reasons
            if not resuming and layers == before:
                continue
            estimate = estimates.get(key[0])
            current = consumer.current_layers
            down = not resuming and layers < before
            at_once = down and estimate is not None and current is not None and layers[0] < current[0]
            if at_once and current is not None:  # only when what it is sent now exceeds the whole link
                forwarded = measured[key[1]][current[0]]
                at_once = bool(forwarded) and forwarded[min(current[1], len(forwarded) - 1)] > (estimate or 0)
            if key[0] in keyframes and (resuming or layers[0] != before[0]):
                left = keyframes[key[0]]
                cost = self._keyframe_cost(consumer, layers[0], measured)
                spent = left < estimates[key[0]] * KEYFRAME_BURST / 8  # another keyframe is on its way
                # A raise is a choice: one at a time, never one whose keyframe alone would stop the
                # picture longer than RAISE_BURST (the old layer stops when the new one starts). A
                # resume or a switch down is needed: the first of a round goes, and the essential
                # ones always.
                if not resuming and not down:
                    if spent or cost > estimates[key[0]] * RAISE_BURST / 8:
                        continue
                elif cost > left and spent and (resuming or (at_once and key not in essential)):
                    if at_once:  # the link cannot carry it and has no room for a keyframe: nothing
                        self.lowered[key] = (now, estimate)
                        consumer.set_paused("bandwidth", True, now)
                        consumer.drop_queued()
                    continue  # raised or resumed in a later round, once the others have theirs
                keyframes[key[0]] = left - cost
            if resuming:
                consumer.set_layers(*layers, now)
                consumer.set_paused("bandwidth", False, now)
                continue
            if down:
                self.lowered[key] = (now, estimate)
            consumer.set_layers(*layers, now, at_once=at_once)
        for key in [k for k in self.lowered if k not in allocation.layers]:
            del self.lowered[key]

    def _keyframe(self, consumer: LayeredConsumer, measured: Mapping[str, Layers]) -> float:
        """The bytes of the keyframe a consumer still waits for (0: none)."""
        if consumer.paused:
            return 0.0
        target, current = consumer.target_layers, consumer.current_layers
        if current is not None and current[0] == target[0]:
            return 0.0
        return self._keyframe_cost(consumer, target[0], measured)

    def _keyframe_cost(self, consumer: LayeredConsumer, spatial: int, measured: Mapping[str, Layers]) -> float:
        """What a keyframe of one spatial layer weighs, in bytes: KEYFRAME_SECONDS of its bitrate
        (the nominal one of a simulcast layer: a keyframe is sized by the encoder's target)."""
        producer = consumer.producer
        bitrate = self.nominal.get(producer.rids[spatial], 0) if producer.simulcast else 0
        if not bitrate:
            layers = measured[producer.id]
            bitrate = layers[spatial][-1] if spatial < len(layers) and layers[spatial] else 0
        return bitrate * KEYFRAME_SECONDS / 8

    def _dynacast(self, producers: list[Producer], allocation: Allocation, now: float) -> dict[str, tuple[str, ...]]:
        by_id = {p.id: p for p in producers}
        for (_, track), layers in allocation.layers.items():
            producer = by_id.get(track)
            if layers is not None and producer is not None:
                self.wanted_at[(track, producer.rids[layers[0]])] = now
        changed: dict[str, tuple[str, ...]] = {}
        for producer in producers:
            if producer.id not in self.active:  # a new track: every layer gets the delay to be wanted
                for rid in producer.rids:
                    self.wanted_at.setdefault((producer.id, rid), now)
            active = tuple(
                rid
                for index, rid in enumerate(producer.rids)
                if index == 0 or now - self.wanted_at.get((producer.id, rid), float("-inf")) < DYNACAST_DELAY
            )
            if self.active.get(producer.id, producer.rids) != active:
                changed[producer.id] = active
            self.active[producer.id] = active
        for track in [t for t in self.active if t not in by_id]:
            del self.active[track]
        for key in [k for k in self.wanted_at if k[0] not in by_id]:
            del self.wanted_at[key]
        return changed

    def paused_layers(self, producers: Mapping[str, Producer]) -> int:
        """Simulcast layers that publishers of this class were told to stop."""
        return sum(len(producers[t].rids) - len(a) for t, a in self.active.items() if t in producers)

    def departed(self, subscriber: str) -> None:
        self.downlinks.pop(subscriber, None)
        for key in [k for k in self.lowered if k[0] == subscriber]:
            del self.lowered[key]


def audio_cost(transport: Transport) -> int:
    """What the microphones forwarded to a subscriber cost, as the allocator counts them."""
    return AUDIO_COST * sum(1 for c in set(transport.consumers.values()) if c.kind is Kind.AUDIO and not c.paused)
