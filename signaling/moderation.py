"""What participants do in class besides media: chat, raised hands, mute, and the teacher's controls.

Every rule is enforced here, on the server: a student's client cannot unmute under a lock, chat
when chat is locked, or use a teacher's action, whatever it sends.
"""

from __future__ import annotations

import time
from typing import Any

from sfu.core.selection import View

from .classroom import ChatMessage
from .participant import Participant
from .protocol import ProtocolError, encode
from .tokens import Role


async def chat(participant: Participant, text: str, ref: Any) -> None:
    room = participant.room
    if not room.state.may_enable(participant.role, "chat", participant.id):
        raise ProtocolError("locked", "a teacher has locked the chat", ref)
    spend(participant, "chat", ref)
    message = ChatMessage(participant.id, participant.name, text, int(time.time() * 1000))
    room.state.chat.append(message)
    await room.broadcast(encode("chat", **message.describe()))


def spend(participant: Participant, kind: str, ref: Any) -> None:
    """Every chat, hand or media message reaches the whole class, and every publish or unpublish makes
    the server negotiate with every subscriber: each kind has a budget per participant."""
    if not participant.limits.take(kind, time.monotonic()):
        raise ProtocolError("rate_limited", "too many messages: wait a few seconds", ref)


async def raise_hand(participant: Participant, raised: bool, ref: Any) -> None:
    spend(participant, "hand", ref)
    if participant.hand != raised:
        participant.hand = raised
        await participant.room.participant_updated(participant)


async def set_media(participant: Participant, source: str, enabled: bool, ref: Any) -> None:
    """A participant turns their own microphone or camera on or off; turning on may be locked."""
    if enabled and not participant.room.state.may_enable(participant.role, source, participant.id):
        raise ProtocolError("locked", f"a teacher has turned off your {source}", ref)
    spend(participant, "media", ref)  # a refusal broadcasts nothing: only what reaches the class is counted
    await participant.room.set_enabled(participant, source, enabled)


async def set_view(participant: Participant, message: dict[str, Any]) -> None:
    """The tiles a participant's page draws now: the room sends them only those videos."""
    if not participant.view_limits.take("view", time.monotonic()):
        raise ProtocolError("rate_limited", "too many views: send the latest one again in a second", message["id"])
    participant.view = View(message["tiles"], message["pinned"], message["audio_only"])
    await participant.room.view_changed(participant)


async def moderate(teacher: Participant, message: dict[str, Any]) -> None:
    room = teacher.room
    ref = message["id"]
    if teacher.role is not Role.TEACHER:
        raise ProtocolError("forbidden", "only a teacher can do this", ref)
    action = message["action"]
    if action == "admit" or action == "refuse":
        if message["participant_id"] is not None and message["participant_id"] not in room.lobby:
            raise ProtocolError("unknown_participant", "nobody with this id is waiting", ref)
        if action == "refuse":
            await room.refuse(message["participant_id"])
        else:
            _still_waiting(await room.admit(message["participant_id"]), ref)
        return
    if action == "lobby":
        _still_waiting(await room.set_lobby(message["value"]), ref)
        return
    if action in ("mute", "camera_off", "allow", "stop_screen", "remove", "to_lobby"):
        single = message["participant_id"] is not None
        for target in _targets(teacher, message["participant_id"], ref):
            await _act_on(target, action, single, message.get("source", ""))
        return
    if action == "lower_hands":
        for participant in list(room.participants.values()):
            if participant.hand:
                participant.hand = False
                await room.participant_updated(participant)
    elif action == "lock":
        for name, locked in message["locks"].items():
            (room.state.locks.add if locked else room.state.locks.discard)(name)
        if message["locks"].get("screen"):
            for participant in list(room.participants.values()):
                if not room.state.may_enable(participant.role, "screen", participant.id):
                    await _stop_screen(participant)  # students the teacher allowed one by one keep sharing
    elif action == "lock_class":
        room.state.locked = message["value"]
    elif action == "lock_lobby":
        room.state.lobby_locked = message["value"]
    elif action == "end":
        await room.end()
        return
    await room.broadcast(encode("class_state", state=room.describe_state()))


def _still_waiting(full: int, ref: Any) -> None:
    """Tell the teacher that some could not be let in: the class is full (they stay in the lobby)."""
    if full:
        raise ProtocolError("class_full", f"the class is full: {full} still waiting in the lobby", ref)


def _targets(teacher: Participant, participant_id: str | None, ref: Any) -> list[Participant]:
    """One participant, or with `all`, every student: a teacher never mutes or removes another teacher."""
    room = teacher.room
    if participant_id is None:
        return [p for p in room.participants.values() if p.role is Role.STUDENT]
    target = room.participants.get(participant_id)
    if target is None:
        raise ProtocolError("unknown_participant", "no participant has this id", ref)
    if target.role is Role.TEACHER and target is not teacher:
        raise ProtocolError("forbidden", "a teacher cannot act on another teacher", ref)
    return [target]


async def _act_on(target: Participant, action: str, single: bool, source: str) -> None:
    """`single`: the teacher named this student, whose source is then held off (not so for `all`)."""
    room = target.room
    if action in ("mute", "camera_off"):
        source = "microphone" if action == "mute" else "camera"
        held = single and target.role is Role.STUDENT and room.state.hold(target.id, source, True)
        if target.enabled[source]:
            await room.set_enabled(target, source, False)
            await room.tell(target, action)
        elif held:
            await room.participant_updated(target)
    elif action == "allow":
        if source == "screen":
            changed = room.state.allow_screen(target.id, True)
        else:
            changed = room.state.hold(target.id, source, False)
        if changed:
            await room.participant_updated(target)
    elif action == "stop_screen":
        await _stop_screen(target)
        if single and room.state.allow_screen(target.id, False):
            await room.participant_updated(target)  # the permission goes with the share
    elif action == "remove":
        await room.ban(target.grant.identity)
    elif action == "to_lobby":
        await room.send_to_lobby(target)


async def _stop_screen(target: Participant) -> None:
    producers = target.producers("screen", "screen_audio")
    if not producers or target.publisher is None:
        return
    for producer in producers:
        target.publisher.retired.add(producer.mid)
        await target.room.remove_producer(producer, target.id)
    await target.room.tell(target, "stop_screen")
