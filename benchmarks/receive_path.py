"""Micro-benchmark of the shared media port's receive path alone: CPU per datagram read and routed.

`python -m benchmarks.receive_path [--bursts 1,4,64] [--datagrams 20000] [--reps 5]` sends
1200-byte datagrams from 8 peer sockets on loopback to one server socket, in bursts of B (a lone
packet per wake-up; a camera frame of about 4; a loop that fell behind), waiting after each burst
until the event loop has read it, both ways in the same run (alternated, median of `reps`):
  uvloop   — a datagram endpoint whose protocol routes each datagram by its sender's address
             (how the shared port read before `receive.py`);
  recvmmsg — `SharedSocket`: up to 128 datagrams a system call, control before media.
The figure is the whole process's CPU (user and kernel) over the datagrams: the sends, the same
for both ways, are in it, so the difference between the two is the receive path's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import uvloop

from sfu.adapter.shared_port import SharedSocket
from sfu.core import MediaStats

PEERS = 8


class Routed(asyncio.DatagramProtocol):
    """The former read path: one callback per datagram, routed by its sender's address."""

    def __init__(self, by_address: dict[tuple[str, int], Any]) -> None:
        self.by_address = by_address

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        view = self.by_address.get((addr[0], addr[1]))
        if view is not None:
            view.receiver.data_received(data, 1)


async def measure(bursts: list[int], datagrams: int, reps: int) -> dict[tuple[str, int], float]:
    """Median µs of CPU per datagram, per (way, burst)."""
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(PEERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        peers.append(sock)
    received = 0

    def count(data: bytes, component: int) -> None:
        nonlocal received
        received += 1

    view: Any = SimpleNamespace(receiver=SimpleNamespace(data_received=count))
    routes = {sock.getsockname(): view for sock in peers}
    shared = SharedSocket(MediaStats())
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setblocking(False)
    server.bind(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    shared.open(server)
    shared.by_address.update(routes)
    endpoint, _ = await loop.create_datagram_endpoint(lambda: Routed(routes), local_addr=("127.0.0.1", 0))
    targets = {"uvloop": endpoint.get_extra_info("sockname"), "recvmmsg": server.getsockname()}
    packet = bytes([0x80, 96]) + bytes(1198)

    async def run(target: tuple[str, int], burst: int) -> None:
        nonlocal received
        received = 0
        sent = 0
        while sent < datagrams:
            for i in range(burst):
                peers[(sent + i) % PEERS].sendto(packet, target)
            sent += burst
            while received < sent:
                await asyncio.sleep(0)

    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(reps):
        for burst in bursts:
            for way, target in targets.items():
                before = time.process_time()
                await run(target, burst)
                cpu = time.process_time() - before
                samples.setdefault((way, burst), []).append(cpu / datagrams * 1e6)
    endpoint.close()
    shared.close()
    for sock in peers:
        sock.close()
    return {key: sorted(values)[len(values) // 2] for key, values in samples.items()}


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", default="1,4,64", help="datagrams per burst, comma-separated")
    parser.add_argument("--datagrams", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    bursts = [int(b) for b in args.bursts.split(",")]
    results = uvloop.run(measure(bursts, args.datagrams, args.reps))
    print(
        f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, commit {commit()}; "
        f"{args.datagrams} datagrams of 1200 bytes from {PEERS} peers, median of {args.reps}"
    )
    print("burst | uvloop µs/datagram | recvmmsg µs/datagram")
    for burst in bursts:
        print(f"{burst:5} | {results[('uvloop', burst)]:18.2f} | {results[('recvmmsg', burst)]:20.2f}")


if __name__ == "__main__":
    main()
