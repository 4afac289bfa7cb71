"""What each participant of a live class receives: loudest-K audio, last-N video, thumbnail caps,
and what the process sheds when it cannot keep up.

The choices are pure functions of the core (`sfu.core.selection`, `sfu.core.speakers`,
`sfu.core.overload`); this is
where the room carries them out: it pauses and resumes subscribers' consumers, caps cameras that
nobody shows large (REMB), and tells each page what it receives (`videos`) and who speaks
(`speakers`). Rules: docs/protocol.md, "Which videos a participant receives".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from sfu.core import Consumer, Kind, Producer
from sfu.core.events import BandwidthEstimate, Event, SpeakersChanged
from sfu.core.overload import keeps_audio, keeps_video, quarter
from sfu.core.selection import VideoTrack, choose_videos, shown_large

from .allocation import RoomAllocator
from .protocol import encode
from .tokens import Role

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

SPEAKERS_INTERVAL = 0.3  # seconds between two `speakers` messages at most
MAX_RECENT = 300  # speakers remembered for the order of videos


class Forwarding:
    """Per class: the current speakers, and what each subscriber is sent."""

    def __init__(self, room: Room) -> None:
        self.room = room
        settings = room.settings
        self.loudest_k = settings.audio_forward_loudest
        self.last_n = settings.video_last_n
        self.thumbnail_bitrate = settings.thumbnail_bitrate
        self.large_width = settings.large_tile_width
        self.loudest: frozenset[str] = frozenset()  # microphone producer ids forwarded to everyone
        self.speaking: str | None = None  # the microphone producer id of the one speaking now
        self.active: str | None = None  # participant ids, as the pages are told
        self.speakers: tuple[str, ...] = ()
        self.recent: list[str] = []  # participant ids, the most recent speaker first
        self.receiving: dict[str, frozenset[str]] = {}  # participant id -> the videos its page was told of
        self._large: dict[str, set[str]] = {}  # participant id -> cameras it receives and shows large
        self._announced: tuple[str | None, tuple[str, ...]] = (None, ())
        self._announced_at = float("-inf")
        self._announce_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.allocator = RoomAllocator(room)
        self.allocator.start()
        room.live.on_event = self.on_event

    # Carrying out the choice

    def _forward(self, consumer: Consumer, on: bool, kept: bool, now: float) -> None:
        """Pause or resume one consumer for the choice, and for the process's load. A mute is
        another reason, kept apart: the consumer forwards when none holds it (video from a
        keyframe, requested; no jump in numbers)."""
        consumer.set_paused("selection", not on, now)
        consumer.set_paused("overload", not kept, now)

    def _kept_audio(self, producer: Producer) -> bool:
        return keeps_audio(producer.role, producer.id == self.speaking, self.room.shedder.level)

    def _audio_on(self, producer: Producer) -> bool:
        return (
            not self.loudest_k
            or producer.source != "microphone"
            or producer.role == Role.TEACHER.value
            or producer.id in self.loudest
        )

    def _tracks(self) -> dict[str, VideoTrack]:
        return {
            p.id: VideoTrack(p.id, p.owner, p.role, p.source)
            for p in self.room.live.session.producers.values()
            if p.kind is Kind.VIDEO and not p.closed
        }

    def _choose(self, participant: Participant, tracks: dict[str, VideoTrack], now: float) -> str | None:
        """Apply the choice, less what the load sheds, to one subscriber's consumers; its `videos`
        message if what it receives changed."""
        chosen = choose_videos(list(tracks.values()), participant.view, self.recent, self.last_n, participant.id)
        large = shown_large(chosen, participant.view, self.large_width)
        level = self.room.shedder.level
        mine = quarter(participant.id)
        kept = tuple(t for t in chosen if keeps_video(tracks[t], t in large, level, mine)) if level else chosen
        wanted, received = frozenset(chosen), frozenset(kept)
        for consumer in participant.subscriber.consumers.values():
            producer = consumer.producer
            if producer.kind is Kind.VIDEO:
                self._forward(
                    consumer, producer.id in wanted, producer.id in received or producer.id not in wanted, now
                )
            else:
                self._forward(consumer, self._audio_on(producer), self._kept_audio(producer), now)
        self._large[participant.id] = large & received
        if self.receiving.get(participant.id) == received:
            return None
        self.receiving[participant.id] = received
        return encode("videos", receiving=list(kept))

    def _cap_cameras(self) -> None:
        """A student's camera that nobody shows large is asked for a thumbnail's bitrate (REMB); a
        simulcast camera keeps its cap: dynacast stops its layers that nobody receives instead."""
        large = set().union(*self._large.values())
        full = self.room.max_bitrates
        for producer in self.room.live.session.producers.values():
            if producer.kind is not Kind.VIDEO or producer.simulcast:
                continue
            cap = full.get(producer.source, 1_500_000)
            if producer.source == "camera" and producer.role != Role.TEACHER.value and producer.id not in large:
                cap = min(cap, self.thumbnail_bitrate)
            producer.max_bitrate = cap

    def update(self, only: Participant | None = None) -> list[tuple[Participant, str]]:
        """Choose again for everyone (or one subscriber): pause, resume, cap. The messages to send."""
        room = self.room
        now = room.live.now()
        tracks = self._tracks()
        messages = []
        for participant in [only] if only is not None else list(room.participants.values()):
            if participant.closed:
                continue
            message = self._choose(participant, tracks, now)
            if message is not None:
                messages.append((participant, message))
        self._cap_cameras()
        self.allocator.run()  # the layers of what is now chosen; flushes the keyframe requests
        return messages

    def reshed(self) -> None:
        """The process's shedding level moved: choose again now, tell the pages soon."""
        self._spawn(self._send(self.update()))

    async def refresh(self, only: Participant | None = None) -> None:
        """After a view, a track or an arrival: choose again and tell the pages what changed."""
        await self._send(self.update(only))

    def consumer_added(self, participant: Participant, consumer: Consumer) -> None:
        """A new subscription, before its first packet: held at once if the choice leaves it out."""
        if participant.closed:
            return
        producer, now = consumer.producer, self.room.live.now()
        if producer.kind is Kind.VIDEO:  # until the next choice, which follows the new track
            self._forward(consumer, producer.id in self.receiving.get(participant.id, ()), True, now)
        else:
            self._forward(consumer, self._audio_on(producer), self._kept_audio(producer), now)

    def departed(self, participant: Participant) -> None:
        self.allocator.departed(participant)
        self.receiving.pop(participant.id, None)
        self._large.pop(participant.id, None)
        self._cap_cameras()

    # Speakers

    def on_event(self, event: Event) -> None:
        """The core's events, as the adapter hands them over: the speakers, and estimates that moved."""
        if self.room.detached:
            return
        if isinstance(event, SpeakersChanged):
            self.on_speakers(event.active, event.loudest)
        elif isinstance(event, BandwidthEstimate):
            self.allocator.soon()  # a link that dropped is not left full until the next second

    def on_speakers(self, active: str | None, loudest: tuple[str, ...]) -> None:
        """The core's detector changed its mind (producer ids): forward, reorder, announce."""
        self.loudest = frozenset(loudest)
        self.speaking = active
        producers = self.room.live.session.producers
        owners = [producers[p].owner for p in loudest if p in producers]
        self.active = producers[active].owner if active in producers else None
        self.speakers = tuple(dict.fromkeys(owners))
        front = [p for p in (self.active, *self.speakers) if p is not None]
        self.recent = list(dict.fromkeys([*front, *self.recent]))[:MAX_RECENT]
        self._spawn(self._send(self.update()))  # audio, and the videos of the latest speakers
        self._announce()

    def describe_speakers(self) -> str:
        """`speakers`, with `active` null when nobody speaks (encode() would leave it out)."""
        return json.dumps(
            {"type": "speakers", "active": self.active, "loudest": list(self.speakers)}, separators=(",", ":")
        )

    def _announce(self) -> None:
        """Send `speakers` when it changed, at most every SPEAKERS_INTERVAL: the last state wins."""
        if self._announce_timer is not None:
            return
        wait = self._announced_at + SPEAKERS_INTERVAL - self.room.live.now()
        if wait > 0:
            self._announce_timer = self.room.live.loop.call_later(wait, self._announce_now)
        else:
            self._announce_now()

    def _announce_now(self) -> None:
        self._announce_timer = None
        state = (self.active, self.speakers)
        if state == self._announced or self.room.detached:
            return
        self._announced = state
        self._announced_at = self.room.live.now()
        self._spawn(self.room.broadcast(self.describe_speakers()))

    # Sending from callbacks

    async def _send(self, messages: Iterable[tuple[Participant, str]]) -> None:
        for participant, message in messages:
            if not participant.closed:
                await self.room.send_to(participant, message)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self.allocator.close()
        if self._announce_timer is not None:
            self._announce_timer.cancel()
            self._announce_timer = None
        for task in self._tasks:
            task.cancel()
        self.room.live.on_event = None
