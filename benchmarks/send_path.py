"""Micro-benchmark of the adapter's send path alone: CPU per copy sent, user and kernel apart.

`python -m benchmarks.send_path [--subscribers 40] [--rounds 2000] [--reps 5]` sends one
1100-byte video packet to each of N subscriber sockets on loopback, `rounds` times, both ways
the server does, in the same run (alternated, median of `reps`):
  sendto   — SrtpProtector.protect, then the transport's sendto per copy (media_port = 0, TURN);
  sendmmsg — protected in place into a BatchSender's slots, one sendmmsg per round (the shared port).
SRTP is AEAD_AES_128_GCM, as aiortc negotiates. On loopback the kernel time also holds the
receiving side of each datagram, which a real network interface does not charge to the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import Callable

import pylibsrtp
import uvloop

from sfu.adapter.batch import BatchSender
from sfu.adapter.srtp import SrtpProtector
from sfu.core import MediaStats

PAYLOAD = 1100


def protector() -> SrtpProtector:
    policy = pylibsrtp.Policy(
        key=bytes(range(28)),
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    )
    return SrtpProtector(pylibsrtp.Session(policy))


async def measure(subscribers: int, rounds: int, reps: int) -> dict[str, tuple[float, float]]:
    """Median (user, kernel) µs per copy of each way."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    receivers = []
    for _ in range(subscribers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        receivers.append(sock)
    addresses = [sock.getsockname() for sock in receivers]
    protectors = [protector() for _ in receivers]
    batch = BatchSender(transport, MediaStats())
    names = [batch.sockaddr(address) for address in addresses]
    sendto = transport.sendto

    def per_copy(packets: list[bytes]) -> None:
        for p, address in zip(protectors, addresses, strict=True):
            protect = p.protect
            for packet in packets:
                sendto(protect(packet), address)

    def batched(packets: list[bytes]) -> None:
        for p, name in zip(protectors, names, strict=True):
            batch.queue(p, packets, False, name)
        batch.send()

    ways: dict[str, Callable[[list[bytes]], None]] = {"sendto": per_copy, "sendmmsg": batched}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    seq = 0
    for _ in range(reps):
        for name, way in ways.items():
            packets = []
            for _ in range(rounds):
                seq += 1  # libsrtp refuses to protect an index twice
                packets.append(bytes([0x80, 96]) + (seq & 0xFFFF).to_bytes(2, "big") + bytes(8 + PAYLOAD))
            before = os.times()
            for packet in packets:
                way([packet])
            after = os.times()
            copies = rounds * subscribers / 1e6
            samples[name].append(((after.user - before.user) / copies, (after.system - before.system) / copies))
            for sock in receivers:
                while True:
                    try:
                        sock.recv(4096)
                    except BlockingIOError:
                        break
    transport.close()
    for sock in receivers:
        sock.close()
    if any(batch.stats.drops):
        raise RuntimeError(f"the batched way dropped packets: {batch.stats.drops}")
    return {name: sorted(values, key=sum)[len(values) // 2] for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    results = uvloop.run(measure(args.subscribers, args.rounds, args.reps))
    for name, (user, kernel) in results.items():
        print(f"{name:9} {user:5.2f} µs user + {kernel:5.2f} µs kernel = {user + kernel:5.2f} µs CPU per copy")


if __name__ == "__main__":
    main()
