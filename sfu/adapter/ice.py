"""Host candidates on the operator's addresses and UDP port range, instead of aioice's defaults.

aioice binds every interface (loopback excluded) on a random port; an operator must be able to
open one known range in a firewall, and to announce a public address when behind NAT.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass
from typing import Any

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol


class PortRangeExhausted(OSError):
    """Every port of the configured media range is in use."""


@dataclass(frozen=True, slots=True)
class MediaNetwork:
    addresses: tuple[str, ...] = ("127.0.0.1",)
    port_min: int = 40000
    port_max: int = 40999
    announced_address: str | None = None


async def _bind(connection: Connection, address: str, network: MediaNetwork) -> StunProtocol:
    loop = asyncio.get_running_loop()
    ports = list(range(network.port_min, network.port_max + 1))
    random.shuffle(ports)
    for port in ports[:64]:
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: StunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return protocol
    raise PortRangeExhausted(f"no free UDP port in {network.port_min}-{network.port_max} on {address}")


def use_media_network(connection: Connection, network: MediaNetwork) -> None:
    """Make `connection` gather its host candidates from `network`; TURN relays still work."""
    original = connection.get_component_candidates

    async def get_component_candidates(component: int, addresses: list[str], timeout: int = 5) -> list[Any]:
        candidates = []
        for address in network.addresses:
            protocol = await _bind(connection, address, network)
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
