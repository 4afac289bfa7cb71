"""Protected packets written into preallocated slots, sent with one `sendmmsg` per flush (and the
binding `receive.py` reads the shared media port with, `recvmmsg`).

On the shared media port every subscriber's copy of a packet leaves through one socket: instead
of a bytes object and a `sendto` per copy, libsrtp protects each copy in place in a slot of
memory allocated once, and one system call sends up to `CAPACITY` slots, each to its own
address. `sendmmsg` is reached through cffi in ABI mode (libc, no build step), as libsrtp is
through pylibsrtp's binding; the structures are those of the Linux LP64 ABI, checked at import.
"""

from __future__ import annotations

import asyncio
import errno
import platform
import socket
import sys
from collections.abc import Callable
from typing import Any

import cffi

from ..core import DropReason, MediaStats
from .srtp import BUFFER, MAX_PACKET, PROTECT, PROTECT_RTCP, SrtpProtector

ffi = cffi.FFI()
ffi.cdef(
    """
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr {
        void *msg_name; uint32_t msg_namelen;
        struct iovec *msg_iov; size_t msg_iovlen;
        void *msg_control; size_t msg_controllen;
        int msg_flags;
    };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    struct sockaddr_in { uint16_t sin_family; uint16_t sin_port; uint8_t sin_addr[4]; uint8_t sin_zero[8]; };
    struct sockaddr_in6 {
        uint16_t sin6_family; uint16_t sin6_port; uint32_t sin6_flowinfo;
        uint8_t sin6_addr[16]; uint32_t sin6_scope_id;
    };
    struct timespec { int64_t tv_sec; int64_t tv_nsec; };
    struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; };
    int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
    int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, struct timespec *timeout);
    """
)

# Sizes and offsets of the kernel's structures on Linux x86_64 and aarch64 (both LP64): cffi lays
# out what is declared above, and a mismatch would have the kernel read garbage.
LAYOUT = {
    "struct iovec": (16, {"iov_len": 8}),
    "struct msghdr": (
        56,
        {"msg_namelen": 8, "msg_iov": 16, "msg_iovlen": 24, "msg_control": 32, "msg_controllen": 40, "msg_flags": 48},
    ),
    "struct mmsghdr": (64, {"msg_len": 56}),
    "struct sockaddr_in": (16, {"sin_port": 2, "sin_addr": 4}),
    "struct sockaddr_in6": (28, {"sin6_port": 2, "sin6_addr": 8, "sin6_scope_id": 24}),
    "struct timespec": (16, {"tv_nsec": 8}),
    "struct cmsghdr": (16, {"cmsg_level": 8, "cmsg_type": 12}),
}


def check_platform(system: str, machine: str, byteorder: str) -> None:
    """Refuse, with the reason, a platform whose structures may not be the ones declared here."""
    if system != "Linux" or machine not in ("x86_64", "aarch64") or byteorder != "little":
        raise ImportError(f"sfu.adapter.batch needs Linux on x86_64 or aarch64, not {system} {machine} ({byteorder})")
    for name, (size, offsets) in LAYOUT.items():
        found = ffi.sizeof(name), {field: ffi.offsetof(name, field) for field in offsets}
        if found != (size, offsets):
            raise ImportError(f"sfu.adapter.batch: {name} is laid out as {found}, the kernel expects {size, offsets}")


check_platform(platform.system(), platform.machine(), sys.byteorder)
lib: Any = ffi.dlopen(None)

CAPACITY = 64  # slots per sendmmsg call (one flush of 64 subscribers' copies)
SLOT = BUFFER  # bytes per slot: a packet and what protection adds
BUFFER_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)


def sockaddr(family: int, addr: tuple[str, int]) -> Any:
    """The C address of `addr` for a socket of `family` (an IPv4 peer of an IPv6 socket mapped),
    built once per peer and address. Raises OSError if the address is not of that family."""
    host, port = addr[0], addr[1]
    if family == socket.AF_INET:
        return ffi.new(
            "struct sockaddr_in *",
            {"sin_family": family, "sin_port": socket.htons(port), "sin_addr": list(socket.inet_pton(family, host))},
        )
    host, _, scope = host.partition("%")
    if ":" not in host:
        host = "::ffff:" + host
    return ffi.new(
        "struct sockaddr_in6 *",
        {
            "sin6_family": family,
            "sin6_port": socket.htons(port),
            "sin6_addr": list(socket.inet_pton(family, host)),
            "sin6_scope_id": (int(scope) if scope.isdigit() else socket.if_nametoindex(scope)) if scope else 0,
        },
    )


