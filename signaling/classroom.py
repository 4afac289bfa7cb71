"""The rules of one live class: who gets in, who waits, what students may do. No I/O.

The room (room.py) asks these questions and carries out the answers; keeping the rules here
makes them easy to read in one place and to test without sockets.

A class lives through lessons: a lesson starts when a teacher opens the class and ends when the
class is ended or left empty. What a teacher decided during a lesson (who was let in or refused,
locks, holds, screen permissions, the chat) ends with it; removals outlive it (see server.py).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .protocol import LOCKABLE, ProtocolError
from .tokens import JoinGrant, Role

CHAT_HISTORY = 200
# Students' screen sharing is off until a teacher allows it: a shared screen takes everyone's main view.
LESSON_LOCKS = frozenset({"screen"})


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
    lobby: bool | None = None  # None until the lesson (or, before it, an arrival) brings the class's setting
    lesson: bool = False  # a teacher opened the class and it has not been left empty or ended since
    opened: bool = False  # a teacher opened the class and someone is in
    locked: bool = False
    lobby_locked: bool = False  # newcomers who would wait in the lobby are refused at once
    locks: set[str] = field(default_factory=lambda: set(LESSON_LOCKS))
    banned: set[str] = field(default_factory=set)  # identities removed for the rest of the class
    refused: set[str] = field(default_factory=set)  # identities a teacher turned away this lesson
    admitted: set[str] = field(default_factory=set)  # participant ids let in during this lesson
    # Sources a teacher turned off for one student, who may not turn them back on until allowed.
    held: dict[str, set[str]] = field(default_factory=dict)
    screen_allowed: set[str] = field(default_factory=set)  # students who may share while screen is locked
    chat: deque[ChatMessage] = field(default_factory=lambda: deque(maxlen=CHAT_HISTORY))
    emptied_at: float | None = None
    teacher_away_until: float | None = None  # monotonic deadline while no teacher is in a lesson

    def start_lesson(self, lobby: bool) -> None:
        """A teacher opens the class: the lesson takes the class's current lobby setting."""
        self.lesson = True
        self.lobby = lobby

    def end_lesson(self) -> None:
        """What was decided or said during the lesson ends with it (the next lesson's pupils do not read
        this one's chat); removals do not."""
        self.lesson = self.opened = self.locked = self.lobby_locked = False
        self.lobby = None
        self.locks = set(LESSON_LOCKS)
        self.refused.clear()
        self.admitted.clear()
        self.held.clear()
        self.screen_allowed.clear()
        self.chat.clear()
        self.teacher_away_until = None

    def arrival(self, grant: JoinGrant) -> Arrival:
        """Where a newcomer goes; raises the refusal to send when they may not come in at all."""
        if grant.identity in self.banned:
            raise ProtocolError("removed", "you were removed from this class by a teacher", fatal=True)
        if self.lobby is None:
            self.lobby = grant.lobby
        if grant.role is Role.TEACHER:
            return Arrival.ADMIT
        if grant.identity in self.refused:
            raise ProtocolError("refused", "a teacher did not let you in", fatal=True)
        let_in = grant.participant_id in self.admitted  # reconnecting: stays let in whatever changed since
        if self.locked and not let_in:
            raise ProtocolError("class_locked", "the class is locked: nobody else may join", fatal=True)
        if grant.gated and not self.opened:
            return Arrival.WAIT_FOR_TEACHER
        if self.lobby and not let_in:
            if self.lobby_locked:
                raise ProtocolError("lobby_locked", "a teacher closed the lobby to newcomers", fatal=True)
            return Arrival.WAIT_IN_LOBBY
        return Arrival.ADMIT

    @staticmethod
    def check_room(role: Role, present: int, max_participants: int) -> None:
        """Only those let in count against the class size; a teacher always gets into their class."""
        if role is Role.STUDENT and present >= max_participants:
            raise ProtocolError("class_full", "the class is full", fatal=True)

    @staticmethod
    def check_lobby_space(waiting: int, from_address: int, max_lobby: int, max_per_address: int) -> None:
        """One link holder (one address) cannot fill the lobby, nor everyone together beyond its size."""
        if waiting >= max_lobby or from_address >= max_per_address:
            raise ProtocolError("lobby_full", "too many people are waiting to join this class", fatal=True)

    def let_in(self, grant: JoinGrant) -> None:
        """Someone let in (lobby off, or admitted) stays let in for the rest of the lesson."""
        if grant.role is Role.STUDENT:
            self.admitted.add(grant.participant_id)

    def may_enable(self, role: Role, source: str, participant_id: str) -> bool:
        if role is Role.TEACHER:
            return True
        if source in self.held.get(participant_id, ()):
            return False
        return source not in self.locks or (source == "screen" and participant_id in self.screen_allowed)

    def hold(self, participant_id: str, source: str, held: bool) -> bool:
        """Hold or release one student's source; whether that changed anything."""
        sources = self.held.setdefault(participant_id, set())
        if (source in sources) == held:
            return False
        (sources.add if held else sources.discard)(source)
        return True

    def allow_screen(self, participant_id: str, allowed: bool) -> bool:
        """Give or withdraw one student's permission to share while screen sharing is locked; whether it changed."""
        if (participant_id in self.screen_allowed) == allowed:
            return False
        (self.screen_allowed.add if allowed else self.screen_allowed.discard)(participant_id)
        return True

    def snapshot(self) -> dict[str, object]:
        """What another node needs to carry the class on after a move (signaling/directory/sessions.py): the
        teachers' decisions, not the chat, nor who is in (they rejoin)."""
        return {
            "lesson": self.lesson,
            "lobby": self.lobby,
            "locked": self.locked,
            "lobby_locked": self.lobby_locked,
            "locks": sorted(self.locks),
            "banned": sorted(self.banned),
            "refused": sorted(self.refused),
            "admitted": sorted(self.admitted),
            "held": {pid: sorted(sources) for pid, sources in sorted(self.held.items()) if sources},
            "screen_allowed": sorted(self.screen_allowed),
        }

    @classmethod
    def restore(cls, class_id: str, saved: object) -> ClassSession:
        """The class as another node left it; raises ValueError for anything that is not a snapshot."""
        if not isinstance(saved, dict):
            raise ValueError("a snapshot is an object")
        session = cls(class_id)
        for name in ("lesson", "locked", "lobby_locked"):
            setattr(session, name, _flag(saved.get(name)))
        lobby = saved.get("lobby")
        session.lobby = None if lobby is None else _flag(lobby)
        session.locks = _names(saved.get("locks")) & set(LOCKABLE)
        for name in ("banned", "refused", "admitted", "screen_allowed"):
            setattr(session, name, _names(saved.get(name)))
        held = saved.get("held")
        if not isinstance(held, dict):
            raise ValueError("'held' is an object")
        session.held = {str(pid): _names(sources) & set(LOCKABLE) for pid, sources in held.items()}
        return session

    def describe(self, now: float) -> dict[str, object]:
        away = self.teacher_away_until
        return {
            "locked": self.locked,
            "lobby": bool(self.lobby),
            "lobby_locked": self.lobby_locked,
            "locks": {name: name in self.locks for name in LOCKABLE},
            "teacher_away_ends_in": None if away is None else max(0, round(away - now)),
        }


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("a flag is true or false")
    return value


def _names(value: object) -> set[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("a list of strings")
    return set(value)
