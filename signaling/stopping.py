"""A graceful stop (SIGTERM): the node takes no join, tells everyone connected to rejoin, leaves the
class directory so that its classes reopen where the rejoins land, and waits for them to leave.

Draining (`classe drain`) is the directory's state (NodeState.DRAINING): the live classes go on,
no new class is placed here. Stopping goes further: nobody joins, and the classes move.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from .directory import DirectoryUnavailable, NodeState
from .events import Event
from .protocol import encode
from .tokens import Role

if TYPE_CHECKING:
    from .connection import Connection
    from .server import ClassServer

log = logging.getLogger(__name__)

# What a refused join is told to wait before trying again (HTTP Retry-After), in seconds.
RETRY_AFTER_SECONDS = 5
# The rejoins a stopping node asks for: teachers first, so that their class is open again when the
# students arrive; then the students, spread over 20 ms per participant of the node (at most half
# the grace period), so that a thousand pages do not ask for a token in the same instant.
FIRST_REJOIN_MS = 250
TEACHER_LEAD_MS = 500
SPREAD_PER_PARTICIPANT_MS = 20
SEND_TIMEOUT_SECONDS = 1.0  # a page that reads nothing does not hold up the others' warning


def rejoin_delays(teachers: int, students: int, grace: float, rng: random.Random) -> list[int]:
    """The `reconnect_in_ms` of each connection, teachers' first: all within the grace period."""
    spread = min(grace * 1000 / 2, SPREAD_PER_PARTICIPANT_MS * (teachers + students))
    latest = max(0.0, grace * 1000 - FIRST_REJOIN_MS)  # a grace shorter than these delays shortens them
    first = min(FIRST_REJOIN_MS, latest)
    delays = [first] * teachers
    delays += [min(latest, FIRST_REJOIN_MS + TEACHER_LEAD_MS + rng.uniform(0, spread)) for _ in range(students)]
    return [round(d) for d in delays]


async def tell_everyone(server: ClassServer, grace: float, rng: random.Random) -> int:
    """Every participant, and everyone waiting in a lobby, gets `server_stopping` with a delay of
    their own; returns how many were told. From now on, a teacher leaving is not one away."""
    teachers: list[Connection] = []
    students: list[Connection] = []
    for room in list(server.rooms.values()):
        room.stopping = True
        for pid, conn in room.connections.items():
            participant = room.participants.get(pid)
            (teachers if participant is not None and participant.role is Role.TEACHER else students).append(conn)
        students += [conn for conn, _, _ in room.lobby.values()]
    everyone = teachers + students
    delays = rejoin_delays(len(teachers), len(students), grace, rng)
    await asyncio.gather(*(_tell(conn, delay) for conn, delay in zip(everyone, delays, strict=True)))
    return len(everyone)


async def _tell(conn: Connection, delay: int) -> None:
    try:
        await asyncio.wait_for(conn.send(encode("server_stopping", reconnect_in_ms=delay)), SEND_TIMEOUT_SECONDS)
    except (ConnectionError, TimeoutError):
        pass


async def stop(server: ClassServer, grace: float, hurry: asyncio.Event) -> int:
    """Stop taking joins, tell everyone, leave the directory, and wait up to `grace` seconds (or
    until `hurry` is set: a second signal) for them to leave; those still there are then told
    `server_stopping` and closed. Returns how many were."""
    server.stopping = True
    try:
        await server.directory.set_state(NodeState.DRAINING)  # with Redis: at once, for every node
    except DirectoryUnavailable:
        log.warning("stopping: the class directory is unreachable; this node's lease will expire")
    told = await tell_everyone(server, grace, random.Random())
    await server.leave_directory()
    server.events.emit(Event.NODE_STOPPING, participants=told, grace_seconds=grace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while server.rooms and loop.time() < deadline and not hurry.is_set():
        await asyncio.sleep(0.1)
    left = sum(len(room.connections) + len(room.lobby) for room in server.rooms.values())
    for room in list(server.rooms.values()):
        await room.close()
    return left
