"""The load generator's own cheap media path: aiortc negotiates, packets bypass its RTP stack.

Without this, each client would run aiortc's receiver (jitter buffer, decoder thread) and 200
subscribers would measure the client machine, not the server.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import RTCPeerConnection

TRAILER = struct.Struct("!QI")  # send time (monotonic ns), packet id: the last 12 payload bytes


def neuter(pc: RTCPeerConnection) -> None:
    """Keep aiortc's senders and receivers from starting their tasks and decoder threads."""
    for transceiver in pc.getTransceivers():

        async def noop(parameters: Any) -> None:
            return None

        transceiver.sender.send = noop  # type: ignore[method-assign]
        transceiver.receiver.receive = noop  # type: ignore[method-assign]


class FastPath:
    """Encrypts and sends RTP straight to the nominated ICE pair; hands decrypted RTP to a callback."""

    def __init__(self, pc: RTCPeerConnection, on_rtp: Callable[[bytes], None] | None = None) -> None:
        self.dtls = pc.getTransceivers()[0].receiver.transport
        self.ice = self.dtls.transport._connection
        self.on_rtp = on_rtp
        put = self.ice._queue.put_nowait
        dtls = self.dtls

        def data_received(data: bytes, component: int) -> None:
            rx = dtls._rx_srtp
            if rx is None or not 127 < data[0] < 192:
                put((data, component))
            elif not 191 < data[1] < 224 and self.on_rtp is not None:
                try:
                    self.on_rtp(rx.unprotect(data))
                except pylibsrtp.Error:
                    pass

        self.ice.data_received = data_received  # type: ignore[method-assign]

    @property
    def connected(self) -> bool:
        return self.dtls._tx_srtp is not None and 1 in self.ice._nominated

    def send(self, packet: bytes) -> None:
        pair = self.ice._nominated.get(1)
        if pair is not None and self.dtls._tx_srtp is not None:
            pair.protocol.transport.sendto(self.dtls._tx_srtp.protect(packet), pair.remote_addr)


class LatencyRecorder:
    """Per-packet one-way delay, publisher to subscriber, from the trailer the publisher wrote."""

    def __init__(self) -> None:
        self.delays_us: list[float] = []
        self.ids: set[int] = set()
        self.window: tuple[int, int] | None = None

    def __call__(self, packet: bytes) -> None:
        sent, ident = TRAILER.unpack_from(packet, len(packet) - 12)
        window = self.window
        if window is not None and window[0] <= sent < window[1]:
            self.delays_us.append((time.monotonic_ns() - sent) / 1000)
            # each publisher numbers its packets from 0: the stream's SSRC tells publishers apart
            self.ids.add(int.from_bytes(packet[8:12]) << 32 | ident)


