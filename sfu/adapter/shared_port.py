"""One UDP port for every peer connection of the process, as mediasoup's WebRtcServer, LiveKit's
`udp_port` and Jitsi's 10000 do: an operator opens one port instead of a range.

aioice gives each connection sockets of its own. Here every connection's host candidate on an
address is the same socket, and each datagram finds its connection:
- DTLS and SRTP by the remote address, once a connectivity check has validated that address for
  that connection (the first connection to validate an address keeps it while it lives);
- STUN binding requests by the username fragment this process gave the connection (the request's
  USERNAME is "<ours>:<theirs>"; aioice then checks its integrity with our password);
- STUN answers to the connection's own checks by their transaction id.
Anything else is dropped and counted: it reaches no connection, so no class sees another's packets.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from typing import Any, cast

from aioice import stun
from aioice.ice import Connection, StunProtocol

from ..core import DropReason, MediaStats
from .batch import BatchSender
from .ice import CheckedStunProtocol

STUN_HEADER = 20
USERNAME = 0x0006
REQUEST, RESPONSE, ERROR = 0x0000, 0x0100, 0x0110  # STUN class bits of the message type
CLASS_BITS = 0x0110
# Linux's getsockopt(SO_MEMINFO): nine counters, of which the bytes waiting to be read and the
# datagrams dropped for want of room.
SO_MEMINFO = 55
MEMINFO = struct.Struct("9I")
RMEM_ALLOC, DROPS = 0, 8
SKB_OVERHEAD = 1100  # bytes the kernel counts per datagram beyond its length (2,304 for 1,200)
MIN_PACE = 100_000  # bytes/s: below, a backlog is measured as if read at this pace


def username_fragment(data: bytes) -> bytes | None:
    """Ours, in a STUN request's USERNAME ("<ours>:<theirs>"), without parsing the whole message."""
    end = min(len(data), STUN_HEADER + int.from_bytes(data[2:4], "big"))
    offset = STUN_HEADER
    while offset + 4 <= end:
        kind = int.from_bytes(data[offset : offset + 2], "big")
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        if kind == USERNAME:
            value = data[offset + 4 : min(offset + 4 + length, end)]
            return value.split(b":", 1)[0]
        offset += 4 + (length + 3) // 4 * 4
    return None


