"""The live class's rules as tables: ClassSession answers without sockets, so every case is one line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signaling.classroom import Arrival, ChatMessage, ClassSession
from signaling.protocol import ProtocolError, decode
from signaling.tokens import JoinGrant, Role


def grant(
    pid: str = "p1", role: Role = Role.STUDENT, identity: str = "browser1", lobby: bool = True, gated: bool = True
) -> JoinGrant:
    return JoinGrant(pid, "c1", role, "Léo", "jti", identity=identity, lobby=lobby, gated=gated)


def lesson(**fields: Any) -> ClassSession:
    """A class whose teacher opened a lesson (with the lobby on unless said otherwise)."""
    state = ClassSession("c1")
    state.start_lesson(fields.pop("lobby", True))
    state.opened = True
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def outcome(state: ClassSession, who: JoinGrant) -> str:
    try:
        return state.arrival(who).value
    except ProtocolError as exc:
        assert exc.fatal
        return exc.code


@pytest.mark.parametrize(
    ("state", "who", "expected"),
    [
        # Before any teacher: everyone but a teacher waits for one.
        (ClassSession("c1"), grant(), "not_started"),
        (ClassSession("c1"), grant(role=Role.TEACHER), "admit"),
        (ClassSession("c1"), grant(gated=False, lobby=False), "admit"),  # dev mode: no gate, no lobby
        # A lesson with the lobby on, then off.
        (lesson(), grant(), "lobby"),
        (lesson(lobby=False), grant(), "admit"),
        # Let in during this lesson: back in whatever changed since (lobby on, class or lobby locked).
        (lesson(admitted={"p1"}), grant(), "admit"),
        (lesson(admitted={"p1"}, locked=True), grant(), "admit"),
        (lesson(admitted={"p1"}, lobby_locked=True), grant(), "admit"),
        (lesson(admitted={"p1"}), grant(pid="p2"), "lobby"),  # another child of the same browser waits
        # Locks.
        (lesson(locked=True), grant(), "class_locked"),
        (lesson(lobby_locked=True), grant(), "lobby_locked"),
        (lesson(lobby=False, lobby_locked=True), grant(), "admit"),  # nobody would wait: the lock is moot
        (lesson(locked=True), grant(role=Role.TEACHER), "admit"),
        # Refused this lesson: that browser or account, under any name; removed: for good.
        (lesson(refused={"browser1"}), grant(pid="p9"), "refused"),
        (lesson(refused={"browser1"}), grant(identity="browser2"), "lobby"),
        (lesson(banned={"browser1"}, admitted={"p1"}), grant(), "removed"),
        (lesson(banned={"browser1"}), grant(role=Role.TEACHER), "removed"),
        # Nobody in (the class closed again) during a lesson: wait for a teacher, even someone let in.
        (lesson(opened=False, admitted={"p1"}), grant(), "not_started"),
    ],
)
def test_arrivals(state: ClassSession, who: JoinGrant, expected: str) -> None:
    assert outcome(state, who) == expected


def test_a_lesson_takes_the_class_setting_and_forgets_its_decisions_but_not_removals() -> None:
    state = ClassSession("c1")
    assert state.arrival(grant(lobby=False)) is Arrival.WAIT_FOR_TEACHER  # a stale token brings lobby off...
    state.start_lesson(lobby=True)  # ...the teacher's fresh one brings the class's current setting
    state.opened = True
    assert state.arrival(grant(lobby=False)) is Arrival.WAIT_IN_LOBBY
    state.let_in(grant())
    state.let_in(grant(pid="t", role=Role.TEACHER))
    assert state.admitted == {"p1"}  # teachers need no admission
    state.refused.add("browser9")
    state.banned.add("browser8")
    state.locked = state.lobby_locked = True
    state.locks = {"chat"}
    state.hold("p1", "microphone", True)
    state.allow_screen("p1", True)
    state.teacher_away_until = 5.0
    state.chat.append(ChatMessage("p1", "Léa", "bonjour", 0))
    state.end_lesson()
    assert (state.lesson, state.opened, state.lobby, state.locked, state.lobby_locked) == (
        False,
        False,
        None,
        False,
        False,
    )
    assert (state.admitted, state.refused, state.held, state.screen_allowed) == (set(), set(), {}, set())
    assert state.locks == {"screen"} and state.teacher_away_until is None and not state.chat
    assert state.banned == {"browser8"}


@pytest.mark.parametrize(
    ("role", "present", "limit", "refused"),
    [(Role.STUDENT, 299, 300, False), (Role.STUDENT, 300, 300, True), (Role.TEACHER, 300, 300, False)],
)
def test_only_those_let_in_fill_the_class(role: Role, present: int, limit: int, refused: bool) -> None:
    if refused:
        with pytest.raises(ProtocolError, match="full") as exc:
            ClassSession.check_room(role, present, limit)
        assert exc.value.code == "class_full" and exc.value.fatal
    else:
        ClassSession.check_room(role, present, limit)


@pytest.mark.parametrize(
    ("waiting", "from_address", "refused"),
    [(0, 0, False), (99, 29, False), (100, 0, True), (45, 30, True)],
)
def test_the_lobby_is_bounded_in_all_and_per_address(waiting: int, from_address: int, refused: bool) -> None:
    if refused:
        with pytest.raises(ProtocolError) as exc:
            ClassSession.check_lobby_space(waiting, from_address, max_lobby=100, max_per_address=30)
        assert exc.value.code == "lobby_full" and exc.value.fatal
    else:
        ClassSession.check_lobby_space(waiting, from_address, max_lobby=100, max_per_address=30)


@pytest.mark.parametrize(
    ("locks", "allowed", "held", "role", "source", "may"),
    [
        (set(), set(), set(), Role.STUDENT, "screen", True),
        ({"screen"}, set(), set(), Role.STUDENT, "screen", False),  # each lesson starts so
        ({"screen"}, {"p1"}, set(), Role.STUDENT, "screen", True),  # allowed one by one
        ({"screen"}, set(), set(), Role.TEACHER, "screen", True),
        ({"microphone"}, {"p1"}, set(), Role.STUDENT, "microphone", False),  # a screen permission is for the screen
        (set(), set(), {"camera"}, Role.STUDENT, "camera", False),
        (set(), set(), {"camera"}, Role.STUDENT, "microphone", True),
    ],
)
def test_what_students_may_turn_on(
    locks: set[str], allowed: set[str], held: set[str], role: Role, source: str, may: bool
) -> None:
    state = lesson(locks=locks, screen_allowed=allowed, held={"p1": held})
    assert state.may_enable(role, source, "p1") is may


def test_state_tells_the_lobby_lock_and_the_time_left_without_a_teacher() -> None:
    state = lesson()
    described = state.describe(now=100.0)
    assert described["lobby_locked"] is False and described["teacher_away_ends_in"] is None
    assert described["locks"] == {"microphone": False, "camera": False, "screen": True, "chat": False}
    state.teacher_away_until = 700.0
    assert state.describe(now=100.4)["teacher_away_ends_in"] == 600
    assert state.describe(now=800.0)["teacher_away_ends_in"] == 0


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("Bonjour !", "Bonjour !"),
        ("abc\u202edcba", "abcdcba"),  # a right-to-left override would reverse what follows
        ("\u2066isolé\u2069 \u202atexte\u202c", "isolé texte"),
        ("une\nligne\tpuis\x00\x07fin\x85", "une ligne puisfin"),
        ("  \u202e\n ", None),  # nothing left: refused
    ],
)
def test_chat_text_loses_control_and_bidi_characters(text: str, sent: str | None) -> None:
    message = json.dumps({"type": "chat", "text": text})
    if sent is None:
        with pytest.raises(ProtocolError, match="non-empty"):
            decode(message)
    else:
        assert decode(message)["text"] == sent


@pytest.mark.parametrize(
    ("message", "decoded"),
    [
        (
            {"action": "allow", "participant_id": "p1", "source": "screen"},
            {"action": "allow", "participant_id": "p1", "source": "screen"},
        ),
        ({"action": "lock_lobby", "value": True}, {"action": "lock_lobby", "value": True}),
        ({"action": "lock_lobby"}, None),
        ({"action": "allow", "participant_id": "p1", "source": "screen_audio"}, None),
        ({"action": "stop_screen", "all": True}, None),  # one student at a time
    ],
)
def test_new_teacher_actions_decode(message: dict[str, Any], decoded: dict[str, Any] | None) -> None:
    text = json.dumps({"type": "moderate", **message})
    if decoded is None:
        with pytest.raises(ProtocolError) as exc:
            decode(text)
        assert exc.value.code == "bad_message" and not exc.value.fatal
    else:
        assert decode(text) == {"type": "moderate", "id": None, **decoded}
