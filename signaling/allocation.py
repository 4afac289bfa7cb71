"""The room's bandwidth, carried out on the live class: the adapter of `sfu.core.bandwidth`.

The core decides (layers per subscriber, probes, dynacast; sfu/core/bandwidth.py and
sfu/core/allocator.py); this module gathers what it needs from the class (priorities from roles,
sources, the speaker and the pin; wishes from each page's tiles), runs it after every choice of
videos, every ALLOCATE_EVERY seconds and as soon as an estimate moves, and tells publishers which
of their simulcast layers anyone receives (`layers`, docs/protocol.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from sfu.adapter.peer import LAYER_BITRATES
from sfu.core import Consumer
from sfu.core.allocator import ACTIVE_SPEAKER, OTHER, PINNED, TEACHER_CAMERA, TEACHER_SCREEN
from sfu.core.bandwidth import RoomBandwidth, Subscriber, Wanted, audio_cost
from sfu.core.layered import LayeredConsumer

from .protocol import encode
from .tokens import Role

if TYPE_CHECKING:
    from sfu.core import Producer

    from .participant import Participant
    from .room import Room

ALLOCATE_EVERY = 1.0  # seconds between two allocations when nothing else triggers one


def wish(width: int) -> int:
    """The spatial layer a tile this wide (css px) needs: quarter, half or full resolution."""
    return 0 if width < 320 else 1 if width < 640 else 2


class RoomAllocator:
    """One class's allocation on the live class: the core's RoomBandwidth, its inputs and its timers."""

    def __init__(self, room: Room) -> None:
        self.room = room
        settings = room.settings
        self.bandwidth = RoomBandwidth(
            room_budget=settings.room_egress_bitrate or None,
            max_downlink=settings.max_downlink_bitrate or None,
            nominal=LAYER_BITRATES,
        )
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
        subscribers = []
        for participant in list(room.participants.values()):
            if participant.closed:
                continue
            transport = participant.subscriber.transport
            videos = [
                Wanted(c, self._priority(participant, c.producer), self._wish(participant, c))
                for c in participant.subscriber.consumers.values()
                if isinstance(c, LayeredConsumer)
            ]
            subscribers.append(Subscriber(participant.id, transport, videos, audio_cost(transport)))
        session = room.live.session
        changed = self.bandwidth.run(subscribers, list(session.producers.values()), room.live.now())
        for track, active in changed.items():
            producer = session.producers.get(track)
            owner = room.participants.get(producer.owner) if producer is not None else None
            if producer is not None and owner is not None and not owner.closed:
                self._spawn(room.send_to(owner, encode("layers", mid=producer.mid, active=list(active))))
        room.live.flush()  # keyframe requests of the switches, probe timers

    @property
    def allocated(self) -> int:
        return self.bandwidth.allocated

    @property
    def estimated(self) -> int:
        return self.bandwidth.estimated

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

    def paused_layers(self) -> int:
        """Simulcast layers that publishers of this class were told to stop."""
        return self.bandwidth.paused_layers(self.room.live.session.producers)

    def departed(self, participant: Participant) -> None:
        self.bandwidth.departed(participant.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
