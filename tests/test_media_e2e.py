"""Real WebRTC peers (aiortc, over loopback) through a real server."""

from __future__ import annotations

import asyncio

import pytest

from sfu.core import DropReason

from .conftest import RunningServer
from .peers import Peer, Received


def assert_clean_video(r: Received, min_frames: int) -> None:
    assert len(r.numbers) >= min_frames, f"only {len(r.numbers)} frames decoded"
    assert r.numbers == sorted(r.numbers), "frames out of order"
    assert r.corrupt <= 1, f"{r.corrupt} corrupt frames"
    assert r.longest_freeze() < 1.0, f"froze for {r.longest_freeze():.2f} s"


async def wait_for(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_publisher_reaches_every_subscriber(classe: RunningServer, codec: str) -> None:
    teacher = Peer(classe.url, "math", "Prof", role="teacher")
    students = [Peer(classe.url, "math", f"S{i}") for i in range(3)]
    try:
        await teacher.join()
        for s in students:
            await s.join()
        await teacher.publish(video_codec=codec)
        await wait_for(lambda: all(s.video() and len(s.video()[0].numbers) >= 60 for s in students), 30)
        for s in students:
            assert_clean_video(s.video()[0], 60)
            assert s.video()[0].info["participant_id"] == teacher.id
            audio = s.audio()[0]
            assert audio.audio_frames > 50 and audio.audio_peak > 1000
        # the first frame a subscriber decodes is recent: it got a keyframe quickly
        assert all(s.video()[0].numbers[0] < 45 for s in students)
    finally:
        for p in [teacher, *students]:
            await p.close()


async def test_lossy_subscriber_recovers_with_nack(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "lossy", "Prof", role="teacher")
    student = Peer(classe.url, "lossy", "Loin", loss=0.05)
    try:
        await teacher.join()
        await student.join()
        await teacher.publish(audio=False)
        await wait_for(lambda: student.video() and len(student.video()[0].numbers) >= 120, 40)
        # about one packet per frame at this size: 5 % of ~130 packets
        assert student.dropped >= 3
        assert classe.server.stats.retransmissions >= student.dropped // 2
        assert_clean_video(student.video()[0], 120)
        assert sum(classe.server.stats.forwarding_counts) > 100  # each forwarded packet's time was measured
    finally:
        await teacher.close()
        await student.close()


async def test_leave_rejoin_and_unpublish(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "hist", "Prof", role="teacher")
    student = Peer(classe.url, "hist", "Eve")
    try:
        await teacher.join()
        await student.join()
        sources = await teacher.publish()
        await wait_for(lambda: student.video() and len(student.video()[0].numbers) >= 20)
        # the student leaves and comes back: it receives the teacher again
        await student.close()
        student = Peer(classe.url, "hist", "Eve")
        await student.join()
        await wait_for(lambda: student.video() and len(student.video()[0].numbers) >= 20)
        assert_clean_video(student.video()[0], 20)
        # the teacher stops the camera: the student is told and the track goes
        video_mid = next(m for m, s in sources.items() if s == "camera")
        await teacher.send({"type": "unpublish", "mid": video_mid})
        await wait_for(lambda: any(e["type"] == "track_unpublished" for e in student.events))
        # and starts sharing the screen mid-class
        await teacher.publish(audio=False, screen=True)
        await wait_for(lambda: any(r.info["source"] == "screen" and len(r.numbers) >= 20 for r in student.video()))
        # the student publishes too: the teacher receives it
        await student.publish()
        await wait_for(lambda: teacher.video() and len(teacher.video()[0].numbers) >= 20)
        assert classe.server.census() == (1, 2, 4)
    finally:
        await teacher.close()
        await student.close()
    await wait_for(lambda: classe.server.census() == (0, 0, 0), 5)


async def test_garbage_datagrams_on_a_live_connection_are_dropped(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "junk", "Prof", role="teacher")
    student = Peer(classe.url, "junk", "Eve")
    try:
        await teacher.join()
        await student.join()
        await teacher.publish(audio=False)
        await wait_for(lambda: student.video() and len(student.video()[0].numbers) >= 10)
        peer = classe.server.rooms["dev:junk"].live.peers[f"{teacher.id}:pub"]
        receive = peer._ice.data_received  # the adapter's socket callback, as aioice calls it
        drops = classe.server.stats.drops
        srtp_before, malformed_before = drops[DropReason.SRTP_ERROR], drops[DropReason.MALFORMED_RTP]
        for junk in (
            b"",
            b"\x80",
            b"\x00" * 40,
            b"\x80\x60" + bytes(30),
            b"\x81\xc9" + bytes(30),
            bytes(range(128, 256)),
        ):
            receive(junk, 1)
        assert drops[DropReason.MALFORMED_RTP] - malformed_before == 3  # too short, or neither DTLS nor SRTP
        assert drops[DropReason.SRTP_ERROR] - srtp_before == 3  # SRTP-shaped, but forged
        before = len(student.video()[0].numbers)
        await wait_for(lambda: len(student.video()[0].numbers) >= before + 10)  # media still flows
    finally:
        await teacher.close()
        await student.close()


async def test_nobody_is_without_media_while_nobody_publishes(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "calme", "Prof", role="teacher")
    student = Peer(classe.url, "calme", "Léa")
    try:
        await teacher.join()
        await student.join()
        # No track in class: nothing to receive, no media connection, and no "without media" either.
        await wait_for(lambda: student.id in teacher.known)
        assert teacher.known[student.id]["media"] is None
        # She publishes her microphone: her media connection is the one she sends on, and it is up.
        await student.publish(video_codec=None)
        await wait_for(lambda: teacher.known[student.id]["media"] is True)
        # The teacher's camera comes: she now receives on a connection of its own, and it comes up
        # without her being shown as without media in between.
        await teacher.publish(audio=False)
        await wait_for(lambda: bool(student.video()) and len(student.video()[0].numbers) >= 10)
        seen = [
            e["participant"]["media"]
            for e in teacher.events
            if e["type"] in ("participant_joined", "participant_updated") and e["participant"]["id"] == student.id
        ]
        assert seen[0] is None and False not in seen and seen[-1] is True, seen
    finally:
        await teacher.close()
        await student.close()
