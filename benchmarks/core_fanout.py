"""Micro-benchmark of the per-packet path, without sockets: core fan-out, then SRTP, vs a bare loop.

`python -m benchmarks.core_fanout [--subscribers 100] [--profile]` prints microseconds per
forwarded packet for these paths, measured in the same run:
  bare   — rewrite the sequence number in a bytearray and SRTP-protect (the floor);
  core   — MediaSession fan-out (rewriting, header extension template, cache, history);
  core + pylibsrtp — the core, then pylibsrtp's Session.protect on each output;
  core + srtp (adapter) — the core, then the adapter's SrtpProtector, as the server does;
  ", transport-cc" — the same with transport-wide numbering on, as for a browser subscriber;
  "take_ready" — with transport-cc, the batches taken as the adapter takes them, without and with
  the subscribers' pacers on (at an estimate that holds nothing: the cost of looking).
`--nack-storm` instead measures what a subscriber's NACK storm costs the core: NACKs 3.6 ms
apart, each asking for the last 500 packets, answered (or refused) from the cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp

from sfu.adapter.srtp import SrtpProtector
from sfu.core import Codec, HeaderExtensions, MediaSession
from sfu.core.rtcp import build_nack

from .media import encode_video

KEY = bytes(range(30))


def policy() -> pylibsrtp.Policy:
    p = pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    p.allow_repeat_tx = True  # the packet list is replayed several times
    return p


def packets(count: int) -> list[bytes]:
    """`count` packets with consecutive sequence numbers, cycling through two seconds of VP8."""
    ext = b"\xbe\xde\x00\x01" + bytes([0x10 | 0, ord("0"), 0, 0])
    payloads = [p for frame in encode_video(seconds=2) for p in frame.payloads]
    return [
        struct.pack("!BBHII", 0x90, 96, k & 0xFFFF, (k // 4) * 3000, 1111) + ext + payloads[k % len(payloads)]
        for k in range(count)
    ]


def session_with(n: int, wide: bool = False) -> tuple[MediaSession, object]:
    """A VP8 track and `n` subscribers; `wide`: they negotiated transport-wide congestion control
    (Chrome does: every packet sent is numbered and remembered for its feedback)."""
    session = MediaSession()
    pub = session.create_transport("pub")
    ext = HeaderExtensions(mid=1, abs_send_time=3)
    sub_ext = HeaderExtensions(mid=1, abs_send_time=3, transport_cc=5 if wide else 0)
    producer = session.add_producer(
        pub, "p", mid="0", codec=Codec("video/VP8", 96, 90000, 97), extensions=ext, ssrc=1111
    )
    for i in range(n):
        t = session.create_transport(f"s{i}")
        c = session.add_consumer(
            t,
            producer,
            ssrc=2000 + i,
            payload_type=96,
            mid="1",
            extensions=sub_ext,
            rtx_ssrc=3000 + i,
            rtx_payload_type=97,
        )
        c.forwarder.waiting = False  # the replayed packets need not start on a keyframe
    return session, pub


def bench_bare(pkts: list[bytes], n: int, protect: bool) -> float:
    sessions = [pylibsrtp.Session(policy()) for _ in range(n)]
    sink: list[bytes] = []
    pack = struct.Struct("!H").pack_into
    start = time.perf_counter()
    for k, data in enumerate(pkts):
        buf = bytearray(data)
        for i, s in enumerate(sessions):
            pack(buf, 2, (k + i) & 0xFFFF)
            sink.append(s.protect(bytes(buf)) if protect else bytes(buf))
        sink.clear()
    return time.perf_counter() - start


def bench_core(
    pkts: list[bytes], n: int, protect: bool, direct: bool = True, wide: bool = False, take: str = ""
) -> float:
    """The core's fan-out, then SRTP through the adapter's protector (`direct`) or pylibsrtp's.
    `take`: the outboxes read directly (""), through take_ready() ("ready"), or through
    take_ready(now) with every subscriber's pacer on, at an estimate that holds nothing ("paced")."""
    if take:
        return bench_take(pkts, n, paced=take == "paced")
    session, pub = session_with(n, wide)
    srtp: dict[object, Any] = {
        t: SrtpProtector(pylibsrtp.Session(policy())) if direct else pylibsrtp.Session(policy())
        for t in session.transports.values()
    }
    now = 0.0
    sent = 0
    start = time.perf_counter()
    for data in pkts:
        now += 0.001
        pub.receive_rtp(data, now)  # type: ignore[attr-defined]
        for t in session.ready:
            sent += len(t.outbox)
            if protect:
                s = srtp[t]
                for p in t.outbox:
                    s.protect(p)
            t.outbox.clear()
            t.rtcp_outbox.clear()
        session.ready.clear()
    elapsed = time.perf_counter() - start
    if sent != len(pkts) * n:
        raise RuntimeError(f"the core forwarded {sent} packets, expected {len(pkts) * n}")
    return elapsed