class Downlink:
    """What one subscriber receives, counted from the clear RTP header without decrypting.

    A class of 30 with cameras sends its clients tens of thousands of packets a second: the load
    generator can count them (bytes, packets by kind, sequence gaps per SSRC) but not decrypt them
    all. One RTP packet in `sample` is decrypted to read the publisher's send-time trailer.
    Counting happens between `open()` and `close()`; RTCP is counted in the bytes and dropped.
    """

    def __init__(self, pc: RTCPeerConnection, sample: int = 16) -> None:
        self.kinds: dict[int, str] = {}  # payload type -> "audio" / "video", from the offer
        self.sample = sample
        self.open_at = 0
        self.reset()
        dtls = pc.getTransceivers()[0].receiver.transport
        ice = dtls.transport._connection
        put = ice._queue.put_nowait

        def data_received(data: bytes, component: int) -> None:
            rx = dtls._rx_srtp
            if rx is None or not 127 < data[0] < 192:
                put((data, component))  # DTLS
                return
            if not self.counting:
                return
            size = len(data)
            self.bytes += size
            second = data[1]
            if 191 < second < 224:  # RTCP
                self.rtcp_bytes += size
                return
            kind = self.kinds.get(second & 0x7F, "other")
            self.packets[kind] = self.packets.get(kind, 0) + 1
            self.kind_bytes[kind] = self.kind_bytes.get(kind, 0) + size
            seq = (data[2] << 8) | data[3]
            ssrc = data[8:12]
            state = self.streams.get(ssrc)
            if state is None:
                self.streams[ssrc] = [seq, seq, 1]
            else:
                top = state[1]
                ext = top + ((seq - top + 0x8000) & 0xFFFF) - 0x8000
                if ext > top:
                    state[1] = ext
                state[2] += 1
            self.seen += 1
            if self.seen % self.sample == 0:
                try:
                    packet = rx.unprotect(data)
                except pylibsrtp.Error:
                    return
                sent, _ = TRAILER.unpack_from(packet, len(packet) - 12)
                self.delays_us.append((time.monotonic_ns() - sent) / 1000)

        ice.data_received = data_received  # type: ignore[method-assign]

    def reset(self) -> None:
        self.counting = False
        self.bytes = self.rtcp_bytes = self.seen = 0
        self.packets: dict[str, int] = {}
        self.kind_bytes: dict[str, int] = {}
        self.streams: dict[bytes, list[int]] = {}  # ssrc -> [first extended seq, highest, received]
        self.delays_us: list[float] = []

    def open(self) -> None:
        self.reset()
        self.counting = True

    def close(self) -> None:
        self.counting = False

    def expected(self) -> int:
        """Packets the server numbered for this subscriber in the window (gaps are losses)."""
        return sum(top - first + 1 for first, top, _ in self.streams.values())

    def received(self) -> int:
        return sum(count for _, _, count in self.streams.values())


class Tally:
    """What many subscribers receive together, counted at their sockets: the cheapest receiver.

    Subscribers `attach` their peer connection once it has gathered: RTP packets are counted in
    the socket callback itself, before aioice tries them as STUN (an exception per packet) and
    without decrypting, except one in `sample`, decrypted to read the publisher's send-time trailer
    for the delay. RTCP is dropped; STUN and DTLS go on as before. One tally for all subscribers, so
    that a load generator can take a server past saturation and stay the cheaper side.
    """

    def __init__(self, sample: int = 16) -> None:
        self.sample = sample
        self.counting = False
        self.received = 0
        self.delays_us: list[float] = []
        self.seen: list[list[int]] = []  # each subscriber's RTP packets so far, in a window or not

    def open(self) -> None:
        self.received = 0
        self.delays_us = []
        self.counting = True

    def close(self) -> None:
        self.counting = False

    def attach(self, pc: RTCPeerConnection) -> None:
        dtls = pc.getTransceivers()[0].receiver.transport
        # Each subscriber samples its own packets: a count shared by all would sample the same
        # places in the server's fan-out order, whose delays differ.
        mine = [0]
        self.seen.append(mine)
        for protocol in dtls.transport._connection._protocols:
            other = protocol.datagram_received

            def datagram_received(data: bytes, addr: Any, other: Callable[[bytes, Any], None] = other) -> None:
                if not 127 < data[0] < 192:  # STUN, DTLS
                    other(data, addr)
                elif not 191 < data[1] < 224:  # RTP, not RTCP
                    mine[0] += 1
                    if self.counting:
                        self.received += 1
                    # decrypted between windows too: libsrtp guesses a packet's rollover counter from the
                    # last one it decrypted, and loses it after 32,768 packets unseen
                    if mine[0] % self.sample == 0 and dtls._rx_srtp is not None:
                        try:
                            packet = dtls._rx_srtp.unprotect(data)
                        except pylibsrtp.Error:
                            return
                        if self.counting:
                            sent, _ = TRAILER.unpack_from(packet, len(packet) - 12)
                            self.delays_us.append((time.monotonic_ns() - sent) / 1000)

            protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]

    @staticmethod
    def connected(pc: RTCPeerConnection) -> bool:
        """DTLS done: the subscriber can decrypt what it receives."""
        return pc.getTransceivers()[0].receiver.transport._rx_srtp is not None
