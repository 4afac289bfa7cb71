"""Ceiling: a bare uvloop UDP fan-out with sequence rewriting and SRTP, no WebRTC at all.

What one Python process can forward at best on this machine: the cost floor for Classe's path.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from typing import Any

import pylibsrtp
import uvloop

from .clients import udp_policy

_SEQ = struct.Struct("!H")


class Forwarder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.subscribers: list[tuple[Any, pylibsrtp.Session, list[int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data.startswith(b"HELLO "):
            index = int(data[6:])
            session = pylibsrtp.Session(udp_policy(index, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
            self.subscribers.append((addr, session, [index * 1000]))
            return
        sendto = self.transport.sendto  # type: ignore[union-attr]
        packet = bytearray(data)
        for addr, session, offset in self.subscribers:
            seq = (((data[2] << 8) | data[3]) + offset[0]) & 0xFFFF
            _SEQ.pack_into(packet, 2, seq)
            sendto(session.protect(bytes(packet)), addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Forwarder, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
