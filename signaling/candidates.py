"""The client's ICE candidates, trickled or written in its SDP, checked before aiortc gets them.

aioice acts on what a remote candidate names: it sends connectivity checks to its address, and
it resolves a `.local` name (a browser hiding its address, RFC draft "mDNS ICE candidates") by
asking the local network in multicast. The server never asks anyone about a client's candidate:
mDNS candidates are left out, in the SDP as trickled. A browser that hides its address this way
still connects, as its own checks reach the server's candidates and give away its address (a
peer-reflexive candidate). For that, the end of candidates is kept from aioice while a
connection has no address to check (it would give up at once, before the client's checks come).
Each peer connection takes at most MAX_REMOTE_CANDIDATES addresses, so that one participant
cannot make the server check hundreds.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aioice.mdns import is_mdns_hostname
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from .protocol import ProtocolError

# A browser gathers a handful of candidates per connection (each address, TCP ones, its NAT's),
# and a TURN server adds three (UDP, TCP, TLS); the SDP's and the trickled ones count together.
MAX_REMOTE_CANDIDATES = 30
KINDS = ("host", "srflx", "relay")  # what aioice pairs (peer-reflexive ones are learnt, not signalled)
TRANSPORTS = ("udp", "tcp")

Address = tuple[str, str, str]  # transport, address, port: what aioice tells candidates apart by


def parse(fields: dict[str, Any], ref: Any) -> RTCIceCandidate | None:
    """A trickled candidate (its line checked by the codec for size only), or None for an mDNS
    one, which is left out. Raises `bad_candidate` for a line aiortc or aioice could not use."""
    line = fields["candidate"]
    bits = line.removeprefix("candidate:").split()
    if not line.startswith("candidate:") or len(bits) < 8 or bits[6] != "typ":
        raise ProtocolError(
            "bad_candidate",
            "a candidate reads 'candidate:<foundation> <component> <transport> <priority> "
            "<address> <port> typ <type> …'",
            ref,
        )
    try:
        candidate = candidate_from_sdp(" ".join(bits))
    except (ValueError, IndexError, AssertionError):
        raise ProtocolError("bad_candidate", "the candidate's numbers are not numbers", ref) from None
    if candidate.protocol.lower() not in TRANSPORTS or candidate.type not in KINDS:
        raise ProtocolError(
            "bad_candidate", f"a candidate's transport is udp or tcp and its type one of {', '.join(KINDS)}", ref
        )
    if not (1 <= candidate.component <= 256 and 0 <= candidate.port <= 65535 and 0 <= candidate.priority < 2**32):
        raise ProtocolError("bad_candidate", "a candidate's component, port or priority is out of range", ref)
    if is_mdns_hostname(candidate.ip):
        return None
    try:
        ipaddress.ip_address(candidate.ip)
    except ValueError:
        raise ProtocolError("bad_candidate", "a candidate's address is an IP address (or an mDNS name)", ref) from None
    candidate.sdpMid = fields["sdpMid"]
    candidate.sdpMLineIndex = fields["sdpMLineIndex"]
    return candidate


def address(candidate: RTCIceCandidate) -> Address:
    return (candidate.protocol.lower(), candidate.ip, str(candidate.port))


class RemoteCandidates:
    """The distinct addresses one peer connection was given, in its SDP or trickled, up to the cap."""

    def __init__(self, limit: int = MAX_REMOTE_CANDIDATES) -> None:
        self.limit = limit
        self.addresses: set[Address] = set()

    def admit(self, candidate: Address) -> bool:
        """Whether the connection may take this address (known already, or within the cap)."""
        if candidate in self.addresses:
            return True
        if len(self.addresses) >= self.limit:
            return False
        self.addresses.add(candidate)
        return True

    def from_sdp(self, sdp: str) -> str | None:
        """The SDP without its mDNS candidates (and without its end of candidates while there is no
        address to check), its other addresses admitted; None (nothing admitted) if they would go
        beyond the cap. Lines it cannot read are left to aiortc's parser, which refuses them."""
        lines = sdp.splitlines(keepends=True)
        kept = []
        found: set[Address] = set()
        for line in lines:
            if line.startswith("a=candidate:"):
                bits = line[len("a=candidate:") :].split()
                if len(bits) >= 6:
                    if is_mdns_hostname(bits[4]):
                        continue
                    found.add((bits[2].lower(), bits[4], bits[5]))
            kept.append(line)
        if len(self.addresses | found) > self.limit:
            return None
        self.addresses |= found
        if not self.addresses:
            kept = [line for line in kept if not line.startswith("a=end-of-candidates")]
        return "".join(kept)
