"""One UDP port for every participant of every class: real server, real aiortc peers, a real attacker socket."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from aioice import stun

from sfu.adapter.shared_port import SharedPortProtocol, SharedSocket, username_fragment
from sfu.core import DropReason
from signaling.server import ClassServer

from .conftest import RunningServer
from .peers import Peer
from .test_media_e2e import wait_for


def views(server: ClassServer) -> list[SharedPortProtocol]:
    """The server's host-candidate protocols, one per peer connection and media address."""
    return [
        protocol
        for room in server.rooms.values()
        for peer in room.live.peers.values()
        if peer._ice is not None
        for protocol in peer._ice._protocols
        if isinstance(protocol, SharedPortProtocol)
    ]


def shared_socket(server: ClassServer) -> SharedSocket:
    assert server.network.shared is not None
    (shared,) = server.network.shared.sockets.values()
    return shared


async def test_classes_share_one_port_and_keep_their_media_apart(classe: RunningServer) -> None:
    classes = {"maths": 0, "histoire": 3000}  # each teacher's frames are numbered from here
    teachers = {c: Peer(classe.url, c, f"Prof {c}", role="teacher") for c in classes}
    students = {c: [Peer(classe.url, c, f"{c} {i}") for i in range(2)] for c in classes}
    everyone = [*teachers.values(), *(s for group in students.values() for s in group)]
    try:
        for class_id, start in classes.items():
            await teachers[class_id].join()
            await teachers[class_id].publish()
            teachers[class_id].tracks[0].count = start  # type: ignore[attr-defined]
            for student in students[class_id]:
                await student.join()
                await student.publish(video_codec=None)
        for student in (s for group in students.values() for s in group):
            await wait_for(lambda s=student: bool(s.video() and len(s.video()[0].numbers) > 20))  # type: ignore[misc]
            await wait_for(lambda s=student: any(r.audio_frames > 50 for r in s.audio()))  # type: ignore[misc]

        # Every peer connection of both classes gathered the same port, and nothing else.
        ports = {view.transport.get_extra_info("sockname")[1] for view in views(classe.server)}
        assert ports == {classe.settings.media_port}
        assert len(views(classe.server)) == 2 * len(everyone)  # each publishes and subscribes
        # Media stays apart: every frame a student decoded is its own teacher's, none corrupt.
        for class_id, group in students.items():
            start = classes[class_id]
            for student in group:
                (video,) = student.video()
                assert video.info["participant_id"] == teachers[class_id].id
                assert all(start <= n < start + 2000 for n in video.numbers), (class_id, video.numbers[:5])
                assert video.corrupt == 0
                heard = {r.info["participant_id"] for r in student.audio()}
                assert heard <= {p.id for p in (teachers[class_id], *group)}
        # Every validated address routes to a connection of the class that validated it.
        shared = shared_socket(classe.server)
        for room in classe.server.rooms.values():
            mine = {id(v) for p in room.live.peers.values() if p._ice for v in p._ice._protocols}
            for view in (v for v in views(classe.server) if id(v) in mine):
                assert all(shared.by_address[a] is view for a in view.validated if a in shared.by_address)
        assert classe.server.stats.drops[DropReason.UNROUTABLE_STUN] == 0
    finally:
        for peer in everyone:
            await peer.close()
    await wait_for(lambda: not classe.server.rooms)
    shared = shared_socket(classe.server)
    assert not shared.by_ufrag and not shared.by_address and not shared.by_transaction


