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
import logging
import secrets
import socket
import struct
from typing import Any

from aioice import stun
from aioice.ice import Connection, StunProtocol

from ..core import DropReason, MediaStats
from .batch import BatchSender
from .ice import CheckedStunProtocol
from .receive import BatchReceiver

log = logging.getLogger(__name__)
STUN_HEADER = 20
USERNAME = 0x0006
REQUEST, RESPONSE, ERROR = 0x0000, 0x0100, 0x0110  # STUN class bits of the message type
CLASS_BITS = 0x0110
# Linux's getsockopt(SO_MEMINFO): nine counters, of which the datagrams dropped for want of room.
SO_MEMINFO = 55
MEMINFO = struct.Struct("9I")
DROPS = 8


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


class SocketTransport(asyncio.DatagramTransport):
    """The shared socket as aioice's protocols and the batch sender use a transport. STUN and DTLS
    leave with a plain non-blocking sendto; one that does not fit in the send buffer is dropped
    and counted, as a batch's datagrams are (their senders send them again)."""

    def __init__(self, sock: socket.socket, stats: MediaStats) -> None:
        super().__init__({"socket": sock, "sockname": sock.getsockname()})
        self._sock = sock
        self._drops = stats.drops

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._sock.fileno() < 0:
            self._drops[DropReason.NOT_CONNECTED] += 1
            return
        try:
            self._sock.sendto(data, addr)
        except BlockingIOError:
            self._drops[DropReason.SEND_BUFFER_FULL] += 1
        except OSError:
            self._drops[DropReason.SEND_FAILED] += 1

    def is_closing(self) -> bool:
        return self._sock.fileno() < 0

    def close(self) -> None:
        """The socket is every connection's: it closes with the port (SharedSocket.close)."""


class SharedSocket:
    """The socket of one media address, and the routes from it to each connection's view.

    It is read in batches (receive.py): of the datagrams one read brings, STUN, DTLS and RTCP are
    served first, then the RTP, so that connectivity checks, handshakes and feedback wait behind at
    most one read of media, not behind every packet queued before them."""

    def __init__(self, stats: MediaStats) -> None:
        self.transport: SocketTransport | None = None
        self.sock: socket.socket | None = None
        self.by_address: dict[tuple[str, int], SharedPortProtocol] = {}
        self.by_ufrag: dict[bytes, SharedPortProtocol] = {}
        self.by_transaction: dict[bytes, SharedPortProtocol] = {}
        # Media for every connection on this socket leaves in batches (batch.py); STUN and DTLS
        # through the transport's sendto.
        self.sender: BatchSender | None = None
        self.receiver: BatchReceiver | None = None
        self.longest_wait = 0.0  # seconds a datagram waited to be read, at most, since last asked
        self.failures = 0  # datagrams whose handling raised
        self._stats = stats
        self._drops = stats.drops

    def open(self, sock: socket.socket) -> None:
        """Serve a bound non-blocking socket from now on."""
        self.sock = sock
        self.transport = SocketTransport(sock, self._stats)
        self.sender = BatchSender(self.transport, self._stats)
        self.receiver = BatchReceiver(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read_ready)

    def close(self) -> None:
        if self.sock is not None and self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()

    def oldest_wait(self) -> float:
        """Seconds the oldest datagram still waiting has waited (0 when none waits)."""
        return self.receiver.oldest_wait() if self.receiver is not None and self.sock is not None else 0.0

    def meminfo(self) -> tuple[int, ...] | None:
        if self.sock is None or self.sock.fileno() < 0:
            return None
        try:
            return MEMINFO.unpack(self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, MEMINFO.size))
        except OSError:  # not Linux
            return None

    def _read_ready(self) -> None:
        """One read: control first, then media. A full read leaves the rest to the next turn of
        the event loop, after its timers and the signaling."""
        receiver = self.receiver
        assert receiver is not None
        datagrams = receiver.read()
        drops = self._drops
        if receiver.truncated:
            drops[DropReason.OVERSIZED] += receiver.truncated
            receiver.truncated = 0
        if not datagrams:
            return
        wait = receiver.waited()
        if wait > self.longest_wait:
            self.longest_wait = wait
        by_address = self.by_address
        media = []
        for data, addr in datagrams:
            try:
                # RFC 7983: a first byte of 0-3 is STUN; DTLS (20-63) and SRTP (128-191) by address.
                first = data[0] if data else 256  # empty: of no kind, dropped further on
                if first < 4:
                    view = self._stun_route(data)
                    if view is None:
                        drops[DropReason.UNROUTABLE_STUN] += 1
                    else:
                        view.stun_received(data, addr)
                    continue
                view = by_address.get(addr)
                if view is None:
                    drops[DropReason.UNVALIDATED_ADDRESS] += 1
                elif 127 < first < 192 and len(data) > 1 and not 191 < data[1] < 224:  # RTP, not RTCP (RFC 5761)
                    media.append((data, view))
                else:
                    view.receiver.data_received(data, 1)
            except Exception:
                self._failed()
        for data, view in media:
            try:
                view.receiver.data_received(data, 1)
            except Exception:
                self._failed()

    def _failed(self) -> None:
        """A datagram whose handling raised (a defect): the rest of the read goes on. Logged at the
        1st, 2nd, 4th, 8th... time, so that a packet made to raise cannot flood the log."""
        self.failures += 1
        if self.failures & (self.failures - 1) == 0:
            log.exception("handling a media datagram failed (%d times so far)", self.failures)

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
            family, kind, proto, _, where = (
                await asyncio.get_running_loop().getaddrinfo(address, self.port, type=socket.SOCK_DGRAM)
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                # Every connection's media arrives here: larger buffers ride out bursts.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
                sock.bind(where)
            except OSError:
                sock.close()
                raise
        except OSError as error:
            raise OSError(error.errno, f"media port {self.port} on {address}: {error.strerror}") from error
        shared.open(sock)
        return shared

    def backlog(self) -> float:
        """The longest a datagram waited to be read since the last call, or has been waiting so far
        (the kernel's arrival stamps against the clock), in seconds."""
        longest = 0.0
        for shared in self.sockets.values():
            longest = max(longest, shared.longest_wait, shared.oldest_wait())
            shared.longest_wait = 0.0
        return longest

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
            shared.close()
        self.sockets.clear()
