"""The class of 30 with simulcast cameras, three students behind a 500 kbit/s link, in one run.

`./dev bench simulcast` (or `python -m benchmarks.simulcast`). A teacher and 30 students, each with
a camera and a microphone, in the deterministic simulation of `tests/sim.py` around the real core
(no socket, no SRTP: the figures are the core's, apart from encryption and the event loop); each
student receives the teacher's camera large, a page of 9 thumbnails and 3 microphones; the teacher
a page of 9. Three students' downlinks are 500 kbit/s with 200 ms of queue (tail drop). Two modes,
one after the other on the same recordings:

- **single**: one encoding per camera, as before simulcast (the teacher's at 1.5 Mbit/s, the
  students' at a thumbnail's 150 kbit/s, what the former REMB cap gave), everything forwarded;
- **simulcast**: q/h/f encodings (150 / 500 / 1,500 kbit/s) with L1T3 descriptors; every second
  the room (`sfu.core.bandwidth.RoomBandwidth` with `sfu.core.allocator.allocate`) chooses each
  subscriber's layers within the core's estimate of its downlink (every subscriber sends
  transport feedback every 50 ms, as Chrome), probes by padding where a subscriber wants more
  than its estimate, and dynacast stops the layers nobody receives after 5 s, as the server does.

For each mode, over the measured window: the core's CPU time per forwarded packet (time inside the
core's entry points, `time.perf_counter`), packets forwarded; for the constrained students their
loss (sequence numbers never received) and freezes (gaps over 500 ms between complete frames, the
longest), for the others the teacher's layer they receive. Prints a table and the conditions.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sfu.core import MediaSession, Transport
from sfu.core.allocator import OTHER, TEACHER_CAMERA
from sfu.core.bandwidth import AUDIO_COST, RoomBandwidth, Subscriber, Wanted
from sfu.core.layered import LayeredConsumer
from tests.sim import Received, Sim

from .media import EncodedFrame, encode_video, encode_voice
from .run import git, machine

STUDENTS = 30
CONSTRAINED = (1, 2, 3)  # 10 % of the class
LINK = 500_000
LAYERS = (("q", 320, 180, 150_000), ("h", 640, 360, 500_000), ("f", 1280, 720, 1_500_000))
PAGE = 9
MICS = 3
FREEZE = 0.5


def recordings(seconds: float) -> tuple[tuple[EncodedFrame, ...], ...]:
    return tuple(tuple(encode_video(seconds, bitrate, w, h)) for _, w, h, bitrate in LAYERS)


def voice() -> tuple[EncodedFrame, ...]:
    return tuple(encode_voice(seconds=2.0))  # Chrome's 32 kbit/s mono Opus


class CoreClock:
    """Time spent inside the core's entry points while `on` (the simulation's own work left out)."""

    def __init__(self) -> None:
        self.on = False
        self.spent = 0.0
        self._saved: list[tuple[Any, str, Callable[..., None]]] = []

    def wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        self._saved.append((owner, name, original))
        clock = self

        def timed(*args: Any) -> Any:
            if not clock.on:
                return original(*args)
            start = time.perf_counter()
            try:
                return original(*args)
            finally:
                clock.spent += time.perf_counter() - start

        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


def build(mode: str, frames: tuple[tuple[EncodedFrame, ...], ...], speech: tuple[EncodedFrame, ...]) -> Sim:
    sim = Sim(seed=7, delay=0.02)
    members = ["teacher", *(f"s{i}" for i in range(1, STUDENTS + 1))]
    for name in members:
        if mode == "simulcast":
            sim.publish_simulcast(f"{name}-cam", frames=frames)
        else:
            sim.publish(f"{name}-cam", True, frames=frames[2] if name == "teacher" else frames[0])
        sim.publish(f"{name}-mic", False, frames=speech, level=0x20)
    for index, name in enumerate(members[1:], start=1):
        others = [m for m in members[1:] if m != name]
        page = [others[(index + k) % len(others)] for k in range(PAGE)]
        for track in ["teacher-cam", "teacher-mic", *(f"{m}-cam" for m in page)]:
            sim.subscribe(name, track, wide=True)
        for k in range(MICS):
            sim.subscribe(name, f"{others[(index * 7 + k) % len(others)]}-mic", wide=True)
        if index in CONSTRAINED:
            down = sim.subscribers[name][2]
            down.bandwidth, down.queue = LINK, 0.2
    for m in members[1 : PAGE + 1]:
        sim.subscribe("teacher", f"{m}-cam", wide=True)
    return sim


def room_round(sim: Sim, bandwidth: RoomBandwidth) -> None:
    """One allocation round, as the room runs it (sfu.core.bandwidth): the teacher's camera large,
    the others as thumbnails; then what dynacast tells the publishers."""
    subscribers = []
    for name, (transport, _, _, _) in sim.subscribers.items():
        videos = [
            Wanted(
                c,
                TEACHER_CAMERA if c.producer.id == "teacher-cam" else OTHER,
                2 if c.producer.id == "teacher-cam" else 0,
            )
            for c in set(transport.consumers.values())
            if isinstance(c, LayeredConsumer)
        ]
        subscribers.append(Subscriber(name, transport, videos, AUDIO_COST * (MICS + 1)))
    sim.dynacast(bandwidth.run(subscribers, sim.session.producers.values(), sim.now))
    sim.flush()


def measure(
    mode: str,
    frames: tuple[tuple[EncodedFrame, ...], ...],
    speech: tuple[EncodedFrame, ...],
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    sim = build(mode, frames, speech)
    bandwidth = RoomBandwidth(nominal={rid: bitrate for rid, _, _, bitrate in LAYERS})
    clock = CoreClock()
    for owner, name in (
        (Transport, "receive_rtp"),
        (Transport, "receive_rtcp"),
        (MediaSession, "handle_timer"),
        (MediaSession, "take_ready"),
    ):
        clock.wrap(owner, name)
    try:
        step = 0.0
        while step < warmup:
            step += 1.0
            sim.run(step)
            if mode == "simulcast":
                room_round(sim, bandwidth)
        stats = sim.session.stats
        forwarded, received, resent = stats.rtp_forwarded, stats.rtp_received, stats.retransmissions
        start_wall = time.process_time()
        clock.on = True
        while step < warmup + duration:
            step += 1.0
            sim.run(step)
            if mode == "simulcast":
                room_round(sim, bandwidth)
        clock.on = False
        process = time.process_time() - start_wall
    finally:
        clock.restore()
    forwarded = stats.rtp_forwarded - forwarded
    constrained = [constrained_figures(sim, f"s{i}", warmup) for i in CONSTRAINED]
    layers: Counter[str] = Counter()
    for name, (transport, _, _, _) in sim.subscribers.items():
        if name == "teacher" or int(name[1:]) in CONSTRAINED:
            continue
        for consumer in set(transport.consumers.values()):
            if consumer.producer.id == "teacher-cam":
                current = consumer.current_layers if isinstance(consumer, LayeredConsumer) else None
                layers[LAYERS[current[0]][0] if current and len(consumer.producer.streams) > 1 else "single"] += 1
    return {
        "mode": mode,
        "core_us_per_forwarded": clock.spent / forwarded * 1e6 if forwarded else 0.0,
        "core_seconds": clock.spent,
        "simulation_seconds": process,
        "forwarded": forwarded,
        "received": stats.rtp_received - received,
        "retransmitted": stats.retransmissions - resent,
        "constrained": constrained,
        "teacher_layer_of_the_others": dict(layers),
    }


def constrained_figures(sim: Sim, name: str, after: float) -> dict[str, Any]:
    """Loss and freezes of the teacher's camera as one constrained student's decoder sees it."""
    transport, subscriber, down, _ = sim.subscribers[name]
    teacher = next(c for c in transport.consumers.values() if c.producer.id == "teacher-cam")
    stream: Received | None = subscriber.streams.get(teacher.ssrc)
    if stream is None:
        return {"student": name, "frames": 0}
    times = [t for t, _, _ in stream.frames if t >= after]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    got = len(stream.seqs)
    return {
        "student": name,
        "frames_per_second": len(times) / max(1e-9, sim.now - after),
        "freezes": sum(1 for g in gaps if g > FREEZE),
        "longest_freeze_s": max(gaps, default=sim.now - after),
        "lost_on_link": down.lost,
        "never_received": len(stream.gaps()),
        "received": got,
        "layer": LAYERS[teacher.current_layers[0]][0]
        if isinstance(teacher, LayeredConsumer) and teacher.current_layers and len(teacher.producer.streams) > 1
        else "single",
    }


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| mode | core µs / forwarded packet | packets forwarded | retransmitted | constrained: fps, freezes > 0.5 s, "
        "longest, never received | others: teacher's layer |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        students = "; ".join(
            f"{c['layer']} {c['frames_per_second']:.1f} fps, {c['freezes']}, {c['longest_freeze_s']:.2f} s, "
            f"{c['never_received']}"
            for c in r["constrained"]
        )
        out.append(
            f"| {r['mode']} | {r['core_us_per_forwarded']:.2f} | {r['forwarded']:,} | {r['retransmitted']:,} | "
            f"{students} | {r['teacher_layer_of_the_others']} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    frames, speech = recordings(2.0), voice()
    rows = [measure(mode, frames, speech, args.warmup, args.duration) for mode in ("single", "simulcast")]
    conditions = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain")),
        "students": STUDENTS,
        "constrained": {"students": len(CONSTRAINED), "link_bps": LINK, "queue_s": 0.2},
        "warmup_s": args.warmup,
        "measured_s": args.duration,
        "layers": [{"rid": rid, "size": f"{w}x{h}", "bps": b} for rid, w, h, b in LAYERS],
    }
    print(json.dumps(conditions, indent=1))
    print(table(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"conditions": conditions, "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