class BatchSender:
    """The send slots of one UDP socket: `queue` protects packets into them, `send` sends them.

    Each slot's iovec and message header are wired once; per packet only the slot's bytes, its
    length (libsrtp writes it straight into the iovec, whose upper half stays zero) and its
    destination change."""

    def __init__(self, transport: asyncio.DatagramTransport, stats: MediaStats, capacity: int = CAPACITY) -> None:
        sock = transport.get_extra_info("socket")
        self.transport = transport
        self.fd: int = sock.fileno()
        self.family: int = sock.family
        self.stats = stats
        self.capacity = capacity
        self.count = 0  # slots filled, sent by the next `send`
        self.queued_bytes = 0  # RTP bytes in the filled slots (stats.bytes_forwarded counts RTP)
        self.sendmmsg: Callable[[int, Any, int, int], int] = lib.sendmmsg
        self._memory = ffi.new("char[]", capacity * SLOT)
        self._iov = ffi.new("struct iovec[]", capacity)
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        namelen = ffi.sizeof("struct sockaddr_in" if self.family == socket.AF_INET else "struct sockaddr_in6")
        self.slots = [self._memory + i * SLOT for i in range(capacity)]
        self.lengths = [ffi.cast("int *", ffi.addressof(self._iov[i], "iov_len")) for i in range(capacity)]
        self.names = [ffi.cast("void **", ffi.addressof(self._msgs[i].msg_hdr, "msg_name")) for i in range(capacity)]
        self.counted = [0] * capacity  # each slot's RTP bytes, taken back if it is not sent
        self.held: list[Any] = [None] * capacity  # each slot's address, kept alive until it is sent
        for i in range(capacity):
            self._iov[i].iov_base = self.slots[i]
            header = self._msgs[i].msg_hdr
            header.msg_iov = self._iov + i
            header.msg_iovlen = 1
            header.msg_namelen = namelen

    def sockaddr(self, addr: tuple[str, int]) -> Any:
        return sockaddr(self.family, addr)

    def queue(self, protector: SrtpProtector, packets: list[bytes], rtcp: bool, name: Any) -> None:
        """Protect each packet into the next free slot, addressed to `name` (from `sockaddr`);
        a full batch is sent at once."""
        srtp = protector.srtp
        protect = PROTECT_RTCP if rtcp else PROTECT
        drops = self.stats.drops
        slots, lengths, names, counted, held = self.slots, self.lengths, self.names, self.counted, self.held
        memmove = ffi.memmove
        capacity = self.capacity
        count = self.count
        queued = 0
        for packet in packets:
            size = len(packet)
            if size > MAX_PACKET:
                drops[DropReason.OVERSIZED] += 1
                continue
            if count == capacity:
                self.count = count
                self.queued_bytes += queued
                self.send()
                count = queued = 0
            slot = slots[count]
            length = lengths[count]
            memmove(slot, packet, size)
            length[0] = size
            if protect(srtp, slot, length):
                drops[DropReason.SRTP_ERROR] += 1
                continue
            names[count][0] = name
            held[count] = name
            if not rtcp:
                size = length[0]
                counted[count] = size
                queued += size
            else:
                counted[count] = 0
            count += 1
        self.count = count
        self.queued_bytes += queued

    def send(self) -> None:
        """Send the filled slots, in order. A full socket buffer drops the rest (counted); any other
        error drops only the datagram it is reported on, after one retry: an ICMP error caused by
        an earlier datagram is reported on the next send, whatever its destination. Never raises."""
        count = self.count
        if not count:
            return
        sent_bytes = self.queued_bytes
        self.count = self.queued_bytes = 0
        stats = self.stats
        if self.transport.is_closing():  # its descriptor may already belong to another file
            stats.drops[DropReason.NOT_CONNECTED] += count
            return
        start = 0
        retried = -1
        while start < count:
            sent = self.sendmmsg(self.fd, self._msgs + start, count - start, 0)
            if sent > 0:
                start += sent
                continue
            error = ffi.errno
            if error == errno.EINTR:
                continue
            if error in BUFFER_FULL:
                stats.drops[DropReason.SEND_BUFFER_FULL] += count - start
                sent_bytes -= sum(self.counted[start:count])
                break
            if retried != start:
                retried = start
                continue
            stats.drops[DropReason.SEND_FAILED] += 1
            sent_bytes -= self.counted[start]
            start += 1
        stats.bytes_forwarded += sent_bytes
