"""The teacher's controls are enforced by the server: a muted student's packets reach nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection

from sfu.core import DropReason

from .conftest import RunningServer
from .peers import Peer
from .test_access import new_class
from .test_media_e2e import wait_for
from .web import Browser, code_of, teacher


@dataclass
class Class:
    prof: Peer
    students: list[Peer]
    code: str
    teacher: Browser
    guest: Browser


@pytest.fixture
async def live_class(classe: RunningServer) -> AsyncIterator[Class]:
    """A teacher and two students (link mode, no lobby) in a live class."""
    async with await teacher(classe) as t, Browser(classe) as guest:
        code = code_of(await new_class(t, lobby=False))
        prof = Peer(classe.url, "", "Prof")
        students = [Peer(classe.url, "", name) for name in ("Léo", "Inès")]
        try:
            await prof.join(await t.join_token(code))
            for s in students:
                await s.join(await guest.join_token(code, s.name))
            yield Class(prof, students, code, t, guest)
        finally:
            for p in (prof, *students):
                await p.close()


def frames(peer: Peer) -> int:
    return sum(r.audio_frames for r in peer.audio())


async def test_a_muted_students_audio_reaches_nobody(classe: RunningServer, live_class: Class) -> None:
    prof, (leo, ines) = live_class.prof, live_class.students
    await leo.publish(video_codec=None, audio=True)
    await wait_for(lambda: frames(prof) > 50 and frames(ines) > 50, 20)

    await prof.send({"type": "moderate", "action": "lock", "locks": {"microphone": True}})
    assert (await leo.expect("class_state"))["state"]["locks"]["microphone"] is True
    await prof.send({"type": "moderate", "action": "mute", "participant_id": leo.id})
    assert (await leo.expect("moderated"))["action"] == "mute"
    update = await ines.expect("participant_updated")
    assert update["participant"] == {**update["participant"], "id": leo.id, "microphone": False, "held": ["microphone"]}
    await asyncio.sleep(0.5)  # what was already in flight
    before = (frames(prof), frames(ines))
    dropped = classe.server.stats.drops[DropReason.MUTED]
    await asyncio.sleep(2.0)
    assert (frames(prof), frames(ines)) == before  # Léo keeps sending: the SFU forwards none of it
    assert classe.server.stats.drops[DropReason.MUTED] > dropped + 50

    # Under the lock, Léo cannot unmute himself, whatever his client sends.
    await leo.send({"type": "media", "id": 7, "source": "microphone", "enabled": True})
    refusal = await leo.expect("error")
    assert (refusal["code"], refusal["ref"]) == ("locked", 7)
    await asyncio.sleep(1.0)
    assert (frames(prof), frames(ines)) == before

    # Unlocked, he still cannot: the teacher muted him by name, which holds his microphone off.
    await prof.send({"type": "moderate", "action": "lock", "locks": {"microphone": False}})
    await leo.expect("class_state")
    await leo.send({"type": "media", "id": 8, "source": "microphone", "enabled": True})
    assert ((await leo.expect("error"))["code"]) == "locked"

    # Once the teacher gives him the floor, he can.
    await prof.send({"type": "moderate", "action": "allow", "participant_id": leo.id, "source": "microphone"})
    assert (await leo.expect("participant_updated"))["participant"]["held"] == []
    await leo.send({"type": "media", "source": "microphone", "enabled": True})
    await wait_for(lambda: frames(prof) > before[0] + 50 and frames(ines) > before[1] + 50, 10)


async def screen_refused(peer: Peer) -> bool:
    """Whether a screen share offered by this student is refused with `locked`."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        mid = pc.getTransceivers()[0].mid
        await peer.send(
            {"type": "publish", "id": "s", "sdp": pc.localDescription.sdp, "tracks": [{"mid": mid, "source": "screen"}]}
        )
        reply = await peer.messages.get()
        while reply["type"] not in ("error", "publish_answer"):
            reply = await peer.messages.get()
        return (reply["type"], reply.get("code"), reply.get("ref")) == ("error", "locked", "s")
    finally:
        await pc.close()


