"""The class directory's interface: which node hosts each live class, and each node's load and state.

A class lives on one node (its media session cannot be split); the directory says which, so that
whichever node answers `POST /api/join` sends the browser to the right one. Two implementations,
as LiveKit's pkg/routing has: `LocalDirectory` (this process is the only node) and
`RedisDirectory` (several nodes sharing a Redis server).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Settings

if TYPE_CHECKING:
    from ..budgets import SharedBuckets


class NodeState(enum.StrEnum):
    READY = "ready"  # takes new classes
    DRAINING = "draining"  # keeps the classes it hosts, takes no new one


class DirectoryUnavailable(Exception):
    """The shared directory (Redis) did not answer: nobody can say where a class lives."""


class NoReadyNode(Exception):
    """Every node is draining (or none is registered): a class that opens has nowhere to go."""


class ClassCommand(enum.StrEnum):
    """What the HTTP API asks of the node hosting a class, whichever node received the request."""

    END = "end"  # the class was deleted, or its owner's account
    END_ADMIN = "end_admin"  # an administrator ended it, or suspended its owner (the log's reason)
    LOBBY_ON = "lobby_on"  # the class's lobby setting changed
    EXPEL = "expel"  # an account was suspended or deleted: out of the class (with its identity there)
    LOBBY_OFF = "lobby_off"


@dataclass(frozen=True, slots=True)
class NodeLoad:
    participants: int = 0
    packets_per_second: float = 0.0  # RTP packets forwarded
    cpu: float = 0.0  # the process's CPU time over wall time: 1.0 is one core busy


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    url: str  # where browsers reach its signaling (http or https)
    state: NodeState
    load: NodeLoad
    classes: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a class lives: `ws_url` is the WebSocket address to give browsers (None: the page's own origin)."""

    node_id: str
    here: bool
    ws_url: str | None


def ws_address(url: str) -> str:
    """The signaling WebSocket under a node's URL: https://n1.example.org/node/n1 -> wss://n1.example.org/node/n1/ws."""
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/ws"


def ws_origin(url: str) -> str:
    """The origin a page must be allowed to connect to (its Content-Security-Policy) for a node's WebSocket."""
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.split('/', 1)[0]}"


class Host(Protocol):
    """What the directory needs from this node's live classes (the ClassServer)."""

    def hosted(self) -> dict[str, int]:
        """Every class this node remembers, with its participants now (0: emptied, still remembered)."""
        ...

    def forwarded_packets(self) -> int:
        """RTP packets forwarded since the start (the load report takes the rate)."""
        ...

    async def lose(self, class_id: str) -> None:
        """Another node took this class over (this node's lease had lapsed): end it here."""
        ...

    async def obey(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        """Carry out a command another node's HTTP API sent for a class hosted here (`identity`:
        whom EXPEL puts out)."""
        ...


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel a component's background tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()


class SessionStore:
    """What a live class remembers, kept where another node finds it (directory/sessions.py). The
    embedded default: a single node keeps its classes in memory (signaling/server.py)."""

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def recall(self, class_id: str) -> Any:
        """The class's snapshot as the last node hosting it left it, or None."""
        return None

    def remember(self, class_id: str, snapshot: dict[str, object]) -> None:
        """The class's decisions changed (or may have): another node must find them."""

    def forget(self, class_id: str) -> None:
        """A teacher ended the class: its decisions end with it."""

    async def flush(self) -> None:
        """Write what waits: before this node hands its classes over."""


class LoadSampler:
    """Turns the host's counters into rates between two reports."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._at = time.monotonic()
        self._cpu = time.process_time()
        self._packets = host.forwarded_packets()

    def sample(self) -> NodeLoad:
        now, cpu, packets = time.monotonic(), time.process_time(), self.host.forwarded_packets()
        elapsed = max(now - self._at, 1e-3)
        load = NodeLoad(
            participants=sum(self.host.hosted().values()),
            packets_per_second=round((packets - self._packets) / elapsed, 1),
            cpu=round((cpu - self._cpu) / elapsed, 3),
        )
        self._at, self._cpu, self._packets = now, cpu, packets
        return load


class ClassDirectory(ABC):
    """Where classes live. `place` answers the HTTP API (placing a class that opens); `hold` answers
    a WebSocket `join` (is the class this node's?)."""

    kind: str  # "local" or "redis": metrics and /readyz name it

    def __init__(self, settings: Settings, host: Host) -> None:
        self.settings = settings
        self.host = host
        self.node_id = settings.node_id
        self.state = NodeState.READY
        self.sessions = SessionStore()  # the classes' decisions, where another node finds them
        # Read from the shared directory and set aside (metrics): node descriptions that did not
        # parse at the last look, and commands from other nodes dropped as malformed.
        self.malformed_nodes = 0
        self.dropped_commands = 0

    @abstractmethod
    async def start(self) -> None:
        """Register this node, and keep its leases (the node's and its classes') renewed."""

    @abstractmethod
    async def stop(self) -> None:
        """Leave the directory: this node's classes may be placed elsewhere at once. The node may
        still ask where other classes live (a stopping node sends joins to the next one)."""

    async def close(self) -> None:
        """Release the directory's connections, once the node asks nothing more of it."""
        return None

    @abstractmethod
    async def place(self, class_id: str) -> Placement:
        """The node hosting the class; a class that opens goes to the least-loaded ready node.
        Raises NoReadyNode or DirectoryUnavailable."""

    @abstractmethod
    async def hold(self, class_id: str) -> Placement:
        """A participant of the class reached this node: host the class here if no live node does,
        and say which node does. Raises DirectoryUnavailable."""

    @abstractmethod
    async def participants(self, class_ids: Iterable[str]) -> dict[str, int]:
        """The participants in each class of `class_ids` that is live on some node (absent: none)."""

    @abstractmethod
    async def live_classes(self) -> dict[str, tuple[str, int]]:
        """Every class some node hosts now: its node and participants (the administration console).
        Raises DirectoryUnavailable."""

    @abstractmethod
    async def forward(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        """Send a command to the node hosting the class, when it is another node."""

    @abstractmethod
    def nodes(self) -> list[Node]:
        """The nodes as last seen (without waiting): metrics and the pages' connect-src."""

    def connect_origins(self) -> list[str]:
        """The WebSocket origins browsers may be sent to (the pages' connect-src)."""
        return sorted({ws_origin(node.url) for node in self.nodes()})

    def shared_buckets(self) -> SharedBuckets | None:
        """Where the HTTP API's rate limits are counted with the other nodes (None: each process alone)."""
        return None

    @abstractmethod
    async def health(self) -> str | None:
        """None when the directory works, else what is wrong (/readyz)."""

    async def set_state(self, state: NodeState) -> None:
        """Draining: keep the classes hosted here, take no new one."""
        self.state = state
