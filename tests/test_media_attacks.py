"""Attacks on the media path by one admitted participant, performed for real: real server, aiortc peers.

Each test checks that the attack is refused and that the rest of the class is unharmed: the
others keep their WebSockets and their media.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import struct
import time
import tracemalloc
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from sfu.adapter.live import LiveSession
from sfu.adapter.network import MediaNetwork
from sfu.adapter.peer import PeerTransport
from sfu.core import DropReason, MediaStats, Producer
from sfu.core.rtcp import build_nack
from signaling.protocol import max_answer_bytes
from signaling.server import ClassServer

from .conftest import RunningServer
from .peers import NumberedVideoTrack, Peer, ToneAudioTrack
from .test_media_e2e import wait_for


def section_bomb(sdp: str, extra: int) -> str:
    """`sdp` (an offer with one audio section) with `extra` more audio sections, bundled, ~120 bytes each."""
    head, first = sdp.split("m=audio", 1)
    first = "m=audio" + first
    shared = [
        line
        for line in first.splitlines()
        if line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint:sha-256", "a=setup"))
    ]
    mids = " ".join(["0"] + [f"x{i}" for i in range(extra)])
    head = head.replace("a=group:BUNDLE 0", f"a=group:BUNDLE {mids}") + "\r\n".join(shared) + "\r\n"
    sections = "".join(
        f"m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:x{i}\r\n"
        "a=rtcp-mux\r\na=rtpmap:96 opus/48000/2\r\n"
        for i in range(extra)
    )
    return head + first + sections


def frames(peer: Peer) -> int:
    return sum(len(r.numbers) for r in peer.video())


async def test_section_bomb_is_refused_and_the_class_keeps_its_media(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "bomb", "Prof", role="teacher")
    viewer = Peer(classe.url, "bomb", "Eve")
    attacker = Peer(classe.url, "bomb", "Mallory")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for p in (teacher, viewer, attacker):
            await p.join()
        await teacher.publish()
        await viewer.publish(audio=False)
        await wait_for(lambda: frames(viewer) >= 10 and frames(teacher) >= 10, 30)
        room = classe.server.rooms["dev:bomb"]
        census = classe.server.census()

        # 300 audio sections, one announced track: 36 KB, under the message cap. The allocations still
        # held once the server has answered are what the offer cost it.
        pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        bomb = section_bomb(pc.localDescription.sdp, 299)
        tracemalloc.start()
        await attacker.send({"type": "publish", "id": 1, "sdp": bomb, "tracks": [{"mid": "0", "source": "microphone"}]})
        refused = await attacker.expect("error")
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert refused["code"] == "bad_sdp" and "too many media sections" in refused["message"], refused
        assert kept < 1_000_000, f"the refused offer kept {kept} bytes"  # 8 MB on a server that takes it
        assert room.participants[attacker.id].publisher is None  # no peer connection was even made
        assert classe.server.census() == census

        # The same on a publishing connection that already carries a track: nothing is added to it.
        await attacker.send(
            {
                "type": "publish",
                "id": 2,
                "sdp": pc.localDescription.sdp,
                "tracks": [{"mid": "0", "source": "microphone"}],
            }
        )
        answer = await attacker.expect("publish_answer")
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await wait_for(lambda: classe.server.census()[2] == census[2] + 1)
        publisher = room.participants[attacker.id].publisher
        assert publisher is not None
        offer = await pc.createOffer()
        await attacker.send({"type": "publish", "id": 3, "sdp": section_bomb(offer.sdp, 299), "tracks": []})
        refused = await attacker.expect("error")
        assert refused["code"] == "bad_sdp", refused
        assert len(publisher.pc.getTransceivers()) == 1
        assert len(publisher.transport.producers_by_mid) == 1

        # Everyone else still has their socket and their media.
        before_viewer, before_teacher = frames(viewer), frames(teacher)
        await wait_for(lambda: frames(viewer) >= before_viewer + 20 and frames(teacher) >= before_teacher + 20)
        for p in (teacher, viewer, attacker):
            assert p.ws is not None and not p.ws.closed
            assert not any(e["type"] == "error" and e.get("fatal") for e in p.events)
    finally:
        await pc.close()
        for p in (teacher, viewer, attacker):
            await p.close()


async def test_a_full_class_subscribe_answer_fits_the_message_cap(classe: RunningServer) -> None:
    """With everyone else publishing their maximum, an aiortc subscriber's answer is accepted."""
    settings = classe.settings
    sections = (settings.max_participants_per_class - 1) * settings.max_tracks_per_participant
    server_side = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    student = Peer(classe.url, "full", "Eve")
    try:
        for i in range(sections):
            kind = "video" if i % 2 else "audio"
            transceiver = server_side.addTransceiver(kind, direction="sendonly")
            codecs = RTCRtpSender.getCapabilities(kind).codecs
            transceiver.setCodecPreferences(
                [c for c in codecs if c.mimeType in ("video/VP8", "video/rtx", "audio/opus")]
            )
        await server_side.setLocalDescription(await server_side.createOffer())
        await client.setRemoteDescription(server_side.localDescription)
        await client.setLocalDescription(await client.createAnswer())
        message = json.dumps({"type": "subscribe_answer", "sdp": client.localDescription.sdp})
        assert len(message) <= max_answer_bytes(
            settings.max_participants_per_class, settings.max_tracks_per_participant
        )

        await student.join()
        assert student.ws is not None
        await student.ws.send_str(message)
        reply = await student.expect("error")  # read and understood, not cut off as too big
        assert reply["code"] == "unexpected_answer", reply
        assert not student.ws.closed
    finally:
        await server_side.close()
        await client.close()
        await student.close()


