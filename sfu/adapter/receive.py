"""Datagrams read from a shared media socket in batches, with the kernel's arrival stamps.

uvloop reads one datagram per callback, into a new bytes object and a new address tuple. Here one
`recvmmsg` (through cffi, as `batch.py`'s `sendmmsg`) reads up to CAPACITY waiting datagrams into
slots allocated once, and each sender's address tuple is found by its raw bytes. The kernel stamps
every datagram's arrival (SO_TIMESTAMPNS); only the first of a read has room for its stamp: it
waited longest, and how long is how late the process reads, measured instead of estimated.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from .batch import ffi, lib

CAPACITY = 128  # datagrams per read
SLOT = 2048  # bytes per datagram: media is under 1,500; a longer one is cut, then dropped
SO_TIMESTAMPNS = 35  # Linux; its control message's type (SCM_TIMESTAMPNS) has the same number
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT = 0x2, 0x20, 0x40
CONTROL = 64  # bytes for the first datagram's control messages (the stamp takes STAMP_LENGTH)
STAMP_LENGTH = ffi.sizeof("struct cmsghdr") + ffi.sizeof("struct timespec")
# Where the integers are, in 4-byte words of a message header and of a control message, and in
# 8-byte words of the control message for the stamp's seconds (its nanoseconds follow).
CONTROLLEN_AT = ffi.offsetof("struct msghdr", "msg_controllen") // 4
LEVEL_AT = ffi.offsetof("struct cmsghdr", "cmsg_level") // 4
TYPE_AT = ffi.offsetof("struct cmsghdr", "cmsg_type") // 4
SECONDS_AT = ffi.sizeof("struct cmsghdr") // 8
ADDRESSES = 4096  # senders' addresses remembered; more (a flood of forged ones) starts afresh


class BatchReceiver:
    """The receive slots of one UDP socket. Each slot's iovec, message header and address buffer
    are wired once; `read` returns what one system call brought."""

    def __init__(self, sock: socket.socket, capacity: int = CAPACITY) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.fd = sock.fileno()
        self.family = sock.family
        self.capacity = capacity
        self.truncated = 0  # datagrams longer than a slot, dropped (the caller counts them)
        self.recvmmsg: Any = lib.recvmmsg
        v4 = self.family == socket.AF_INET
        namelen = ffi.sizeof("struct sockaddr_in" if v4 else "struct sockaddr_in6")
        # The bytes after the family: port and IPv4 address; or port, flow, IPv6 address and scope.
        self._keylen = 6 if v4 else namelen - 2
        self._memory = ffi.new("char[]", capacity * SLOT)
        self._names = ffi.new("char[]", capacity * namelen)
        self._iov = ffi.new("struct iovec[]", capacity)
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        self._control = ffi.new("char[]", CONTROL)
        self._first = self._msgs[0].msg_hdr
        # msg_len and msg_flags read as integers, without a struct cdata per datagram.
        self._words = ffi.cast("uint32_t *", self._msgs)
        self._stride = ffi.sizeof("struct mmsghdr") // 4
        self._len_at = ffi.offsetof("struct mmsghdr", "msg_len") // 4
        self._flags_at = ffi.offsetof("struct msghdr", "msg_flags") // 4
        self._slots = [self._memory + i * SLOT for i in range(capacity)]
        self._keys = [self._names + i * namelen + 2 for i in range(capacity)]
        for i in range(capacity):
            self._iov[i].iov_base = self._slots[i]
            self._iov[i].iov_len = SLOT
            header = self._msgs[i].msg_hdr
            header.msg_name = self._names + i * namelen
            header.msg_namelen = namelen  # the kernel writes back the same length, read after read
            header.msg_iov = self._iov + i
            header.msg_iovlen = 1
        self._msgs[0].msg_hdr.msg_control = self._control
        # A look at the oldest waiting datagram's stamp (MSG_PEEK: it stays for the next read).
        self._peek = ffi.new("struct mmsghdr[]", 1)
        self._peek_control = ffi.new("char[]", CONTROL)
        self._peek_buffer = ffi.new("char[]", 1)
        self._peek_iov = ffi.new("struct iovec *", {"iov_base": self._peek_buffer, "iov_len": 1})
        peek = self._peek[0].msg_hdr
        peek.msg_iov = self._peek_iov
        peek.msg_iovlen = 1
        peek.msg_control = self._peek_control
        # Each header's control length and its control message, read and written as integers.
        self._first = Stamp(self._words, self._control)
        self._peeked = Stamp(ffi.cast("uint32_t *", self._peek), self._peek_control)
        self._addresses: dict[bytes, tuple[str, int]] = {}
        self._stamped = 0  # the first datagram's arrival, in ns of the real-time clock (0: none)

    def read(self) -> list[tuple[bytes, tuple[str, int]]]:
        """What waits, up to `capacity` datagrams, oldest first; nothing once the socket is empty.
        Never raises: an error the kernel reports instead of datagrams ends the read."""
        self._first.ready()
        while True:
            count: int = self.recvmmsg(self.fd, self._msgs, self.capacity, MSG_DONTWAIT, ffi.NULL)
            if count >= 0 or ffi.errno != errno.EINTR:
                break
        if count <= 0:
            self._stamped = 0
            return []
        self._stamped = self._first.arrival()
        words, stride, len_at, flags_at = self._words, self._stride, self._len_at, self._flags_at
        slots, keys, keylen = self._slots, self._keys, self._keylen
        addresses, unpack = self._addresses, ffi.unpack
        read = []
        for i in range(count):
            at = i * stride
            if words[at + flags_at] & MSG_TRUNC:
                self.truncated += 1
                continue
            key = unpack(keys[i], keylen)
            addr = addresses.get(key)
            if addr is None:
                addr = self._address(key)
            read.append((unpack(slots[i], words[at + len_at]), addr))
        return read

    def waited(self, now_ns: int | None = None) -> float:
        """Seconds the first datagram of the last read waited in the kernel (0 without one)."""
        return since(self._stamped, now_ns)

    def oldest_wait(self, now_ns: int | None = None) -> float:
        """Seconds the oldest datagram still waiting has waited so far (0 when none waits)."""
        self._peeked.ready()
        count = self.recvmmsg(self.fd, self._peek, 1, MSG_DONTWAIT | MSG_PEEK, ffi.NULL)
        return since(self._peeked.arrival() if count == 1 else 0, now_ns)

    def _address(self, key: bytes) -> tuple[str, int]:
        """The (host, port) Python's own sockets would give, without the flow and scope numbers
        (a scoped link-local host keeps its "%interface")."""
        port = int.from_bytes(key[0:2], "big")
        if self.family == socket.AF_INET:
            host = socket.inet_ntop(socket.AF_INET, key[2:6])
        else:
            host = socket.inet_ntop(socket.AF_INET6, key[6:22])
            scope = int.from_bytes(key[22:26], "little")
            if scope:
                try:
                    host += "%" + socket.if_indextoname(scope)
                except OSError:
                    host += f"%{scope}"
        if len(self._addresses) >= ADDRESSES:
            self._addresses.clear()
        addr = self._addresses[key] = (host, port)
        return addr


class Stamp:
    """The arrival stamp in one message header's control buffer, read and reset as integers (a
    cdata struct access per read costs microseconds)."""

    def __init__(self, header_words: Any, control: Any) -> None:
        self._header = header_words
        self._words = ffi.cast("uint32_t *", control)
        self._longs = ffi.cast("int64_t *", control)

    def ready(self) -> None:
        """Room for the next read's control messages (the kernel wrote back what it used)."""
        self._header[CONTROLLEN_AT] = CONTROL

    def arrival(self) -> int:
        """The datagram's arrival in ns of the real-time clock (0 if the kernel gave no stamp)."""
        words = self._words
        if self._header[CONTROLLEN_AT] < STAMP_LENGTH or words[LEVEL_AT] != socket.SOL_SOCKET:
            return 0
        if words[TYPE_AT] != SO_TIMESTAMPNS:
            return 0
        longs = self._longs
        return int(longs[SECONDS_AT]) * 1_000_000_000 + int(longs[SECONDS_AT + 1])


def since(stamp: int, now_ns: int | None) -> float:
    """Seconds from a stamp to now (0 for no stamp)."""
    if not stamp:
        return 0.0
    now = time.time_ns() if now_ns is None else now_ns
    return max(now - stamp, 0) / 1e9
