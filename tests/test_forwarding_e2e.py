"""Loudest-K audio and last-N video with real aiortc peers through a real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from .conftest import RunningServer
from .peers import Peer, ToneAudioTrack
from .test_media_e2e import wait_for

LOUD, SILENT = 8000, 0


def tone(peer: Peer) -> ToneAudioTrack:
    return next(t for t in peer.tracks if isinstance(t, ToneAudioTrack))


def last(peer: Peer, kind: str) -> dict[str, Any] | None:
    return next((e for e in reversed(peer.events) if e["type"] == kind), None)


async def flowing(peer: Peer, kind: str, seconds: float = 1.5) -> set[str]:
    """The tracks of this kind whose frames kept arriving over the next `seconds`."""

    def counts() -> dict[str, int]:
        return {
            t: len(r.numbers) if kind == "video" else r.audio_frames for t, r in peer.received.items() if r.kind == kind
        }

    before = counts()
    await asyncio.sleep(seconds)
    return {t for t, n in counts().items() if n > before.get(t, 0)}


@pytest.mark.parametrize("settings_overrides", [{"audio_forward_loudest": 1}])
async def test_only_the_loudest_student_and_the_teacher_are_heard(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "loud", "Prof", role="teacher")
    loud, quiet, listener = (Peer(classe.url, "loud", name) for name in ("Lou", "Coi", "Ana"))
    peers = [teacher, loud, quiet, listener]
    try:
        for p in peers:
            await p.join()
        await teacher.publish(video_codec=None, amplitude=SILENT)  # a silent teacher is forwarded all the same
        await loud.publish(video_codec=None, amplitude=LOUD)
        await quiet.publish(video_codec=None, amplitude=SILENT)
        await wait_for(lambda: len(listener.audio()) == 3)
        track = {p: next(t for t in listener.received if t.startswith(p.id)) for p in (teacher, loud, quiet)}
        await wait_for(lambda: last(listener, "speakers") is not None)
        assert last(listener, "speakers") == {"type": "speakers", "active": loud.id, "loudest": [loud.id]}
        heard = await flowing(listener, "audio")
        assert heard == {track[teacher], track[loud]}
        assert listener.received[track[quiet]].audio_frames == 0  # never forwarded, not even its silence
        assert await flowing(teacher, "audio") == {t for t in teacher.received if t.startswith(loud.id)}
        # The quiet one speaks up and the loud one falls silent: the newcomer takes the one slot.
        tone(quiet).amplitude, tone(loud).amplitude = LOUD, SILENT
        await wait_for(lambda: listener.received[track[quiet]].audio_frames > 0, 5)
        await wait_for(lambda: (last(listener, "speakers") or {}).get("active") == quiet.id, 5)
        await asyncio.sleep(2.0)  # the loud one's hold (1.5 s) is over
        assert await flowing(listener, "audio") == {track[teacher], track[quiet]}
        assert listener.received[track[quiet]].audio_peak > 1000  # the resumed audio decodes: a real tone
        # Two students taking turns every 150 ms: the page is told at most about every 300 ms.
        start = time.monotonic()
        for turn in range(16):
            tone(quiet).amplitude, tone(loud).amplitude = (LOUD, SILENT) if turn % 2 else (SILENT, LOUD)
            await asyncio.sleep(0.15)
        await asyncio.sleep(0.5)
        told = [at for at, e in zip(listener.event_times, listener.events, strict=True) if e["type"] == "speakers"]
        told = [at for at in told if at >= start]
        assert told, "the turns were never told"
        assert min((b - a for a, b in itertools.pairwise(told)), default=1.0) > 0.25, told
    finally:
        for p in peers:
            await p.close()


@pytest.mark.parametrize("settings_overrides", [{"video_last_n": 2, "audio_forward_loudest": 0}])
async def test_last_n_videos_follow_the_view(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "lastn", "Prof", role="teacher")
    students = [Peer(classe.url, "lastn", f"S{i}") for i in range(3)]
    viewer = Peer(classe.url, "lastn", "Vue")
    peers = [teacher, *students, viewer]
    room = classe.server.rooms
    try:
        for p in peers:
            await p.join()
        await teacher.publish(audio=False)
        for s in students:
            await s.publish(audio=False)
        await wait_for(lambda: len(viewer.video()) == 4, 20)
        cam = {p: next(t for t in viewer.received if t.startswith(p.id)) for p in (teacher, *students)}
        # No view yet: the teacher, then the first published student camera.
        expected = {cam[teacher], cam[students[0]]}
        await wait_for(lambda: set((last(viewer, "videos") or {}).get("receiving", ())) == expected)
        assert last(viewer, "videos") == {"type": "videos", "receiving": [cam[teacher], cam[students[0]]]}
        await wait_for(lambda: all(len(viewer.received[t].numbers) > 10 for t in expected), 20)
        assert await flowing(viewer, "video") == expected
        capped = room["dev:lastn"].live.session.producers
        assert capped[cam[students[0]]].max_bitrate == classe.settings.thumbnail_bitrate  # nobody shows it large
        assert capped[cam[teacher]].max_bitrate == classe.settings.camera_max_bitrate

        # The page shows two other students, one of them large.
        tiles = [{"track_id": cam[students[1]], "width": 640, "height": 360}]
        tiles.append({"track_id": cam[students[2]], "width": 160, "height": 90})
        tiles.append({"track_id": "nobody:pub:9", "width": 160, "height": 90})  # a track that went: ignored
        await viewer.send({"type": "view", "tiles": tiles, "pinned": None, "audio_only": False})
        moved = {cam[students[1]], cam[students[2]]}
        await wait_for(lambda: set((last(viewer, "videos") or {}).get("receiving", ())) == moved)
        await wait_for(lambda: all(len(viewer.received[t].numbers) > 10 for t in moved), 20)
        assert await flowing(viewer, "video") == moved
        assert capped[cam[students[1]]].max_bitrate == classe.settings.camera_max_bitrate  # shown large
        assert capped[cam[students[2]]].max_bitrate == classe.settings.thumbnail_bitrate
        assert capped[cam[students[0]]].max_bitrate == classe.settings.thumbnail_bitrate

        # Back to the first two: their videos resume, on a keyframe (every frame decodes, in order).
        resumed = {t: len(viewer.received[t].numbers) for t in expected}
        tiles = [{"track_id": t, "width": 160, "height": 90} for t in expected]
        await viewer.send({"type": "view", "tiles": tiles, "pinned": None, "audio_only": False})
        await wait_for(lambda: all(len(viewer.received[t].numbers) > resumed[t] + 20 for t in expected), 20)
        for t in expected:
            received = viewer.received[t]
            after = received.numbers[resumed[t] - 1 :]
            assert after == sorted(after) and received.corrupt == 0, (after, received.corrupt)
            assert max(b - a for a, b in itertools.pairwise(after)) > 30  # it paused: frames skipped, none broken

        # Data saver: no video at all (no screen share in this class).
        await viewer.send({"type": "view", "tiles": tiles, "pinned": None, "audio_only": True})
        await wait_for(lambda: (last(viewer, "videos") or {}).get("receiving") == [])
        await asyncio.sleep(0.5)
        assert await flowing(viewer, "video") == set()
        # The students still receive the teacher: one subscriber's view is its own.
        assert cam[teacher] in await flowing(students[0], "video")
    finally:
        for p in peers:
            await p.close()


@pytest.mark.parametrize("settings_overrides", [{"audio_forward_loudest": 1}])
async def test_unmuting_does_not_forward_a_student_the_choice_leaves_out(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "mute", "Prof", role="teacher")
    loud, other = Peer(classe.url, "mute", "Lou"), Peer(classe.url, "mute", "Max")
    peers = [teacher, loud, other]
    try:
        for p in peers:
            await p.join()
        await loud.publish(video_codec=None, amplitude=LOUD)
        await other.publish(video_codec=None, amplitude=SILENT)
        await wait_for(lambda: len(teacher.audio()) == 2 and (last(teacher, "speakers") or {}).get("active") == loud.id)
        track = {p: next(t for t in teacher.received if t.startswith(p.id)) for p in (loud, other)}
        for enabled in (False, True):  # the other student's own switch: a mute, then an unmute
            await other.send({"type": "media", "source": "microphone", "enabled": enabled})
            await other.expect("participant_updated")
        assert await flowing(teacher, "audio") == {track[loud]}
        assert teacher.received[track[other]].audio_frames == 0
    finally:
        for p in peers:
            await p.close()