async def publish_audio_as(peer: Peer, source: str, ref: int) -> dict[str, object]:
    """Add a tone on a new section of `peer`'s publishing connection, announced as `source`; the reply."""
    if peer.pub is None:
        peer.pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = ToneAudioTrack()
    peer.tracks.append(track)
    transceiver = peer.pub.addTransceiver(track, direction="sendonly")
    await peer.pub.setLocalDescription(await peer.pub.createOffer())
    await peer.send(
        {
            "type": "publish",
            "id": ref,
            "sdp": peer.pub.localDescription.sdp,
            "tracks": [{"mid": transceiver.mid, "source": source}],
        }
    )
    reply = await peer.messages.get()
    while reply.get("ref") != ref:
        reply = await peer.messages.get()
    if reply["type"] == "publish_answer":
        await peer.pub.setRemoteDescription(RTCSessionDescription(str(reply["sdp"]), "answer"))
    return reply


def heard(peer: Peer, track_id: str) -> int:
    """The loudest sample `peer` received on a track (0: silence, or nothing at all)."""
    received = peer.received.get(track_id)
    return received.audio_peak if received is not None else 0


async def test_a_held_student_cannot_be_heard_by_relabelling_the_microphone(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "relabel", "Prof", role="teacher")
    student = Peer(classe.url, "relabel", "Mallory")
    listener = Peer(classe.url, "relabel", "Eve")
    try:
        for p in (teacher, student, listener):
            await p.join()
        await teacher.send({"type": "moderate", "action": "lock", "locks": {"screen": False}})
        mic = next(iter(await student.publish(video_codec=None)))
        mic_id = f"{student.id}:pub:{mic}"
        await wait_for(lambda: heard(teacher, mic_id) > 1000 and heard(listener, mic_id) > 1000)

        # The teacher mutes (and so holds) the student, who publishes the microphone again as screen audio.
        await teacher.send({"type": "moderate", "action": "mute", "participant_id": student.id})
        await wait_for(lambda: any(e["type"] == "moderated" for e in student.events))
        reply = await publish_audio_as(student, "screen_audio", 2)
        assert reply["type"] == "publish_answer", reply
        screen_id = f"{student.id}:pub:{student.pub.getTransceivers()[-1].mid}"  # type: ignore[union-attr]
        await wait_for(lambda: screen_id in teacher.received and screen_id in listener.received)
        await asyncio.sleep(3)
        for p in (teacher, listener):
            assert p.received[screen_id].audio_frames == 0, "the held student's screen audio was forwarded"

        # Allowed again and unmuted, the same track is heard: it was the mute that kept it silent.
        await teacher.send(
            {"type": "moderate", "action": "allow", "participant_id": student.id, "source": "microphone"}
        )
        await wait_for(lambda: not classe.server.rooms["dev:relabel"].state.held.get(student.id))
        await student.send({"type": "media", "source": "microphone", "enabled": True})
        await wait_for(lambda: heard(teacher, screen_id) > 1000 and heard(listener, screen_id) > 1000)

        # An audio track announced as a camera is refused outright.
        reply = await publish_audio_as(student, "camera", 3)
        assert reply["type"] == "error" and reply["code"] == "bad_sdp", reply
        assert classe.server.census()[2] == 2
    finally:
        for p in (teacher, student, listener):
            await p.close()


