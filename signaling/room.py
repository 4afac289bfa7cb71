"""A live class on this server: who is in, who waits in the lobby, and who receives which track."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCIceServer

from sfu.adapter.ice import IceOutcomes
from sfu.adapter.live import LiveSession
from sfu.adapter.network import MediaNetwork
from sfu.adapter.peer import PeerTransport
from sfu.core import MediaStats, Producer
from sfu.core.overload import LoadShedder
from sfu.core.speakers import SpeakerDetector

from .classroom import Arrival, ClassSession
from .config import Settings
from .events import ClassEvents, Event
from .forwarding import Forwarding
from .participant import Participant, track_info
from .protocol import ProtocolError, encode
from .tokens import JoinGrant, Role
from .turn import turn_server

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger(__name__)


class Room:
    """A live class. Its media session is the isolation boundary for its packets."""

    def __init__(
        self,
        state: ClassSession,
        settings: Settings,
        stats: MediaStats,
        on_empty: Callable[[Room], None],
        network: MediaNetwork,
        shedder: LoadShedder,
        ice: IceOutcomes | None = None,
        events: ClassEvents | None = None,
    ) -> None:
        self.id = state.class_id
        self.ice = ice or IceOutcomes()  # the process's ICE counts (metrics)
        self.events = events or ClassEvents()  # the process's log of class events
        self.state = state
        self.settings = settings
        # With all audio forwarded (0), the detector still names 3 speakers for the pages.
        speakers = SpeakerDetector(settings.audio_forward_loudest or 3)
        self.live = LiveSession(stats, settings.max_retransmission_bitrate, speakers)
        self.participants: dict[str, Participant] = {}
        self.connections: dict[str, Connection] = {}  # participant id -> its signaling connection
        self.lobby: dict[str, tuple[Connection, JoinGrant, Arrival]] = {}
        self.on_empty = on_empty
        self.ended = False
        self._end_reason: str | None = None  # why the class ends, for its last line (None: left empty)
        self._teacher_away: asyncio.Task[None] | None = None
        self.detached = False
        self.stopping = False  # the server stops: those who leave are moving to another, not away
        self.network = network  # the process's media ports
        self.shedder = shedder  # what the process's load makes every class leave out
        self.ice_servers = [RTCIceServer(s.urls, s.username, s.credential) for s in settings.ice_servers]
        self.max_bitrates = {"camera": settings.camera_max_bitrate, "screen": settings.screen_max_bitrate}
        self.forwarding = Forwarding(self)  # loudest-K audio, last-N video, thumbnail caps

    def new_peer(
        self,
        transport_id: str,
        on_producer: Callable[[Producer], Awaitable[None]] | None,
        owner: str = "",
        role: str = "",
    ) -> PeerTransport:
        return PeerTransport(
            self.live,
            transport_id,
            ice_servers=self.ice_servers,
            network=self.network,
            on_producer=on_producer,
            max_bitrates=self.max_bitrates,
            owner=owner,
            role=role,
        )

    def teachers(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role is Role.TEACHER]

    # Arrivals, the lobby and departures

    async def arrive(self, grant: JoinGrant, conn: Connection) -> None:
        """A verified join token: let the newcomer in, make them wait, or refuse them."""
        if self.ended:
            raise ProtocolError("class_ended", "this class has ended", fatal=True)
        try:
            arrival = self.state.arrival(grant)
            await self._replace(grant)
            if arrival is Arrival.ADMIT:
                self.state.check_room(grant.role, len(self.participants), self.settings.max_participants_per_class)
                await self._admit(grant, conn)
            else:
                same_address = sum(1 for c, _, _ in self.lobby.values() if c.address == conn.address)
                self.state.check_lobby_space(
                    len(self.lobby), same_address, self.settings.max_lobby, self.settings.max_lobby_per_address
                )
                await self._wait(grant, conn, arrival)
        except ProtocolError:
            self._check_empty()  # refused in a class nobody is in (removed): it does not stay live for nobody
            raise

    async def _replace(self, grant: JoinGrant) -> None:
        """The same person connecting again (a reload, a network change) takes over from the old connection."""
        old = self.connections.get(grant.participant_id)
        waiting = self.lobby.pop(grant.participant_id, None)
        replaced = ProtocolError("replaced", "this participant connected again from elsewhere", fatal=True)
        if old is not None:
            # A teacher reloading the page is not a teacher leaving: the class is not told they are away.
            await self.dismiss(old, replaced, returning=grant.role is Role.TEACHER)
        if waiting is not None:
            self._left_lobby(waiting[1], replaced.code)
            await waiting[0].end(replaced)
            await self._lobby_changed()

    async def _wait(self, grant: JoinGrant, conn: Connection, arrival: Arrival, notify: bool = True) -> None:
        self.lobby[grant.participant_id] = (conn, grant, arrival)
        conn.waiting_in = self
        self.events.emit(Event.PARTICIPANT_WAITING, self.id, grant.participant_id, grant.role, arrival.value)
        await conn.send(encode("waiting", reason=arrival.value, class_id=self.id))
        if notify and arrival is Arrival.WAIT_IN_LOBBY:
            await self._lobby_changed()

    async def _admit(self, grant: JoinGrant, conn: Connection) -> None:
        if grant.role is Role.TEACHER:
            if not self.state.lesson:
                self.state.start_lesson(grant.lobby)  # the teacher's token is fresh: the class's current setting
            self.state.opened = True
        teacher_back = grant.role is Role.TEACHER and self._stop_teacher_away()
        self.state.let_in(grant)
        self.state.emptied_at = None
        participant = Participant(self, grant, conn.send)
        others = list(self.participants.values())
        self.participants[participant.id] = participant
        self.connections[participant.id] = conn
        conn.waiting_in = None
        conn.participant = participant
        self.events.emit(Event.PARTICIPANT_JOINED, self.id, participant.id, participant.role)
        await conn.send(
            encode(
                "joined",
                participant=participant.describe(),
                class_id=self.id,
                participants=[p.describe() for p in others],
                tracks=[track_info(p) for p in self.live.session.producers.values()],
                ice_servers=self.ice_servers_for(participant),
                state=self.describe_state(),
                chat=[m.describe() for m in self.state.chat],
                lobby=self.lobby_list() if participant.role is Role.TEACHER else None,
            )
        )
        await self.broadcast(encode("participant_joined", participant=participant.describe()), exclude=participant.id)
        if self.live.session.producers:
            participant.renegotiate()
        await self.forwarding.refresh(participant)
        if self.forwarding.speakers:
            await self.send_to(participant, self.forwarding.describe_speakers())
        if teacher_back:
            await self.broadcast(encode("teacher_back"), exclude=participant.id)
        if grant.role is Role.TEACHER:
            await self._reconsider_waiting()

    async def _reconsider_waiting(self) -> None:
        """A teacher opened the class: those waiting for it come in, or go to the lobby."""
        for participant_id, (conn, grant, arrival) in list(self.lobby.items()):
            if arrival is not Arrival.WAIT_FOR_TEACHER:
                continue
            del self.lobby[participant_id]
            try:
                now = self.state.arrival(grant)
            except ProtocolError as exc:
                await self._turn_away(conn, grant, exc)
                continue
            if now is Arrival.ADMIT:
                try:
                    self.state.check_room(grant.role, len(self.participants), self.settings.max_participants_per_class)
                except ProtocolError as exc:
                    await self._turn_away(conn, grant, exc)
                    continue
                await self._admit(grant, conn)
            else:
                await self._wait(grant, conn, now, notify=False)
        await self._lobby_changed()  # once, with everyone who moved to the lobby

    async def _turn_away(self, conn: Connection, grant: JoinGrant, exc: ProtocolError) -> None:
        """Someone who was waiting may not come in after all (refused, removed, the class full)."""
        self.events.emit(Event.JOIN_REFUSED, self.id, grant.participant_id, grant.role, exc.code)
        await conn.end(exc)

    def _left_lobby(self, grant: JoinGrant, reason: str) -> None:
        self.events.emit(Event.PARTICIPANT_LEFT, self.id, grant.participant_id, grant.role, reason)

    def lobby_list(self) -> list[dict[str, str]]:
        return [
            {"id": pid, "name": grant.name}
            for pid, (_, grant, arrival) in self.lobby.items()
            if arrival is Arrival.WAIT_IN_LOBBY
        ]

    async def _lobby_changed(self) -> None:
        message = encode("lobby", waiting=self.lobby_list())
        for teacher in self.teachers():
            await self.send_to(teacher, message)

    async def admit(self, participant_id: str | None) -> int:
        """Let one person (or, with None, everyone) in from the lobby, while the class has room; how many stay."""
        full = 0
        for pid, (conn, grant, arrival) in list(self.lobby.items()):
            if arrival is Arrival.WAIT_IN_LOBBY and participant_id in (None, pid):
                if len(self.participants) >= self.settings.max_participants_per_class:
                    full += 1
                    continue
                del self.lobby[pid]
                await self._admit(grant, conn)
        await self._lobby_changed()
        return full

    async def refuse(self, participant_id: str | None) -> None:
        """Turn away one person (or everyone) waiting; they cannot come straight back during this lesson."""
        for pid, (conn, grant, arrival) in list(self.lobby.items()):
            if arrival is Arrival.WAIT_IN_LOBBY and participant_id in (None, pid):
                del self.lobby[pid]
                self.state.refused.add(grant.identity)
                await self._turn_away(conn, grant, ProtocolError("refused", "a teacher did not let you in", fatal=True))
        await self._lobby_changed()

    async def set_lobby(self, on: bool) -> int:
        """The lobby on or off for this lesson (a teacher's switch, or the class's setting); off lets everyone in."""
        self.state.lobby = on
        full = 0 if on else await self.admit(None)
        await self.broadcast(encode("class_state", state=self.describe_state()))
        return full

    def describe_state(self) -> dict[str, object]:
        return self.state.describe(time.monotonic())

    async def send_to_lobby(self, participant: Participant) -> None:
        conn = self.connections.get(participant.id)
        if conn is None:
            return
        self.state.admitted.discard(participant.id)
        await self._depart(participant, reason="sent_to_lobby")
        conn.participant = None
        await self._wait(participant.grant, conn, Arrival.WAIT_IN_LOBBY)

    async def leave(self, participant: Participant) -> None:
        """The participant left (`leave`, or their connection closed): when the node stops, to
        rejoin on the next one."""
        await self._depart(participant, reason="server_stopping" if self.stopping else "left")
        self._check_empty()

    def ice_servers_for(self, participant: Participant) -> list[dict[str, Any]]:
        """The STUN/TURN servers a participant let in may use: the configured ones, and the
        institution's coturn with credentials of its own that expire (signaling/turn.py)."""
        settings = self.settings
        servers = [s.model_dump(exclude_none=True) for s in settings.ice_servers]
        if settings.turn_urls and settings.turn_secret:
            seconds = settings.turn_credential_seconds
            servers.append(turn_server(settings.turn_urls, settings.turn_secret, participant.id, time.time(), seconds))
        return servers

    async def _depart(self, participant: Participant, returning: bool = False, reason: str = "left") -> None:
        if self.participants.get(participant.id) is not participant:
            return
        del self.participants[participant.id]
        self.events.emit(Event.PARTICIPANT_LEFT, self.id, participant.id, participant.role, reason)
        self.connections.pop(participant.id, None)
        self.forwarding.departed(participant)
        await participant.close()
        await self.broadcast(encode("participant_left", participant_id=participant.id))
        if participant.role is Role.TEACHER and not returning and not self.teachers():
            await self._teacher_left()

    # The teacher away: the students are told, and the lesson ends if no teacher comes back in time

    async def _teacher_left(self) -> None:
        if self.ended or self.stopping or not self.state.lesson or not (self.participants or self.lobby):
            return
        seconds = self.settings.teacher_absence_seconds
        self._stop_teacher_away()
        self.state.teacher_away_until = time.monotonic() + seconds
        self._teacher_away = asyncio.create_task(self._end_without_teacher(seconds))
        self.events.emit(Event.TEACHER_AWAY, self.id, ends_in=round(seconds))
        await self.broadcast(encode("teacher_away", ends_in=round(seconds)))

    def _stop_teacher_away(self) -> bool:
        """A teacher is in again: no more deadline; whether the class was waiting for one."""
        away = self.state.teacher_away_until is not None
        self.state.teacher_away_until = None
        self._cancel_teacher_away()
        return away

    def _cancel_teacher_away(self) -> None:
        if self._teacher_away is not None and self._teacher_away is not asyncio.current_task():
            self._teacher_away.cancel()
        self._teacher_away = None

    async def _end_without_teacher(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._teacher_away = None
        if self.teachers() or self.detached:
            return
        await self._end_for_all(
            ProtocolError("no_teacher", "no teacher came back: the lesson has ended", fatal=True), "no_teacher"
        )

    async def leave_lobby(self, conn: Connection) -> None:
        for pid, entry in list(self.lobby.items()):
            if entry[0] is conn:
                del self.lobby[pid]
                self._left_lobby(entry[1], "server_stopping" if self.stopping else "left")
                if entry[2] is Arrival.WAIT_IN_LOBBY:
                    await self._lobby_changed()
        self._check_empty()

    def _check_empty(self) -> None:
        if self.detached or self.participants:
            return
        # With nobody left the class is no longer open: those who come next wait for a teacher.
        self.state.opened = False
        if not self.lobby:
            self.state.end_lesson()  # left empty: the next lesson starts afresh
            self.state.emptied_at = time.monotonic()
            self._detach()

    def _detach(self) -> None:
        """Leave the server's list of live classes; a late departure must not touch a newer room's state."""
        if not self.detached:
            self.detached = True
            self._cancel_teacher_away()
            self.forwarding.close()
            self.live.close()
            self.on_empty(self)
            if not self.ended:  # end() writes the line once everyone is out
                reason = self._end_reason or ("server_stopping" if self.stopping else "empty")
                self.events.emit(Event.CLASS_ENDED, self.id, reason=reason)

    async def dismiss(self, conn: Connection, exc: ProtocolError, returning: bool = False) -> None:
        """Tell a participant why they are out, then remove them and close their connection."""
        participant = conn.participant
        conn.participant = None
        if participant is not None:
            await self._depart(participant, returning, exc.code)
        await conn.end(exc)

    async def eject(self, participant: Participant, exc: ProtocolError) -> None:
        conn = self.connections.get(participant.id)
        if conn is not None:
            await self.dismiss(conn, exc)
        else:
            await self._depart(participant, reason=exc.code)
        self._check_empty()

    async def ban(self, identity: str) -> None:
        """Remove a person and keep them out for the rest of the class, whatever link or name they use."""
        self.state.banned.add(identity)
        await self.expel(identity, ProtocolError("removed", "a teacher removed you from the class", fatal=True))

    async def expel(self, identity: str, exc: ProtocolError) -> None:
        """Put out whoever comes as `identity` (in the class or waiting), telling them why."""
        for pid, (conn, grant, _) in list(self.lobby.items()):
            if grant.identity == identity:
                del self.lobby[pid]
                await self._turn_away(conn, grant, exc)
        for participant in list(self.participants.values()):
            if participant.grant.identity == identity:
                await self.eject(participant, exc)
        await self._lobby_changed()

    async def end(self, exc: ProtocolError | None = None, reason: str = "teacher") -> None:
        """End the class for everyone (by default: a teacher ended it): the live state (chat,
        removals, locks) goes with it. `reason`: why, for the log."""
        first = not self.ended and not self.detached
        self.ended = True
        self._detach()  # at once: whoever arrives from now on finds a new, unopened class
        await self._end_for_all(exc or ProtocolError("class_ended", "a teacher ended the class", fatal=True), reason)
        if first:
            self.events.emit(Event.CLASS_ENDED, self.id, reason=reason)

    async def _end_for_all(self, exc: ProtocolError, reason: str) -> None:
        self._end_reason = self._end_reason or reason
        for pid in list(self.lobby):
            waiting = self.lobby.pop(pid, None)  # gone if they left meanwhile
            if waiting is not None:
                self._left_lobby(waiting[1], exc.code)
                await waiting[0].end(exc)
        for conn in list(self.connections.values()):
            await self.dismiss(conn, exc, returning=True)
        self._check_empty()

    # Tracks

    async def on_producer(self, producer: Producer) -> None:
        owner = self.participants.get(producer.owner)
        if owner is not None and not owner.forwards(producer.source):
            producer.mute()  # before any await: no packet of a muted participant is ever forwarded
        await self.broadcast(encode("track_published", **track_info(producer)))
        for participant in self.participants.values():
            if owner is None or participant.id != owner.id:
                participant.renegotiate()
        await self.forwarding.refresh()

    async def remove_producer(self, producer: Producer, owner: str) -> None:
        self.live.session.remove_producer(producer)
        for participant in self.participants.values():
            if participant.id != owner:
                participant.renegotiate()
        await self.forwarding.refresh()
        await self.broadcast(encode("track_unpublished", track_id=producer.id, participant_id=owner))

    async def set_enabled(self, participant: Participant, source: str, enabled: bool) -> None:
        """Start or stop forwarding a participant's microphone or camera, in the SFU itself."""
        if participant.enabled.get(source) == enabled:
            return
        participant.enabled[source] = enabled
        now = self.live.now()
        for producer in participant.producers(*participant.switched_by(source)):
            if enabled:
                producer.unmute(now)
            else:
                producer.mute()
        self.live.flush()
        await self.participant_updated(participant)

    async def view_changed(self, participant: Participant) -> None:
        """A participant's page shows other tiles: choose again what it receives."""
        await self.forwarding.refresh(participant)

    async def participant_updated(self, participant: Participant) -> None:
        await self.broadcast(encode("participant_updated", participant=participant.describe()))

    # Messages

    async def broadcast(self, message: str, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude and not participant.closed:
                await self.send_to(participant, message)

    async def send_to(self, participant: Participant, message: str) -> None:
        try:
            await participant.send(message)
        except ConnectionError:
            pass

    async def tell(self, participant: Participant, action: str) -> None:
        """Let a participant know what a teacher did to them, so that their page shows it."""
        await self.send_to(participant, encode("moderated", action=action))

    async def close(self) -> None:
        stopping = ProtocolError("server_stopping", "the server is stopping", fatal=True)
        await self._end_for_all(stopping, "server_stopping")
