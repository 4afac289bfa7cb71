"""The batched send path: packets protected into slots, sent to their addresses in sendmmsg calls."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import SimpleNamespace
from typing import Any

import pylibsrtp
import pytest

from sfu.adapter.batch import CAPACITY, BatchSender, check_platform, ffi, lib
from sfu.adapter.peer import PeerTransport
from sfu.adapter.shared_port import SharedPortProtocol, SharedSocket
from sfu.adapter.srtp import MAX_PACKET, SrtpProtector
from sfu.core import DropReason, MediaStats

KEY = bytes(range(30))
IP_RECVERR = 11  # Linux: report ICMP errors on an unconnected UDP socket (absent from the socket module)


def outbound() -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))


def inbound() -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))


def rtp(seq: int, size: int = 100) -> bytes:
    return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes((seq + i) % 256 for i in range(size))


@asynccontextmanager
async def sender(stats: MediaStats, host: str = "127.0.0.1") -> AsyncIterator[BatchSender]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=(host, 0)
    )
    try:
        yield BatchSender(transport, stats)
    finally:
        transport.close()


@contextmanager
def receivers(count: int, family: int = socket.AF_INET, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((host, 0))
            sock.settimeout(2)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def drain(sock: socket.socket) -> list[bytes]:
    """Everything waiting on `sock` (the batch was sent before this is called)."""
    got = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096))
    except BlockingIOError:
        return got


def slot_bytes(batch: BatchSender, index: int) -> bytes:
    return ffi.buffer(batch.slots[index], batch.lengths[index][0])[:]


def test_only_linux_x86_64_and_aarch64_are_accepted() -> None:
    check_platform("Linux", "x86_64", "little")
    check_platform("Linux", "aarch64", "little")
    refused = (("Darwin", "arm64", "little"), ("Linux", "i686", "little"), ("Linux", "aarch64_be", "big"))
    for system, machine, order in refused:
        with pytest.raises(ImportError, match="needs Linux on x86_64 or aarch64"):
            check_platform(system, machine, order)


async def test_a_slot_holds_what_pylibsrtp_protects() -> None:
    stats = MediaStats()
    reference = outbound()
    async with sender(stats) as batch:
        with receivers(1) as socks:
            name = batch.sockaddr(address(socks[0]))
            protector = SrtpProtector(outbound())
            packets = [rtp(seq, 60 + seq * 20) for seq in range(5)]
            report = bytes([0x80, 200, 0, 6]) + bytes(24)
            expected = [reference.protect(p) for p in packets] + [reference.protect_rtcp(report)]
            batch.queue(protector, packets, False, name)
            batch.queue(protector, [report], True, name)
            assert [slot_bytes(batch, i) for i in range(batch.count)] == expected
            assert batch.queued_bytes == sum(len(p) for p in expected[:5])  # RTP only, as bytes_forwarded
            batch.send()
            assert drain(socks[0]) == expected
            assert stats.bytes_forwarded == sum(len(p) for p in expected[:5])


async def test_a_batch_reaches_each_address_in_order() -> None:
    stats = MediaStats()
    async with sender(stats) as batch:
        with receivers(3) as socks:
            names = [batch.sockaddr(address(s)) for s in socks]
            protectors = [SrtpProtector(outbound()) for _ in socks]
            sent: list[list[bytes]] = [[] for _ in socks]
            # More than one call's worth, interleaved as a flush queues one subscriber after another.
            for seq in range(2 * CAPACITY + 10):
                who = seq % 3
                batch.queue(protectors[who], [rtp(seq)], False, names[who])
                sent[who].append(rtp(seq))
            batch.queue(protectors[0], [bytes([0x80, 200, 0, 6]) + bytes(24)], True, names[0])
            batch.send()
            assert batch.count == 0
            protected_bytes = 0
            for sock, expected in zip(socks, sent, strict=True):
                session = inbound()
                got = drain(sock)
                protected_bytes += sum(len(p) for p in got if p[1] != 200)
                rtp_got = [session.unprotect(p) for p in got if p[1] != 200]
                assert rtp_got == expected
            assert stats.bytes_forwarded == protected_bytes
            assert not any(stats.drops)


async def test_ipv6_and_mapped_ipv4_addresses() -> None:
    stats = MediaStats()
    async with sender(stats, "::") as batch:
        with receivers(1, socket.AF_INET6, "::1") as v6, receivers(1) as v4:
            protector = SrtpProtector(outbound())
            batch.queue(protector, [rtp(1)], False, batch.sockaddr(address(v6[0])))
            batch.queue(protector, [rtp(2)], False, batch.sockaddr(address(v4[0])))  # as ::ffff:127.0.0.1
            batch.send()
            session = inbound()
            assert [session.unprotect(p) for p in (v6[0].recv(4096), v4[0].recv(4096))] == [rtp(1), rtp(2)]


async def test_a_refusing_address_does_not_stop_the_others() -> None:
    stats = MediaStats()
    async with sender(stats) as batch:
        sock = batch.transport.get_extra_info("socket")
        # With IP_RECVERR, the port unreachable that loopback answers at once fails the next send,
        # whichever address it goes to: the worst case for a batch.
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        with receivers(2) as socks:
            closed = address(socks[1])
            socks[1].close()
            good, refusing = batch.sockaddr(address(socks[0])), batch.sockaddr(closed)
            invalid = batch.sockaddr(("127.0.0.1", 0))  # port 0: EINVAL for that datagram, every time
            calls = spy(batch)
            protector = SrtpProtector(outbound())
            for seq in range(20):
                batch.queue(protector, [rtp(seq)], False, (good, refusing, invalid)[seq % 3])
            batch.send()
            session = inbound()
            assert [session.unprotect(p) for p in drain(socks[0])] == [rtp(seq) for seq in range(0, 20, 3)]
            assert any(error == errno.ECONNREFUSED for _, _, error in calls)  # the ICMP error did come
            assert stats.drops[DropReason.SEND_FAILED] == len(range(2, 20, 3))
            assert stats.drops[DropReason.SEND_BUFFER_FULL] == 0


def spy(batch: BatchSender) -> list[tuple[int, int, int]]:
    """Record each sendmmsg call's datagrams asked, result and error (0 if none)."""
    calls = []
    real = batch.sendmmsg

    def recording(fd: int, msgs: Any, count: int, flags: int) -> int:
        result = real(fd, msgs, count, flags)
        calls.append((count, result, ffi.errno if result < 0 else 0))
        return result

    batch.sendmmsg = recording
    return calls


