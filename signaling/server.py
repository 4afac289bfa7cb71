"""The live classes of this process, and what each remembers between its participants' visits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from sfu.adapter.ice import IceOutcomes
from sfu.adapter.load import LoadMonitor
from sfu.adapter.network import MediaNetwork
from sfu.core import MediaStats
from sfu.core.overload import LoadShedder

from .classroom import ClassSession
from .config import Settings
from .directory import ClassCommand, DirectoryUnavailable, NodeState, make_directory
from .events import ClassEvents, Event
from .metrics import make_registry
from .protocol import ProtocolError
from .room import Room

log = logging.getLogger(__name__)


async def _any_account(account_id: str) -> bool:
    return True


class ClassServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = MediaStats()
        self.ice = IceOutcomes()
        self.network = MediaNetwork(
            tuple(settings.media_addresses),
            settings.media_port_min,
            settings.media_port_max,
            settings.media_announced_address,
            settings.media_port,
        )
        self.shedder = LoadShedder()
        self.monitor = LoadMonitor(self.shedder, self.network, self._shed_changed)
        self._shed_level = self.shedder.level
        self.rooms: dict[str, Room] = {}
        # Outlives a room that empties for a moment, so that a removed student stays out; dropped when
        # the class ends or has been empty for class_idle_seconds.
        self.sessions: dict[str, ClassSession] = {}
        # Which node hosts each class: this one only, or the nodes sharing a Redis server. Whether
        # this node takes new classes (ready, draining) is the directory's state.
        self.directory = make_directory(settings, self)
        # SIGTERM: every participant was told to rejoin, and no join is taken (signaling/stopping.py).
        self.stopping = False
        self._in_directory = False
        self.events = ClassEvents()  # one log line per class event, counted (signaling/events.py)
        # Whether the account a join token names is still neither suspended nor deleted (the app
        # asks the database; a server without accounts, as in the core's tests, lets every one in).
        self.account_usable: Callable[[str], Awaitable[bool]] = _any_account
        self.registry = make_registry(
            self.stats,
            self.census,
            self.bandwidth,
            self.ice,
            self.load,
            self.directory,
            self.flags,
            self.events,
            self.headcount,
        )
        self.sockets: Counter[str] = Counter()  # open signaling WebSockets by client address
        self._moving: set[str] = set()  # classes ending here because another node hosts them now

    async def apply_lobby(self, class_id: str, lobby: bool) -> None:
        """The class's lobby setting changed in the dashboard: a live lesson follows it at once,
        on whichever node hosts it."""
        await self._apply_lobby_here(class_id, lobby)
        await self._forward(class_id, ClassCommand.LOBBY_ON if lobby else ClassCommand.LOBBY_OFF)

    async def _apply_lobby_here(self, class_id: str, lobby: bool) -> None:
        room = self.rooms.get(class_id)
        if room is not None and room.state.lesson and room.state.lobby != lobby:
            await room.set_lobby(lobby)
            self.remember(class_id)

    async def _forward(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        try:
            await self.directory.forward(class_id, command, identity)
        except DirectoryUnavailable:
            log.warning("could not send %s to the node hosting class %s: no directory", command, class_id)

    # What the directory asks of this node's classes (directory.Host)

    def hosted(self) -> dict[str, int]:
        counts = dict.fromkeys(self.sessions, 0)
        counts.update((class_id, len(room.participants)) for class_id, room in self.rooms.items())
        return counts

    def forwarded_packets(self) -> int:
        return self.stats.rtp_forwarded

    async def lose(self, class_id: str) -> None:
        """Another node hosts the class now: its participants here rejoin there (wrong_node). The
        class's decisions stay where that node reads them."""
        room = self.rooms.get(class_id)
        if room is not None:
            self._moving.add(class_id)
            try:
                await room.end(
                    ProtocolError("wrong_node", "this class is now hosted by another server", fatal=True), "moved"
                )
            finally:
                self._moving.discard(class_id)
        self.sessions.pop(class_id, None)

    # What the classes' teachers decided, shared with the other nodes (directory/sessions.py)

    async def recall(self, class_id: str) -> None:
        """A class arriving here that this node does not know: it takes it up as the node that
        hosted it before left it (bans, lobby decisions, locks, holds)."""
        if class_id in self.sessions:
            return
        saved = await self.directory.sessions.recall(class_id)
        if saved is None or class_id in self.sessions:
            return
        try:
            self.sessions[class_id] = ClassSession.restore(class_id, saved)
        except ValueError:
            log.warning("dropped a malformed snapshot of class %s", class_id)

    def remember(self, class_id: str) -> None:
        """After anything that may have changed a class's decisions (a message, a departure). Not
        once the node stops: its classes move with the decisions they had then, not with the
        lessons ending here as their participants leave for the next node."""
        state = self.sessions.get(class_id)
        if state is not None and not self.stopping:
            self.directory.sessions.remember(class_id, state.snapshot())

    async def obey(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        if command in (ClassCommand.END, ClassCommand.END_ADMIN):
            await self._end_here(class_id, "admin" if command is ClassCommand.END_ADMIN else "deleted")
        elif command is ClassCommand.EXPEL:
            if identity is not None:
                await self._expel_here(class_id, identity)
        else:
            await self._apply_lobby_here(class_id, command is ClassCommand.LOBBY_ON)

    # Draining and stopping

    def flags(self) -> tuple[bool, bool]:
        """Whether this node takes no new class, and whether it stops (metrics)."""
        return self.directory.state is NodeState.DRAINING, self.stopping

    def node_state(self) -> str:
        """ready, draining, or stopping (/readyz, `classe drain`)."""
        return "stopping" if self.stopping else self.directory.state.value

    def refusal(self, class_id: str) -> str | None:
        """Why a participant's join to this class is refused here, or None: the node stops (nobody
        joins), or it drains and the class is not one of those it keeps."""
        if self.stopping:
            return "server_stopping"
        if self.directory.state is NodeState.DRAINING and class_id not in self.hosted():
            return "server_draining"
        return None

    async def leave_directory(self) -> None:
        """Once: with Redis, the classes hosted here are free at once, to reopen on another node."""
        if self._in_directory:
            self._in_directory = False
            await self.directory.stop()

    def census(self) -> tuple[int, int, int]:
        rooms = list(self.rooms.values())
        return (
            len(rooms),
            sum(len(r.participants) for r in rooms),
            sum(len(r.live.session.producers) for r in rooms),
        )

    def headcount(self) -> tuple[Counter[str], int]:
        """Participants by role, and the people waiting in lobbies or for a teacher (metrics)."""
        rooms = list(self.rooms.values())
        roles = Counter(p.role.value for room in rooms for p in room.participants.values())
        return roles, sum(len(room.lobby) for room in rooms)

    def bandwidth(self) -> list[tuple[str, int, int, int]]:
        """Per live class: allocated and estimated bits/s, simulcast layers stopped (metrics)."""
        return [
            (class_id, a.allocated, a.estimated, a.paused_layers())
            for class_id, room in list(self.rooms.items())
            for a in (room.forwarding.allocator,)
        ]

    def load(self) -> tuple[int, int, int, int]:
        """The shedding level, how often it was raised, the subscriptions it holds now, and the
        datagrams the kernel dropped at the media port (metrics)."""
        return self.shedder.level, self.shedder.raised, self._shed(), self.network.kernel_drops()

    def _shed(self) -> int:
        return sum(
            1
            for room in list(self.rooms.values())
            for transport in room.live.session.transports.values()
            for consumer in set(transport.consumers.values())
            if "overload" in consumer.pause_reasons
        )

    def _shed_changed(self) -> None:
        """The process sheds more, or less: every class chooses again and tells its pages. A level
        that sheds nothing more here (no student's camera to stop, say) is passed at once: the
        backlog would grow for nothing while it had its time."""
        while True:
            raised = self.shedder.level > self._shed_level and bool(self.rooms)
            before = self._shed() if raised else 0
            for room in list(self.rooms.values()):
                room.forwarding.reshed()
            self._shed_level = self.shedder.level
            if not (raised and self._shed() == before and self.shedder.skip(asyncio.get_running_loop().time())):
                return

    def room(self, class_id: str) -> Room:
        room = self.rooms.get(class_id)
        if room is None:
            state = self.sessions.get(class_id)
            if state is None:
                state = self.sessions[class_id] = ClassSession(class_id)
            room = self.rooms[class_id] = Room(
                state, self.settings, self.stats, self._forget, self.network, self.shedder, self.ice, self.events
            )
            self.events.emit(Event.CLASS_OPENED, class_id)
        return room

    def _forget(self, room: Room) -> None:
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]
        if room.ended:
            self.sessions.pop(room.id, None)
            if room.id not in self._moving:
                self.directory.sessions.forget(room.id)  # a teacher ended it: removals end too

    def expire_sessions(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        idle = [
            class_id
            for class_id, state in self.sessions.items()
            if class_id not in self.rooms
            and state.emptied_at is not None
            and now - state.emptied_at > self.settings.class_idle_seconds
        ]
        for class_id in idle:
            del self.sessions[class_id]
        return len(idle)

    async def end(self, class_id: str, reason: str = "deleted") -> None:
        """The class was deleted (or an administrator ended it: `reason`, for the log): it ends for
        everyone, on whichever node hosts it."""
        await self._end_here(class_id, reason)
        await self._forward(class_id, ClassCommand.END_ADMIN if reason == "admin" else ClassCommand.END)

    async def expel(self, class_id: str, identity: str) -> None:
        """An account was suspended or deleted: whoever comes as it leaves the class at once, on
        whichever node hosts it (a class of another teacher's that it co-teaches or attends)."""
        await self._expel_here(class_id, identity)
        await self._forward(class_id, ClassCommand.EXPEL, identity)

    async def _expel_here(self, class_id: str, identity: str) -> None:
        room = self.rooms.get(class_id)
        if room is not None:
            await room.expel(identity, ProtocolError("account_disabled", "this account was suspended", fatal=True))

    async def _end_here(self, class_id: str, reason: str = "deleted") -> None:
        room = self.rooms.get(class_id)
        if room is not None:
            await room.end(reason=reason)
        self.sessions.pop(class_id, None)
        self.directory.sessions.forget(class_id)

    async def open(self) -> None:
        """Bind the shared media port (a port in use stops the server at start-up), start
        measuring the load, and register in the class directory."""
        await self.network.open(self.stats)
        if self.settings.shed_under_load and self.network.shared is not None:
            self.monitor.start()  # with a socket per connection, the backlog cannot be seen
        await self.directory.start()
        self._in_directory = True

    async def close(self) -> None:
        await self.leave_directory()
        for room in list(self.rooms.values()):
            await room.close()
        await self.directory.close()
        self.monitor.stop()
        self.network.close()
