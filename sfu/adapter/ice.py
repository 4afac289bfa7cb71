"""What ICE did, for operators, and which remote addresses it validated.

aioice's sockets hand every datagram that is not STUN to aiortc, whoever sent it: forged DTLS
records from anywhere on the Internet could end a newcomer's handshake. Ours only let through,
besides STUN (how a remote address gets validated), what comes from the remote address of a
candidate pair whose ICE check succeeded, either way: our check answered, or the peer's check
(authenticated with our ICE password, which only the other end of the signaling knows) answered.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from aioice import stun
from aioice.ice import Connection, StunProtocol

from ..core import DropReason, MediaStats

ICE_CONNECT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, float("inf"))


@dataclass
class IceOutcomes:
    """How the process's peer connections ended their ICE, for operators (`/metrics`): connected,
    by the kind of path (the remote candidate of the pair in use: the client's own address
    "host", its NAT's "srflx"/"prflx", or a TURN "relay"), or failed, by the best kind of
    candidate the client had offered (a failure with no "relay" among them: the client had no
    TURN server, or could not reach it). Counts only: no address is kept."""

    connected: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    # Relayed connections by how the browser reaches the TURN server ("udp", "tcp", "tls"): coturn
    # relays to us over UDP whatever the browser used, so only the browser can tell (`relay_path`).
    relayed: Counter[str] = field(default_factory=Counter)
    connect_counts: list[int] = field(default_factory=lambda: [0] * len(ICE_CONNECT_BUCKETS))
    connect_sum: float = 0.0

    def observe_connected(self, path: str, seconds: float) -> None:
        self.connected[path] += 1
        self.connect_counts[bisect.bisect_left(ICE_CONNECT_BUCKETS, seconds)] += 1
        self.connect_sum += seconds


def ice_path(connection: Connection) -> str:
    """The kind of remote candidate of the pair in use ("none" before one is)."""
    pair = connection._nominated.get(1)
    return pair.remote_candidate.type if pair is not None else "none"


def offered(connection: Connection) -> Counter[str]:
    """The kinds of candidates the remote side offered."""
    return Counter(candidate.type for candidate in connection.remote_candidates)


def best_offered(kinds: Counter[str]) -> str:
    for kind in ("relay", "srflx", "prflx", "host"):
        if kinds[kind]:
            return kind
    return "none"


class CheckedStunProtocol(StunProtocol):
    """A host candidate's socket that passes DTLS and SRTP on only from validated remote addresses:
    those whose connectivity check we answered with success, or that answered ours."""

    def __init__(self, receiver: Connection, stats: MediaStats) -> None:
        super().__init__(receiver)
        self.validated: set[tuple[str, int]] = set()  # remote addresses a connectivity check validated
        self._drops = stats.drops

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        # aioice answers a binding request with success only once it has checked the request's
        # integrity against our ICE password: the sender is the peer. Its pair succeeds with this
        # answer and a browser sends its ClientHello at once, before our own check of the pair
        # has come back (or even started, while aioice defers early checks).
        if message.message_class == stun.Class.RESPONSE and message.message_method == stun.Method.BINDING:
            self.validate((addr[0], addr[1]))
        super().send_stun(message, addr)

    def validate(self, addr: tuple[str, int]) -> None:
        self.validated.add(addr)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        packet = cast(bytes, data)
        # RFC 7983: a first byte of 0-3 is STUN, which aioice checks itself (integrity, username).
        if not packet or packet[0] < 4:
            super().datagram_received(packet, addr)
        elif addr in self.validated or (len(addr) > 2 and (addr[0], addr[1]) in self.validated):
            # DTLS or SRTP: straight to the connection, without aioice's attempt to parse it as STUN.
            self.receiver.data_received(packet, self.local_candidate.component)
        else:
            self._drops[DropReason.UNVALIDATED_ADDRESS] += 1