def filling_after(sent: int, error: int) -> Callable[[int, Any, int, int], int]:
    """A sendmmsg whose socket buffer fills after `sent` datagrams."""
    room = [sent]

    def sendmmsg(fd: int, msgs: Any, count: int, flags: int) -> int:
        if not room[0]:
            ffi.errno = error
            return -1
        result: int = lib.sendmmsg(fd, msgs, min(count, room[0]), flags)
        room[0] -= result
        return result

    return sendmmsg


@pytest.mark.parametrize("error", [errno.EAGAIN, errno.ENOBUFS])
async def test_a_full_send_buffer_drops_the_rest_and_counts_it(error: int) -> None:
    stats = MediaStats()
    async with sender(stats) as batch:
        with receivers(1) as socks:
            name = batch.sockaddr(address(socks[0]))
            protector = SrtpProtector(outbound())
            batch.sendmmsg = filling_after(3, error)
            batch.queue(protector, [rtp(seq) for seq in range(10)], False, name)
            batch.queue(protector, [bytes([0x80, 200, 0, 6]) + bytes(24)], True, name)
            batch.send()
            got = drain(socks[0])
            assert len(got) == 3
            assert stats.drops[DropReason.SEND_BUFFER_FULL] == 8
            assert stats.bytes_forwarded == sum(len(p) for p in got)
            # The buffer drained: the next batch goes whole.
            batch.sendmmsg = lib.sendmmsg
            batch.queue(protector, [rtp(seq) for seq in range(10, 15)], False, name)
            batch.send()
            session = inbound()
            assert [session.unprotect(p) for p in drain(socks[0])] == [rtp(seq) for seq in range(10, 15)]
            assert stats.drops[DropReason.SEND_BUFFER_FULL] == 8


async def test_oversized_and_unprotectable_packets_are_counted_and_skipped() -> None:
    stats = MediaStats()
    async with sender(stats) as batch:
        with receivers(1) as socks:
            name = batch.sockaddr(address(socks[0]))
            protector = SrtpProtector(outbound())
            # The same index twice: libsrtp refuses to reuse a keystream.
            batch.queue(protector, [rtp(1), bytes([0x80, 96]) + bytes(MAX_PACKET), rtp(1), rtp(2)], False, name)
            batch.send()
            session = inbound()
            assert [session.unprotect(p) for p in drain(socks[0])] == [rtp(1), rtp(2)]
            assert stats.drops[DropReason.OVERSIZED] == 1
            assert stats.drops[DropReason.SRTP_ERROR] == 1


async def test_nothing_is_sent_on_a_closed_socket() -> None:
    stats = MediaStats()
    async with sender(stats) as batch:
        calls = spy(batch)
        batch.queue(SrtpProtector(outbound()), [rtp(1), rtp(2)], False, batch.sockaddr(("127.0.0.1", 9)))
        batch.transport.close()
        batch.send()
        assert calls == []
        assert stats.drops[DropReason.NOT_CONNECTED] == 2
        assert stats.bytes_forwarded == 0


async def test_a_pair_on_the_shared_socket_sends_in_batches_unless_its_address_cannot() -> None:
    stats = MediaStats()
    shared = SharedSocket(stats)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    shared.open(sock)
    try:
        protocol = object.__new__(SharedPortProtocol)  # aioice's connection plays no part in the choice
        protocol.shared = shared
        pair = SimpleNamespace(protocol=protocol, remote_addr=("127.0.0.1", 9))
        found, batch, name = PeerTransport._find_route(pair)
        assert (found, batch) == (pair, shared.sender)
        assert bytes(ffi.buffer(name))[:8] == bytes([socket.AF_INET, 0, 0, 9, 127, 0, 0, 1])
        v6 = SimpleNamespace(protocol=protocol, remote_addr=("::1", 9))  # no IPv6 on an IPv4 socket
        assert PeerTransport._find_route(v6) == (v6, None, None)
        own = SimpleNamespace(protocol=SimpleNamespace(), remote_addr=("127.0.0.1", 9))  # the range, a relay
        assert PeerTransport._find_route(own) == (own, None, None)
    finally:
        shared.close()