def bench_take(pkts: list[bytes], n: int, paced: bool) -> float:
    session, pub = session_with(n, wide=True)
    now = 0.0
    pub.receive_rtp(pkts[0], now)  # type: ignore[attr-defined]
    session.take_ready()
    for t in session.transports.values():
        if t.pacer is not None:
            t.pacer.set_estimate(50_000_000 if paced else 0)
    sent = 0
    start = time.perf_counter()
    for data in pkts[1:]:
        now += 0.001
        pub.receive_rtp(data, now)  # type: ignore[attr-defined]
        for _, rtp, _ in session.take_ready(now if paced else None):
            sent += len(rtp)
    elapsed = time.perf_counter() - start
    if sent != (len(pkts) - 1) * n:
        raise RuntimeError(f"the core sent {sent} packets, expected {(len(pkts) - 1) * n}")
    return elapsed


def bench_nack_storm(pkts: list[bytes], nacks: int) -> tuple[float, int]:
    """Seconds spent answering `nacks` NACKs for the last 500 packets, and the packets sent again."""
    session, pub = session_with(1)
    sub = session.transports["s0"]
    now = 0.0
    for data in pkts:
        now += 0.001
        pub.receive_rtp(data, now)  # type: ignore[attr-defined]
    consumer = sub.consumers[2000]
    nack = build_nack(1, 2000, [(consumer.last_seq - i) & 0xFFFF for i in range(500)])
    for t in session.ready:
        t.outbox.clear()
        t.rtcp_outbox.clear()
    session.ready.clear()
    resent = 0
    start = time.perf_counter()
    for _ in range(nacks):
        now += 0.0036
        sub.receive_rtcp(nack, now)
        resent += len(sub.outbox)
        sub.outbox.clear()
        session.ready.clear()
    return time.perf_counter() - start, resent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--packets", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="profile the core path with pyinstrument")
    parser.add_argument("--nack-storm", action="store_true", help="measure a subscriber's NACK storm instead")
    args = parser.parse_args()
    pkts = packets(args.packets)
    if args.nack_storm:
        nacks = 1000
        elapsed, resent = bench_nack_storm(pkts, nacks)
        print(
            f"NACK storm: {nacks} NACKs x 500 packets in 3.6 s of stream time: {resent} packets sent again, "
            f"{elapsed / nacks * 1e6:.0f} µs per NACK ({elapsed / 3.6:.1%} of one core)"
        )
        return
    forwarded = len(pkts) * args.subscribers
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"machine: {machine}; python {platform.python_version()}; commit {commit}")
    print(f"{len(pkts)} VP8 packets x {args.subscribers} subscribers = {forwarded} forwarded packets")
    if args.profile:
        from pyinstrument import Profiler

        with Profiler() as profiler:
            bench_core(pkts, args.subscribers, True)
        print(profiler.output_text(unicode=True, color=False))
        return
    runs: list[tuple[str, Callable[[], float]]] = [
        ("bare (rewrite only)", lambda: bench_bare(pkts, args.subscribers, False)),
        ("bare + srtp", lambda: bench_bare(pkts, args.subscribers, True)),
        ("core", lambda: bench_core(pkts, args.subscribers, False)),
        ("core, transport-cc", lambda: bench_core(pkts, args.subscribers, False, wide=True)),
        ("core + pylibsrtp", lambda: bench_core(pkts, args.subscribers, True, direct=False)),
        ("core + srtp (adapter)", lambda: bench_core(pkts, args.subscribers, True)),
        ("core + srtp, transport-cc", lambda: bench_core(pkts, args.subscribers, True, wide=True)),
        ("core, take_ready()", lambda: bench_core(pkts, args.subscribers, False, take="ready")),
        ("core, take_ready(now) paced", lambda: bench_core(pkts, args.subscribers, False, take="paced")),
    ]
    for name, run in runs:
        best = min(run() for _ in range(3))
        print(f"{name:26s} {best / forwarded * 1e6:6.2f} µs per forwarded packet  ({forwarded / best:,.0f} packets/s)")


if __name__ == "__main__":
    main()