class SharedSocket(asyncio.DatagramProtocol):
    """The socket of one media address, and the routes from it to each connection's view."""

    def __init__(self, stats: MediaStats) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.by_address: dict[tuple[str, int], SharedPortProtocol] = {}
        self.by_ufrag: dict[bytes, SharedPortProtocol] = {}
        self.by_transaction: dict[bytes, SharedPortProtocol] = {}
        # Media for every connection on this socket leaves in batches (batch.py); STUN and DTLS
        # still go through the transport's sendto.
        self.sender: BatchSender | None = None
        self._stats = stats
        self._drops = stats.drops
        self.read_bytes = 0  # what was read, for the pace at which the backlog drains (load.py)
        self.read_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.sender = BatchSender(self.transport, self._stats)
        self.sock = transport.get_extra_info("socket")

    def meminfo(self) -> tuple[int, ...] | None:
        if self.sock is None:
            return None
        try:
            return MEMINFO.unpack(self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, MEMINFO.size))
        except OSError:  # not Linux
            return None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.read_bytes += len(data)
        self.read_count += 1
        if len(addr) > 2:  # an IPv6 four-tuple
            addr = (addr[0], addr[1])
        # RFC 7983: a first byte of 0-3 is STUN; DTLS (20-63) and SRTP (128-191) go by address.
        if data and data[0] < 4:
            view = self._stun_route(data)
            if view is None:
                self._drops[DropReason.UNROUTABLE_STUN] += 1
            else:
                view.stun_received(data, addr)
            return
        view = self.by_address.get(addr)
        if view is None:
            self._drops[DropReason.UNVALIDATED_ADDRESS] += 1
        else:
            view.receiver.data_received(data, 1)

    def _stun_route(self, data: bytes) -> SharedPortProtocol | None:
        if len(data) < STUN_HEADER:
            return None
        kind = int.from_bytes(data[0:2], "big") & CLASS_BITS
        if kind == REQUEST:
            ufrag = username_fragment(data)
            return self.by_ufrag.get(ufrag) if ufrag is not None else None
        if kind == RESPONSE or kind == ERROR:
            return self.by_transaction.get(data[8:20])
        return None  # indications: aioice has no use for them

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for one remote address: the check that caused it times out by itself."""

    def release(self, view: SharedPortProtocol) -> None:
        """Forget every route to a closing connection."""
        if self.by_ufrag.get(view.ufrag) is view:
            del self.by_ufrag[view.ufrag]
        for addr in view.validated:
            if self.by_address.get(addr) is view:
                del self.by_address[addr]
        for tid in view.transactions:
            if self.by_transaction.get(tid) is view:
                del self.by_transaction[tid]


class SharedPortProtocol(CheckedStunProtocol):
    """One connection's view of a shared socket: aioice sees a host candidate's protocol of its own."""

    def __init__(self, receiver: Connection, stats: MediaStats, shared: SharedSocket) -> None:
        super().__init__(receiver, stats)
        assert shared.transport is not None
        self.shared = shared
        self.transport = shared.transport
        self.ufrag = receiver.local_username.encode()
        if self.ufrag in shared.by_ufrag:
            raise OSError("this ICE username fragment is in use on the shared media port")
        shared.by_ufrag[self.ufrag] = self

    def validate(self, addr: tuple[str, int]) -> None:
        super().validate(addr)
        self.shared.by_address.setdefault(addr, self)

    def stun_received(self, data: bytes, addr: tuple[str, int]) -> None:
        StunProtocol.datagram_received(self, data, addr)

    async def request(
        self,
        request: stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, tuple[str, int]]:
        tid = request.transaction_id
        self.shared.by_transaction[tid] = self
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            if self.shared.by_transaction.get(tid) is self:
                del self.shared.by_transaction[tid]

    async def close(self) -> None:
        # The socket is everyone's: only this connection's routes go.
        self.shared.release(self)
        self.connection_lost(None)


class SharedPorts:
    """The process's shared media sockets, one per media address, all on the same port."""

    def __init__(self, addresses: tuple[str, ...], port: int) -> None:
        self.addresses = addresses
        self.port = port
        self.sockets: dict[str, SharedSocket] = {}
        self._opening: asyncio.Lock | None = None
        self._measured_at: float | None = None  # the last backlog measure, and what was read by then
        self._read = 0

    async def open(self, stats: MediaStats) -> None:
        """Bind every address (at start-up, so that a port in use stops the server at once)."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            for address in self.addresses:
                if address not in self.sockets:
                    self.sockets[address] = await self._bind(address, stats)

    async def _bind(self, address: str, stats: MediaStats) -> SharedSocket:
        shared = SharedSocket(stats)
        try:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: shared, local_addr=(address, self.port)
            )
        except OSError as error:
            raise OSError(error.errno, f"media port {self.port} on {address}: {error.strerror}") from error
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Every connection's media arrives here: larger buffers ride out bursts.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        return shared

    def backlog(self, now: float) -> float | None:
        """How long the datagrams waiting in the sockets will take to read, at the pace they were
        read since the last call (None where the kernel does not say what waits). The kernel
        counts each datagram's buffer (its length and about SKB_OVERHEAD more); a pace under
        MIN_PACE (a loop that read nearly nothing) counts as MIN_PACE."""
        read = sum(s.read_bytes + SKB_OVERHEAD * s.read_count for s in self.sockets.values())
        since, self._measured_at = self._measured_at, now
        pace = (read - self._read) / (now - since) if since is not None and now > since else 0.0
        self._read = read
        infos = [s.meminfo() for s in self.sockets.values()]
        if not infos or any(i is None for i in infos):
            return None
        return sum(i[RMEM_ALLOC] for i in infos if i is not None) / max(pace, MIN_PACE)

    def kernel_drops(self) -> int:
        return sum(i[DROPS] for s in self.sockets.values() if (i := s.meminfo()) is not None)

    def new_ufrag(self) -> str:
        """A username fragment no connection of this process uses (aioice's 4 characters collide)."""
        while True:
            ufrag = secrets.token_hex(8)
            if all(ufrag.encode() not in s.by_ufrag for s in self.sockets.values()):
                return ufrag

    def close(self) -> None:
        for shared in self.sockets.values():
            if shared.transport is not None:
                shared.transport.close()
        self.sockets.clear()