def binding_request(username: bytes | None, key: bytes | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if username is not None:
        message.attributes["USERNAME"] = username.decode()
        message.attributes["PRIORITY"] = 1
        message.attributes["ICE-CONTROLLED"] = 1
    if key is not None:
        message.add_message_integrity(key)
    return bytes(message)


async def test_an_attacker_on_the_shared_port_reaches_no_connection(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "attaque", "Prof", role="teacher")
    student = Peer(classe.url, "attaque", "Élève")
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    attacker.setblocking(False)
    target = ("127.0.0.1", classe.settings.media_port)
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        await student.join()
        await wait_for(lambda: bool(student.video() and len(student.video()[0].numbers) > 10))
        shared = shared_socket(classe.server)
        victim = next(iter(shared.by_ufrag))  # a real connection's username fragment
        routes = dict(shared.by_address)
        drops = classe.server.stats.drops
        unroutable = drops[DropReason.UNROUTABLE_STUN]
        unvalidated = drops[DropReason.UNVALIDATED_ADDRESS]
        forged = [
            binding_request(b"nobody:x"),  # an unknown fragment
            binding_request(None),  # no USERNAME at all
            binding_request(b"nobody:x")[:24],  # cut inside its attribute
            b"\x01\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12),  # an answer to no check of ours
            b"\x00\x01\xff\xff\x21\x12\xa4\x42" + os.urandom(12) + b"\x00\x06\xff\xff",  # lengths past the end
        ]
        for datagram in forged * 20:
            attacker.sendto(datagram, target)
        # A check naming a real connection without its password: refused (aioice answers 400/401), no route.
        for key in (None, b"not the password"):
            attacker.sendto(binding_request(victim + b":x", key), target)
        # DTLS and SRTP from an address no check validated.
        for _ in range(50):
            attacker.sendto(b"\x16\xfe\xfd" + os.urandom(60), target)
            attacker.sendto(b"\x80\x60" + os.urandom(60), target)
        # Longer than any media datagram, and empty: dropped, counted, nothing else.
        oversized = drops[DropReason.OVERSIZED]
        for _ in range(10):
            attacker.sendto(bytes(9000), target)
            attacker.sendto(b"", target)
        await wait_for(lambda: drops[DropReason.OVERSIZED] >= oversized + 10)
        await wait_for(lambda: drops[DropReason.UNROUTABLE_STUN] >= unroutable + 100)
        await wait_for(lambda: drops[DropReason.UNVALIDATED_ADDRESS] >= unvalidated + 110)
        await asyncio.sleep(0.5)
        answers = []
        while True:
            try:
                answers.append(stun.parse_message(attacker.recv(2048)))
            except BlockingIOError:
                break
        assert [a.message_class for a in answers] == [stun.Class.ERROR] * 2, answers
        assert attacker.getsockname() not in {(a[0], a[1]) for a in shared.by_address}
        assert dict(shared.by_address) == routes
        before = len(student.video()[0].numbers)
        await wait_for(lambda: len(student.video()[0].numbers) > before + 20)
        assert student.video()[0].corrupt == 0
    finally:
        attacker.close()
        for peer in (teacher, student):
            await peer.close()


@pytest.mark.parametrize("settings_overrides", [{"media_port": 0}])
async def test_the_port_range_stays_available(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "range", "Prof", role="teacher")
    student = Peer(classe.url, "range", "Élève")
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        await student.join()
        await wait_for(lambda: bool(student.video() and len(student.video()[0].numbers) > 10))
        assert classe.server.network.shared is None
        ports = [
            protocol.transport.get_extra_info("sockname")[1]
            for room in classe.server.rooms.values()
            for peer in room.live.peers.values()
            if peer._ice is not None
            for protocol in peer._ice._protocols
        ]
        assert len(ports) == len(set(ports)) == 2  # the teacher publishes, the student subscribes: a port each
        assert all(classe.settings.media_port_min <= p <= classe.settings.media_port_max for p in ports)
    finally:
        for peer in (teacher, student):
            await peer.close()


def test_the_username_fragment_is_read_from_well_formed_requests_only() -> None:
    assert username_fragment(binding_request(b"ab12cd34:xyz", b"k")) == b"ab12cd34"
    assert username_fragment(binding_request(None)) is None
    request = binding_request(b"ab12cd34:xyz")
    assert username_fragment(request[:22]) is None  # the attribute's header is cut
    assert username_fragment(request[:28]) == b"ab12"  # its value is cut: what is there, never more


async def test_a_media_port_in_use_stops_the_server_at_start(classe: RunningServer) -> None:
    from signaling.config import Settings

    settings = Settings(port=classe.settings.port + 1, media_port=classe.settings.media_port)
    server = ClassServer(settings)
    with pytest.raises(OSError, match=f"media port {settings.media_port}"):
        await server.open()


async def test_the_backlog_is_how_long_datagrams_wait_by_the_kernels_stamps() -> None:
    from sfu.adapter.shared_port import SharedPorts
    from sfu.core import MediaStats

    from .conftest import free_udp_port

    ports = SharedPorts(("127.0.0.1",), free_udp_port())
    await ports.open(MediaStats())
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        target = ("127.0.0.1", ports.port)
        assert ports.backlog() == 0.0
        for _ in range(100):
            sender.sendto(bytes(1200), target)
        time.sleep(0.15)  # the loop reads nothing meanwhile: the oldest waits, and it says so
        assert 0.15 <= ports.backlog() < 1.0
        await asyncio.sleep(0.05)  # read now (dropped: no connection has the address)
        # The wait of what was read counts once, at the next measure; then nothing waits.
        assert 0.15 <= ports.backlog() < 1.0
        assert ports.backlog() == 0.0
    finally:
        sender.close()
        ports.close()
