"""The rules of one live class: who gets in, who waits, what students may do. No I/O.

The room (room.py) asks these questions and carries out the answers; keeping the rules here
makes them easy to read in one place and to test without sockets.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .protocol import LOCKABLE, ProtocolError
from .tokens import JoinGrant, Role

CHAT_HISTORY = 200


class Arrival(enum.Enum):
    ADMIT = "admit"
    WAIT_FOR_TEACHER = "not_started"
    WAIT_IN_LOBBY = "lobby"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    participant_id: str
    name: str
    text: str
    at: int  # milliseconds since the epoch

    def describe(self) -> dict[str, object]:
        return {"participant_id": self.participant_id, "name": self.name, "text": self.text, "at": self.at}


@dataclass
class ClassSession:
    """What a class remembers while it is live; forgotten when it ends (nothing of it is stored)."""

    class_id: str
    lobby: bool | None = None  # None until the first arrival brings the class's setting
    opened: bool = False
    locked: bool = False
    locks: set[str] = field(default_factory=set)
    banned: set[str] = field(default_factory=set)  # identities removed for the rest of the class
    admitted: set[str] = field(default_factory=set)  # participant ids let in from the lobby
    # Sources a teacher turned off for one student, who may not turn them back on until allowed.
    held: dict[str, set[str]] = field(default_factory=dict)
    chat: deque[ChatMessage] = field(default_factory=lambda: deque(maxlen=CHAT_HISTORY))
    emptied_at: float | None = None

    def arrival(self, grant: JoinGrant) -> Arrival:
        """Where a newcomer goes; raises the refusal to send when they may not come in at all."""
        if grant.identity in self.banned:
            raise ProtocolError("removed", "you were removed from this class by a teacher", fatal=True)
        if self.lobby is None:
            self.lobby = grant.lobby
        if grant.role is Role.TEACHER:
            return Arrival.ADMIT
        if self.locked:
            raise ProtocolError("class_locked", "the class is locked: nobody else may join", fatal=True)
        if grant.gated and not self.opened:
            return Arrival.WAIT_FOR_TEACHER
        if self.lobby and grant.participant_id not in self.admitted:
            return Arrival.WAIT_IN_LOBBY
        return Arrival.ADMIT

    def may_enable(self, role: Role, source: str, participant_id: str) -> bool:
        return role is Role.TEACHER or (source not in self.locks and source not in self.held.get(participant_id, ()))

    def hold(self, participant_id: str, source: str, held: bool) -> bool:
        """Hold or release one student's source; whether that changed anything."""
        sources = self.held.setdefault(participant_id, set())
        if (source in sources) == held:
            return False
        (sources.add if held else sources.discard)(source)
        return True

    def describe(self) -> dict[str, object]:
        return {
            "locked": self.locked,
            "lobby": bool(self.lobby),
            "locks": {name: name in self.locks for name in LOCKABLE},
        }
