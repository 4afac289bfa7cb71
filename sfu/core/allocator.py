"""The room allocator: which layer of which video each subscriber receives, by priority.

A pure function of the class's state, as LiveKit's stream allocator and mediasoup's
`DistributeAvailableOutgoingBitrate` decide, but over the whole room: every subscriber's downlink
estimate bounds what it receives, and an optional room egress budget (a school server on a small
uplink) bounds the sum, spent by priority (the teacher's screen, the teacher's camera, the active
speaker, the pinned participant, the others). Audio is counted first: it is never paused for video.

Steps: every wanted video gets its lowest layer, by priority, while it fits (what does not is
paused, except the teacher's screen and camera, which get their lowest layer over a subscriber's
estimate, though not over the room budget); then, tier by tier, the videos of a tier are raised
one step at a time in turn while the subscriber's estimate and the room budget allow. Going up
needs headroom (`UP_HEADROOM`) and no recent down-switch of that video (`cooling`): layers do not
oscillate; going down is immediate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Priorities, highest first (the room sets one per subscription).
TEACHER_SCREEN = 5
TEACHER_CAMERA = 4
ACTIVE_SPEAKER = 3
PINNED = 2
OTHER = 1
ESSENTIAL = TEACHER_CAMERA  # from this priority up, a video is never paused for bandwidth
UP_HEADROOM = 1.1  # a step above the current layer must leave a tenth of its bitrate spare


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscriber's wish for one video track, and what the track offers.

    `layers[s][t]`: the bitrate of spatial layer s with temporal layers 0..t (0: not flowing);
    `max_spatial`: the highest spatial layer the subscriber's tile needs, None when not wanted;
    `current`: the layers chosen last time (None: paused or new)."""

    subscriber: str
    track: str
    priority: int
    max_spatial: int | None
    layers: tuple[tuple[int, ...], ...]
    current: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """The target layers of every subscription (None: paused), and per subscriber what it uses
    and what it would use if its link allowed everything it wants (the difference is worth a probe)."""

    layers: Mapping[tuple[str, str], tuple[int, int] | None]
    used: Mapping[str, int]
    wanted: Mapping[str, int]


def options(row: Subscription) -> list[tuple[int, int, int]]:
    """The row's choices from cheapest: (spatial, temporal, bitrate), layers not flowing left out."""
    if row.max_spatial is None:
        return []
    found = []
    for spatial, temporals in enumerate(row.layers[: row.max_spatial + 1]):
        for temporal, bitrate in enumerate(temporals):
            if bitrate > 0:
                found.append((spatial, temporal, bitrate))
    return found


def allocate(
    rows: Iterable[Subscription],
    estimates: Mapping[str, int],
    audio: Mapping[str, int] | None = None,
    room_budget: int | None = None,
    cooling: frozenset[tuple[str, str]] = frozenset(),
) -> Allocation:
    """Choose a layer for every subscription within each subscriber's estimate (bits/s; a
    subscriber missing from `estimates` has no limit) and `room_budget` (None: none).
    `cooling`: the subscriptions lowered (or paused) recently, not raised above their current layers."""
    audio = audio or {}
    ordered = sorted(rows, key=lambda r: (-r.priority, r.subscriber, r.track))
    left = {sub: estimates[sub] - audio.get(sub, 0) for sub in {r.subscriber for r in ordered} if sub in estimates}
    room_left = None if room_budget is None else room_budget - sum(audio.values())
    choice: dict[tuple[str, str], int] = {}  # index into options(), for those given a layer
    offered = {(r.subscriber, r.track): options(r) for r in ordered}
    used: dict[str, int] = {}
    wanted: dict[str, int] = {}

    def fits(sub: str, cost: int, essential: bool = False) -> bool:
        """Within the subscriber's estimate (unless essential) and the room's budget (always)."""
        return (essential or sub not in left or cost <= left[sub]) and (room_left is None or cost <= room_left)

    def spend(sub: str, cost: int) -> None:
        nonlocal room_left
        if sub in left:
            left[sub] -= cost
        if room_left is not None:
            room_left -= cost
        used[sub] = used.get(sub, 0) + cost

    for row in ordered:
        key = (row.subscriber, row.track)
        found = offered[key]
        if found:
            wanted[row.subscriber] = wanted.get(row.subscriber, 0) + found[-1][2]
            if row.current is None and key in cooling:
                continue  # paused for bandwidth a moment ago: not resumed yet, or it would flap
            # The teacher's screen and camera are the lesson: their lowest layer goes even over the
            # subscriber's estimate (a stuttering picture beats none), not over the room's budget.
            if fits(row.subscriber, found[0][2], row.priority >= ESSENTIAL):
                choice[key] = 0
                spend(row.subscriber, found[0][2])
    for priority in sorted({r.priority for r in ordered}, reverse=True):
        tier = [r for r in ordered if r.priority == priority and (r.subscriber, r.track) in choice]
        raised = True
        while raised:
            raised = False
            for row in tier:
                key = (row.subscriber, row.track)
                found = offered[key]
                index = choice[key]
                if index + 1 >= len(found):
                    continue
                spatial, temporal, cost = found[index + 1]
                delta = cost - found[index][2]
                above = row.current is None or (spatial, temporal) > row.current
                if above and key in cooling:
                    continue
                if fits(row.subscriber, delta + int(cost * (UP_HEADROOM - 1)) if above else delta):
                    choice[key] = index + 1
                    spend(row.subscriber, delta)
                    raised = True
    layers: dict[tuple[str, str], tuple[int, int] | None] = {}
    for row in ordered:
        key = (row.subscriber, row.track)
        chosen = choice.get(key)
        layers[key] = None if chosen is None else offered[key][chosen][:2]
    for sub in wanted:
        wanted[sub] += audio.get(sub, 0)
        used[sub] = used.get(sub, 0) + audio.get(sub, 0)
    return Allocation(layers, used, wanted)
