"""The batched receive path of the shared media port: recvmmsg slots, addresses, arrival stamps, and
control datagrams served before the media of the same read."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from sfu.adapter import receive
from sfu.adapter.receive import SLOT, BatchReceiver
from sfu.adapter.shared_port import SharedSocket
from sfu.core import DropReason, MediaStats


@contextmanager
def bound(family: int = socket.AF_INET, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((host, 0))
    try:
        yield sock
    finally:
        sock.close()


def target(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def test_a_read_brings_what_waits_oldest_first_with_each_senders_address() -> None:
    with bound() as server, bound() as a, bound() as b:
        receiver = BatchReceiver(server, capacity=4)
        assert receiver.read() == []
        for i in range(6):
            (a if i % 2 else b).sendto(bytes([i]) * (i + 1), target(server))
        first = receiver.read()
        assert first == [(bytes([i]) * (i + 1), target(a if i % 2 else b)) for i in range(4)]
        second = receiver.read()
        assert [data for data, _ in second] == [b"\x04" * 5, b"\x05" * 6]
        assert receiver.read() == []


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_ipv6_sockets_give_the_addresses_python_would(host: str) -> None:
    with bound(socket.AF_INET6, "::") as server, bound(socket.AF_INET6 if ":" in host else socket.AF_INET, host) as c:
        receiver = BatchReceiver(server)
        c.sendto(b"hello", ("::1" if ":" in host else "127.0.0.1", server.getsockname()[1]))
        time.sleep(0.05)
        (data, addr), *_ = receiver.read()
        expected = ("::ffff:127.0.0.1", c.getsockname()[1]) if host == "127.0.0.1" else target(c)
        assert (data, addr) == (b"hello", expected)


def test_a_datagram_longer_than_a_slot_is_cut_and_dropped_the_others_kept() -> None:
    with bound() as server, bound() as c:
        receiver = BatchReceiver(server)
        c.sendto(b"a", target(server))
        c.sendto(bytes(SLOT + 1), target(server))
        c.sendto(bytes(SLOT), target(server))
        c.sendto(b"", target(server))
        got = receiver.read()
        assert [len(data) for data, _ in got] == [1, SLOT, 0]
        assert receiver.truncated == 1


def test_forged_sender_addresses_cannot_grow_the_address_memory(monkeypatch: Any) -> None:
    monkeypatch.setattr(receive, "ADDRESSES", 3)
    with bound() as server:
        receiver = BatchReceiver(server)
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(10)]
        try:
            for sock in senders:
                sock.bind(("127.0.0.1", 0))
                sock.sendto(b"x", target(server))
            got = receiver.read()
            assert [addr for _, addr in got] == [target(sock) for sock in senders]
            assert len(receiver._addresses) <= 3
        finally:
            for sock in senders:
                sock.close()


def test_the_kernel_stamps_say_how_long_the_oldest_waited() -> None:
    with bound() as server, bound() as c:
        receiver = BatchReceiver(server)
        assert receiver.oldest_wait() == 0.0
        c.sendto(b"old", target(server))
        time.sleep(0.2)
        c.sendto(b"new", target(server))
        assert 0.2 <= receiver.oldest_wait() < 1.0
        assert receiver.oldest_wait() >= 0.2  # a look leaves it waiting
        assert [data for data, _ in receiver.read()] == [b"old", b"new"]
        assert 0.2 <= receiver.waited() < 1.0  # the first of the read waited longest
        assert receiver.oldest_wait() == 0.0


class Recorder:
    """A connection's view as the shared socket sees it: what it was handed, in order."""

    def __init__(self, log: list[bytes]) -> None:
        self.log = log
        self.receiver = SimpleNamespace(data_received=lambda data, component: log.append(data))

    def stun_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.append(data)


async def test_stun_dtls_and_rtcp_are_served_before_the_rtp_of_the_same_read() -> None:
    stats = MediaStats()
    shared = SharedSocket(stats)
    with bound() as server, bound() as peer, bound() as stranger:
        shared.open(server)
        try:
            log: list[bytes] = []
            view: Any = Recorder(log)
            shared.by_address[target(peer)] = view
            shared.by_ufrag[b"0123456789abcdef"] = view
            rtp = [bytes([0x80, 96, 0, i]) + bytes(20) for i in range(3)]
            rtcp = bytes([0x80, 200]) + bytes(26)  # a sender report
            dtls = b"\x16\xfe\xfd" + bytes(30)
            stun = b"\x00\x01\x00\x18\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x12" + b"0123456789abcdef:x\x00\x00"
            # All sent before the event loop reads: one read brings them in this order.
            for datagram in (rtp[0], rtp[1], rtcp, dtls, rtp[2], stun):
                peer.sendto(datagram, target(server))
            stranger.sendto(rtp[0], target(server))  # no check validated this address
            peer.sendto(b"\x80", target(server))  # too short to be RTP or RTCP: handed on, dropped there
            await asyncio.sleep(0.1)
            assert log == [rtcp, dtls, stun, b"\x80", *rtp]
            assert stats.drops[DropReason.UNVALIDATED_ADDRESS] == 1
            assert shared.longest_wait > 0
        finally:
            shared.close()


async def test_the_shared_socket_counts_what_it_cannot_read_or_route() -> None:
    stats = MediaStats()
    shared = SharedSocket(stats)
    with bound() as server, bound() as c:
        shared.open(server)
        try:
            c.sendto(bytes(SLOT + 100), target(server))
            c.sendto(b"", target(server))
            c.sendto(b"\x00\x01", target(server))  # a STUN first byte, no header
            await asyncio.sleep(0.1)
            assert stats.drops[DropReason.OVERSIZED] == 1
            assert stats.drops[DropReason.UNVALIDATED_ADDRESS] == 1  # the empty one: nobody's address
            assert stats.drops[DropReason.UNROUTABLE_STUN] == 1
        finally:
            shared.close()
        # Closed: nothing is read any more, and a send is counted, not raised.
        assert shared.transport is not None and shared.transport.is_closing()
        shared.transport.sendto(b"x", target(c))
        assert stats.drops[DropReason.NOT_CONNECTED] == 1


async def test_a_datagram_whose_handling_raises_does_not_lose_the_rest_of_the_read() -> None:
    shared = SharedSocket(MediaStats())
    with bound() as server, bound() as peer:
        shared.open(server)
        try:
            log: list[bytes] = []

            def handle(data: bytes, component: int) -> None:
                if data[3] == 1:
                    raise RuntimeError("a defect reached by one packet")
                log.append(data)

            shared.by_address[target(peer)] = SimpleNamespace(receiver=SimpleNamespace(data_received=handle))  # type: ignore[assignment]
            for i in range(4):
                peer.sendto(bytes([0x80, 96, 0, i]) + bytes(20), target(server))
            await asyncio.sleep(0.1)
            assert [data[3] for data in log] == [0, 2, 3]
            assert shared.failures == 1
        finally:
            shared.close()