async def test_camera_off_and_stop_screen(classe: RunningServer, live_class: Class) -> None:
    prof, (leo, ines) = live_class.prof, live_class.students
    await leo.publish(audio=False)
    # Students' screen sharing is off until a teacher allows it, for one student or for all.
    assert await screen_refused(leo)
    await prof.send({"type": "moderate", "action": "allow", "participant_id": leo.id, "source": "screen"})
    allowed = await ines.expect("participant_updated")
    assert (allowed["participant"]["id"], allowed["participant"]["screen_allowed"]) == (leo.id, True)
    assert await screen_refused(ines)  # Léo alone was allowed
    await leo.publish(audio=False, screen=True)
    shared = await prof.expect("track_published")
    while shared["source"] != "screen":
        shared = await prof.expect("track_published")
    assert shared["participant_id"] == leo.id  # the teacher is told who shares
    await wait_for(lambda: any(v.info["source"] == "screen" and len(v.numbers) > 10 for v in ines.video()), 30)
    await wait_for(lambda: any(v.info["source"] == "camera" and len(v.numbers) > 10 for v in ines.video()), 30)
    camera = next(v for v in ines.video() if v.info["source"] == "camera")

    await prof.send({"type": "moderate", "action": "camera_off", "all": True})
    assert (await leo.expect("moderated"))["action"] == "camera_off"
    await asyncio.sleep(0.5)
    shown = len(camera.numbers)
    await asyncio.sleep(1.5)
    assert len(camera.numbers) == shown

    # Stopping one student's share also takes back the permission: a new share is refused.
    await prof.send({"type": "moderate", "action": "stop_screen", "participant_id": leo.id})
    assert (await leo.expect("moderated"))["action"] == "stop_screen"
    gone = await ines.expect("track_unpublished")
    assert gone["participant_id"] == leo.id
    withdrawn = await ines.expect("participant_updated")
    assert (withdrawn["participant"]["id"], withdrawn["participant"]["screen_allowed"]) == (leo.id, False)
    room = classe.server.rooms[next(iter(classe.server.rooms))]
    assert [p.source for p in room.live.session.producers.values()] == ["camera"]
    assert await screen_refused(leo)

    # Unlocked for the whole class, any student may share.
    await prof.send({"type": "moderate", "action": "lock", "locks": {"screen": False}})
    assert (await ines.expect("class_state"))["state"]["locks"]["screen"] is False
    await ines.publish(audio=False, screen=True)
    await wait_for(lambda: any(v.info["source"] == "screen" for v in leo.video()), 30)


async def test_chat_hands_and_locks(classe: RunningServer, live_class: Class) -> None:
    prof, (leo, ines) = live_class.prof, live_class.students
    await leo.send({"type": "chat", "text": "  Bonjour !  "})
    message = await ines.expect("chat")
    assert (message["participant_id"], message["name"], message["text"]) == (leo.id, "Léo", "Bonjour !")
    await ines.send({"type": "hand", "raised": True})
    assert (await prof.expect("participant_updated"))["participant"]["hand"] is True
    assert (await ines.expect("participant_updated"))["participant"]["hand"] is True  # her own, as seen by all
    await prof.send({"type": "moderate", "action": "lower_hands"})
    assert (await ines.expect("participant_updated"))["participant"]["hand"] is False

    await prof.send({"type": "moderate", "action": "lock", "locks": {"chat": True}})
    await leo.expect("class_state")
    await leo.send({"type": "chat", "id": "c2", "text": "encore"})
    assert (await leo.expect("error"))["code"] == "locked"
    await prof.send({"type": "chat", "text": "Silence, s'il vous plaît"})  # teachers are never locked
    assert (await ines.expect("chat"))["text"] == "Silence, s'il vous plaît"

    # Students cannot use a teacher's controls.
    for action in ({"action": "mute", "participant_id": prof.id}, {"action": "end"}, {"action": "mute", "all": True}):
        await leo.send({"type": "moderate", **action})
        assert (await leo.expect("error"))["code"] == "forbidden"
    room = classe.server.rooms[next(iter(classe.server.rooms))]
    assert all(p.enabled["microphone"] for p in room.participants.values())
    assert len(room.participants) == 3

    # A latecomer sees the chat so far; it is gone once the class ends.
    late = Peer(classe.url, "", "Tard")
    try:
        joined = await late.join(await live_class.guest.join_token(live_class.code, "Tard"))
        assert [m["text"] for m in joined["chat"]] == ["Bonjour !", "Silence, s'il vous plaît"]
        assert joined["state"]["locks"]["chat"] is True
    finally:
        await late.close()


async def test_lock_the_class_then_end_it_for_everyone(classe: RunningServer, live_class: Class) -> None:
    prof, students = live_class.prof, live_class.students
    await prof.send({"type": "moderate", "action": "lock_class", "value": True})
    await students[0].expect("class_state")
    async with Browser(classe) as latecomer:
        late = Peer(classe.url, "", "Tard")
        try:
            reply = await late.join(await latecomer.join_token(live_class.code, "Tard"), until="error")
            assert reply["code"] == "class_locked"
        finally:
            await late.close()
    await prof.send({"type": "moderate", "action": "end"})
    for peer in (prof, *students):
        ended = await peer.expect("error")
        assert (ended["code"], ended["fatal"]) == ("class_ended", True)
    await wait_for(lambda: classe.server.census() == (0, 0, 0) and not classe.server.sessions, 5)