def storm_nack(media_ssrc: int, last_seq: int) -> bytes:
    """A NACK for the 100 packets up to `last_seq`, its FCIs repeated five times (RFC 4585 allows it)."""
    single = build_nack(1234, media_ssrc, [(last_seq - i) & 0xFFFF for i in range(100)])
    fci = single[12:] * 5
    return struct.pack("!BBHII", single[0], single[1], 2 + len(fci) // 4, 1234, media_ssrc) + fci


async def test_a_nack_storm_costs_the_server_little_and_other_viewers_nothing(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "storm", "Prof", role="teacher")
    viewer = Peer(classe.url, "storm", "Eve")
    flooder = Peer(classe.url, "storm", "Mallory")
    try:
        for p in (teacher, viewer, flooder):
            await p.join()
        await teacher.publish(audio=False)
        await wait_for(lambda: frames(viewer) >= 100 and frames(flooder) >= 100, 30)
        room = classe.server.rooms["dev:storm"]
        peer = room.live.peers[f"{flooder.id}:sub"]
        consumer = next(iter(peer.consumers.values()))  # the teacher's camera, as sent to the flooder
        spent = 0.0  # the server's time on the flooder's datagrams: SRTCP, NACKs, retransmissions sent
        receive = peer._ice.data_received

        def timed(data: bytes, component: int) -> None:
            nonlocal spent
            start = time.perf_counter()
            receive(data, component)
            spent += time.perf_counter() - start

        peer._ice.data_received = timed
        stats = classe.server.stats
        asked_before = list(stats.drops), stats.retransmissions
        dtls: Any = flooder.sub.getTransceivers()[0].receiver.transport  # type: ignore[union-attr]
        shown = frames(viewer)
        start = time.monotonic()
        nacks = 0
        while time.monotonic() - start < 4:
            # As many NACKs as the loop allows (~278 a second in the campaign), each asking five times
            # for the last 100 packets: 500 retransmissions a NACK for a server that takes them all.
            await dtls._send_rtp(storm_nack(consumer.ssrc, consumer.last_seq))
            nacks += 1
            await asyncio.sleep(0.0036)
        elapsed = time.monotonic() - start

        assert nacks >= 100 * elapsed, "the storm was not sent"
        refused = sum(
            stats.drops[reason] - asked_before[0][reason]
            for reason in (DropReason.NACK_REPEATED, DropReason.NACK_OVER_LIMIT, DropReason.NACK_OVER_BUDGET)
        )
        retransmitted = stats.retransmissions - asked_before[1]
        assert refused > 10 * retransmitted, (refused, retransmitted)
        assert spent < 0.15 * elapsed, f"the server spent {spent:.2f} s of {elapsed:.2f} s on the storm"
        received = viewer.video()[0]
        during = [t for t in received.arrivals if t >= start]
        assert len(during) >= 20 * elapsed, f"the other viewer got {len(during) / elapsed:.0f} frames a second"
        assert frames(viewer) > shown
        for p in (teacher, viewer, flooder):
            assert p.ws is not None and not p.ws.closed
    finally:
        for p in (teacher, viewer, flooder):
            await p.close()


# A fatal handshake_failure alert and a ClientHello full of garbage, as plaintext DTLS 1.2 records.
FORGED_ALERT = b"\x15\xfe\xfd" + bytes(8) + b"\x00\x02\x02\x28"
GARBAGE_HELLO = b"\x16\xfe\xfd" + bytes(8) + b"\x00\x40\x01" + os.urandom(63)


def media_ports(server: ClassServer) -> list[int]:
    """The server's media sockets: what an attacker scanning the announced UDP range finds there
    (the test's own aiortc peers may have ports in that range too: they are not the target)."""
    return [
        protocol.transport.get_extra_info("sockname")[1]
        for room in server.rooms.values()
        for peer in room.live.peers.values()
        if peer._ice is not None
        for protocol in peer._ice._protocols
        if protocol.transport is not None
    ]


async def test_forged_dtls_from_an_off_path_address_does_not_stop_a_newcomer(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "spray", "Prof", role="teacher")
    newcomer = Peer(classe.url, "spray", "Eve")
    sprayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sprayer.setblocking(False)
    spraying = True

    async def spray() -> None:
        while spraying:
            for port in media_ports(classe.server):
                for forged in (FORGED_ALERT, GARBAGE_HELLO):
                    try:
                        sprayer.sendto(forged, ("127.0.0.1", port))
                    except OSError:  # a full buffer: the next round sends again
                        pass
            await asyncio.sleep(0.005)

    task = asyncio.create_task(spray())
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        await asyncio.sleep(0.5)
        # The newcomer subscribes (the server is the DTLS server) and publishes (the DTLS client).
        await newcomer.join()
        await newcomer.publish(audio=False)
        await wait_for(lambda: frames(newcomer) >= 20 and frames(teacher) >= 20, 20)
        assert classe.server.stats.drops[DropReason.UNVALIDATED_ADDRESS] > 100
        room = classe.server.rooms["dev:spray"]
        assert all(peer.pc.connectionState == "connected" for peer in room.live.peers.values())
    finally:
        spraying = False
        await task
        sprayer.close()
        for p in (teacher, newcomer):
            await p.close()


async def test_the_adapter_makes_producers_only_for_announced_tracks_of_their_kind() -> None:
    """Whatever reaches aiortc, a section becomes a producer only if it was announced with its kind."""
    live = LiveSession(MediaStats())
    made: list[Producer] = []

    async def on_producer(producer: Producer) -> None:
        made.append(producer)

    server = PeerTransport(
        live, "p:pub", ice_servers=[], network=MediaNetwork(("127.0.0.1",), 42000, 42999), on_producer=on_producer
    )
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for track in (ToneAudioTrack(), NumberedVideoTrack(), ToneAudioTrack()):
            client.addTransceiver(track, direction="sendonly")
        await client.setLocalDescription(await client.createOffer())
        server.sources.update({"0": "microphone", "2": "camera"})  # mid 1 unannounced, mid 2 mislabelled
        await server.pc.setRemoteDescription(client.localDescription)
        server.prepare()
        await server.pc.setLocalDescription(await server.pc.createAnswer())
        await client.setRemoteDescription(server.pc.localDescription)
        await wait_for(lambda: server.pc.connectionState == "connected" and bool(made))
        await asyncio.sleep(0.5)
        assert [(p.mid, p.source) for p in made] == [("0", "microphone")]
        assert list(server.transport.producers_by_mid) == ["0"]
    finally:
        await client.close()
        await server.close()
        live.close()


@pytest.mark.parametrize("settings_overrides", [{"ice_timeout_seconds": 3}])
async def test_invented_candidate_types_do_not_grow_the_metrics_or_the_logs(
    classe: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A client writes its own words as its candidates' "typ" (the SDP is its to write): the ICE
    # stack drops such candidates, so its media cannot connect, and the failure is counted and
    # logged under the kinds the server knows, never under a label of the client's choosing (the
    # counts are metric labels: one per invented word would grow them without end).
    caplog.set_level(logging.INFO, logger="classe.events")
    prof = Peer(classe.url, "c1", "Prof", role="teacher")
    original = prof.send

    async def send(message: dict[str, Any]) -> None:
        if message.get("type") == "publish":
            message = {**message, "sdp": message["sdp"].replace("typ host", "typ invented")}
        await original(message)

    prof.send = send  # type: ignore[method-assign]
    try:
        await prof.join()
        await prof.publish(audio=False)
        await wait_for(lambda: sum(classe.server.ice.failed.values()) >= 1, 20)
        known = {"host", "srflx", "prflx", "relay", "other", "none"}
        assert set(classe.server.ice.failed) | set(classe.server.ice.connected) <= known
        async with prof.http.get(classe.metrics_url) as response:
            assert "invented" not in await response.text()
        assert "ice_failed" in caplog.text and "invented" not in caplog.text
    finally:
        await prof.close()
