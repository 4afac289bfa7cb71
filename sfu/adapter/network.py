"""Host candidates on the operator's addresses and UDP ports, instead of aioice's defaults.

aioice binds every interface (loopback excluded) on a random port; an operator must be able to
open one known port (`port`: every connection shares it, `shared_port.py`) or one known range
(each connection binds its own port in `port_min`-`port_max`), and to announce a public address
when behind NAT.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import CandidatePair, Connection, StunProtocol

from ..core import MediaStats
from .ice import CheckedStunProtocol
from .shared_port import SharedPortProtocol, SharedPorts


class PortRangeExhausted(OSError):
    """Every port of the configured media range is in use."""


class MediaNetwork:
    """Where this process's media candidates live: built once, shared by every class."""

    def __init__(
        self,
        addresses: tuple[str, ...] = ("127.0.0.1",),
        port_min: int = 40000,
        port_max: int = 40999,
        announced_address: str | None = None,
        port: int = 0,
    ) -> None:
        self.addresses = addresses
        self.port_min = port_min
        self.port_max = port_max
        self.announced_address = announced_address
        self.port = port
        self.shared = SharedPorts(addresses, port) if port else None

    async def open(self, stats: MediaStats) -> None:
        """Bind the shared port on every address, if one is set (at start-up: a port in use stops
        the server at once, instead of failing the first join)."""
        if self.shared is not None:
            await self.shared.open(stats)

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()

    def backlog(self) -> float | None:
        """The longest a datagram waited to be read in the shared sockets since the last call, in
        seconds (None with a socket per connection: thousands of them are not worth asking)."""
        return self.shared.backlog() if self.shared is not None else None

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped because a shared socket's receive buffer was full."""
        return self.shared.kernel_drops() if self.shared is not None else 0

    async def host_protocol(self, connection: Connection, address: str, stats: MediaStats) -> StunProtocol:
        if self.shared is not None:
            await self.shared.open(stats)
            return SharedPortProtocol(connection, stats, self.shared.sockets[address])
        return await self._bind(connection, address, stats)

    async def _bind(self, connection: Connection, address: str, stats: MediaStats) -> StunProtocol:
        loop = asyncio.get_running_loop()
        ports = list(range(self.port_min, self.port_max + 1))
        random.shuffle(ports)
        for port in ports[:64]:
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: CheckedStunProtocol(connection, stats), local_addr=(address, port)
                )
            except OSError:
                continue
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            return protocol
        raise PortRangeExhausted(f"no free UDP port in {self.port_min}-{self.port_max} on {address}")


def use_media_network(connection: Connection, network: MediaNetwork, stats: MediaStats) -> None:
    """Make `connection` gather its host candidates from `network`; TURN relays still work.
    Call before the local description is made: on a shared port, the username fragment routes
    the peer's checks, so it is chosen here, unique in the process."""
    original = connection.get_component_candidates
    check_state = connection.check_state
    if network.shared is not None:
        connection._local_username = network.shared.new_ufrag()

    def check_state_validating(pair: CandidatePair, state: CandidatePair.State) -> None:
        check_state(pair, state)
        if state == CandidatePair.State.SUCCEEDED and isinstance(pair.protocol, CheckedStunProtocol):
            pair.protocol.validate(pair.remote_addr)

    async def get_component_candidates(component: int, addresses: list[str], timeout: int = 5) -> list[Any]:
        candidates = []
        for address in network.addresses:
            protocol = await network.host_protocol(connection, address, stats)
            host = protocol.transport.get_extra_info("sockname")
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host[0]),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=network.announced_address or host[0],
                port=host[1],
                type="host",
            )
            connection._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        if connection.turn_server is not None:
            candidates += await original(component=component, addresses=[], timeout=timeout)
        return candidates

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]
    connection.check_state = check_state_validating  # type: ignore[method-assign]
