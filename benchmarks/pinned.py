"""The pinned fan-out benchmark: the server on CPU 0, the load generator on CPU 1, Classe beside Janus.

`./dev bench pinned` (`python -m benchmarks.run pinned`; root, for network namespaces; about
5 minutes, 7 with the shared socket). Issue 12's measure: what one delivered packet costs the
server's CPU on average and at the margin, how many packets one core delivers at saturation, and
what happens past it.

Layout, made for the run and removed after it: two network namespaces joined by a veth pair, the
server's (10.78.0.1: Classe or Janus, signaling and media, pinned to CPU 0) and the clients'
(10.78.0.2: `benchmarks.pinned_clients`, pinned to CPU 1). Janus ignores loopback interfaces for
ICE and binds its media sockets to their interface, so its clients must be across a real link;
Classe is measured across the same link. Signaling goes over the pair too (a namespace's loopback
is its own). Nothing leaves the machine: no STUN, no route out of either namespace.

Each server configuration starts once (Classe with one UDP socket per peer connection; Classe with
one shared media socket, if asked; Janus 1.1.2's VideoRoom with `event_loops = 1`). In it:
1. the fan-out series: for each N of `--sizes`, the publisher's video alone (VP8 640x360, 30 fps,
   about 1 Mbit/s, about 115 packets/s), then its audio alone (Opus, 50 packets/s); per window the
   server process's CPU time (its threads' run time) over the packets the clients received, and
   per series the marginal cost: the least-squares slope of server CPU against delivered packets;
2. saturation, at the largest N: the publisher's video packet rate raised until the server falls
   behind (its clients short of what was sent, or the packets waiting in a queue), then narrowed
   down; the capacity is the most the clients received in a window the server kept up with; then
   a window at 100 % and one at 120 % of that capacity (after the ramp's queue has drained):
   delivery ratio and added delay (publisher to subscriber, p50/p99, one packet in 16 of each
   subscriber decrypted to read its send time).

Classe runs with one socket per peer connection (`--media-port 0`) and with one shared media
socket (`--media-port PORT`, the default setting), side by side (`--sockets`), and once more on the
shared socket with `--no-shed-under-load` (`--unshed`): past saturation, what shedding changes.
Writes docs/benchmarks-pinned.json and the part of docs/benchmarks.md between the pinned markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import psutil

from . import janus
from .cameras import busy, socket_drops
from .run import ROOT, fmt, git, machine, stop

PY = sys.executable
SERVER_ADDRESS, CLIENT_ADDRESS = "10.78.0.1", "10.78.0.2"  # not 10.77.0.x: the tests' namespaces use it
SERVER_CPU, CLIENT_CPU = 0, 1
HTTP_PORTS = {"classe": 8080, "janus": 8088}
SHARED_MEDIA_PORT = 40000  # free: the server's namespace is made for the run
FRAME_RATES = {"video": 30.0, "audio": 50.0}  # the publisher's natural rates, frames/s
DELAYED_MS = 50.0  # a median added delay over this says packets wait in a queue: the server is behind
QUIET = 0.1  # a CPU busier than this with other work makes a window doubtful
RETRIES = 2  # a window disturbed by other work on a pinned CPU is measured again, at most this many times
BEGIN = "<!-- pinned: begin (written by ./dev bench pinned) -->"
END = "<!-- pinned: end -->"


@dataclass(frozen=True)
class Config:
    """One server as started for the run: Classe with its media sockets per peer or shared, or Janus."""

    target: str
    sockets: str  # per-peer / shared (Janus: per-peer, one per handle)
    shed: bool = True  # Classe's shed_under_load

    @property
    def label(self) -> str:
        if self.target != "classe":
            return "Janus, 1 event loop"
        return f"Classe, {self.sockets} socket" + ("" if self.shed else ", no shedding")


def marginal(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through (delivered packets/s, server CPU in cores): its slope in µs of
    CPU per delivered packet (the marginal cost) and its intercept (the CPU share spent at no load)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        raise ValueError("the slope needs at least two different packet rates")
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope * 1e6, my - slope * mx


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Namespaces:
    server: str
    client: str


@contextmanager
def namespaces() -> Iterator[Namespaces]:
    """The server's and the clients' namespaces with the veth pair between them, removed at the end."""
    tag = os.getpid()
    net = Namespaces(f"classe-pin-srv-{tag}", f"classe-pin-cli-{tag}")
    try:
        ip("netns", "add", net.server)
        ip("netns", "add", net.client)
        ip("-n", net.server, "link", "add", "pin0", "type", "veth", "peer", "name", "pin1", "netns", net.client)
        for name, device, address in ((net.server, "pin0", SERVER_ADDRESS), (net.client, "pin1", CLIENT_ADDRESS)):
            ip("-n", name, "addr", "add", f"{address}/24", "dev", device)
            ip("-n", name, "link", "set", device, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield net
    finally:
        for name in (net.server, net.client):  # the pair goes with them
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def spawn(namespace: str, cpu: int, cmd: list[str], log: IO[bytes], **pipes: Any) -> subprocess.Popen[Any]:
    """A process in `namespace` pinned to `cpu` (its threads inherit it); CLASSE_* variables dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLASSE_")} | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *cmd],
        cwd=ROOT,
        env=env,
        stderr=log,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        **pipes,
    )


def server_command(config: Config, folder: Path) -> list[str]:
    if config.target == "janus":
        jcfg = janus.write_config(folder / "janus", SERVER_ADDRESS, HTTP_PORTS["janus"])
        return ["janus", "-C", str(jcfg), "-F", str(jcfg.parent), "-o"]
    flags = ["--host", SERVER_ADDRESS, "--port", str(HTTP_PORTS["classe"])]
    flags += [
        "--media-addresses",
        json.dumps([SERVER_ADDRESS]),
        "--media-port-min",
        "43000",
        "--media-port-max",
        "44999",
    ]
    # load clients take dev tokens: no accounts, no lobby; its SQLite file in a throwaway folder
    flags += ["--max-participants-per-class", "1000", "--dev-mode", "--data-dir", str(folder / "data")]
    flags += ["--media-port", str(SHARED_MEDIA_PORT) if config.sockets == "shared" else "0"]
    if not config.shed:
        flags.append("--no-shed-under-load")
    return [PY, "-m", "signaling.cli", "serve", *flags]


def threads_cpus(pid: int) -> list[int]:
    """The CPUs any thread of the process may run on (the pinning, read back)."""
    cpus: set[int] = set()
    for thread in psutil.Process(pid).threads():
        cpus |= os.sched_getaffinity(thread.id)
    return sorted(cpus)


def run_time(pid: int) -> float:
    """Seconds the process's threads have run, to the nanosecond (the scheduler's own count, kernel
    work done in their system calls included). psutil's user and system times come in 10 ms ticks:
    at 2 % of a core over a 6 s window, that is 8 % of the figure."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
    return total / 1e9


def ksoftirqd() -> int:
    """The kernel thread that does CPU 0's network work when the send calls leave it some."""
    return next(p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == f"ksoftirqd/{SERVER_CPU}")


class Sample:
    """The CPU times and socket drops at one edge of a measured window."""

    def __init__(self, server: int, client: int, softirq_pid: int) -> None:
        self.at = time.monotonic()
        self.server, self.client = run_time(server), run_time(client)
        self.softirq = run_time(softirq_pid)
        cpus = psutil.cpu_times(percpu=True)
        self.cores = (busy(cpus[SERVER_CPU]), busy(cpus[CLIENT_CPU]))
        self.drops = (socket_drops(server), socket_drops(client))


class Driver:
    """Talks to one load generator (JSON lines) and samples the server around each window."""

    def __init__(
        self,
        config: Config,
        server: subprocess.Popen[bytes],
        client: subprocess.Popen[str],
        logs: Path,
        args: argparse.Namespace,
    ) -> None:
        self.config, self.server, self.client, self.logs = config, server, client, logs
        self.quiet_wait, self.retries = args.retry_wait, args.retries
        self.softirq_pid = ksoftirqd()
        self.ready = self.read()[0]

    def failure(self, what: str) -> str:
        server_log = (self.logs / "server.log").read_text(errors="replace")[-2500:]
        client_log = (self.logs / "clients.log").read_text(errors="replace")[-2500:]
        state = "running" if self.server.poll() is None else f"exited with {self.server.returncode}"
        return f"{self.config.label}: {what}; the server {state}.\nserver:\n{server_log}\nload generator:\n{client_log}"

    def read(self) -> tuple[dict[str, Any], Sample | None, Sample | None]:
        assert self.client.stdout is not None
        start = end = None
        for line in self.client.stdout:
            if line.startswith("WINDOW_START"):
                start = Sample(self.server.pid, self.client.pid, self.softirq_pid)
            elif line.startswith("WINDOW_END"):
                end = Sample(self.server.pid, self.client.pid, self.softirq_pid)
            elif line.startswith("{"):
                return json.loads(line), start, end
        raise RuntimeError(self.failure("the load generator stopped"))

    def ask(self, command: dict[str, Any]) -> tuple[dict[str, Any], Sample | None, Sample | None]:
        assert self.client.stdin is not None
        self.client.stdin.write(json.dumps(command) + "\n")
        self.client.stdin.flush()
        return self.read()

    def send(self, video: float, audio: float) -> None:
        self.ask({"send": {"video": video, "audio": audio}})

    def drain(self, timeout: float = 20.0) -> None:
        """Silences the publisher until the server has worked off what it queued (its CPU falls)."""
        self.send(0, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = run_time(self.server.pid)
            time.sleep(0.5)
            if run_time(self.server.pid) - before < 0.1:  # under 20 % of a core
                return

    def measure(
        self, phase: str, kind: str, rates: tuple[float, float], settle: float, seconds: float, drain: bool = False
    ) -> dict[str, Any]:
        """A window at these publisher rates (video, audio packets/s), measured again once the CPUs are
        quiet if other work took more than QUIET of either (at most RETRIES times, and `retries` for the whole
        server: the run stays bounded on a busy machine). `drain` first lets the server work off what
        a window past saturation left queued."""
        attempts = 1
        while True:
            if drain:
                self.drain()
            self.send(*rates)
            row = self.window(phase, kind, settle, seconds)
            row["attempts"] = attempts
            others = max(row["cpu0_others"], row["cpu1_others"])
            if others <= QUIET or attempts > RETRIES or not self.retries:
                print(table([row]).splitlines()[-1], flush=True)
                return row
            print(f"  (other work took {others:.0%} of a pinned CPU: measured again)", flush=True)
            self.send(0, 0)
            wait_quiet(self.quiet_wait)
            attempts += 1
            self.retries -= 1

    def window(self, phase: str, kind: str, settle: float, seconds: float) -> dict[str, Any]:
        result, a, b = self.ask({"window": seconds, "settle": settle})
        assert a is not None and b is not None
        span = b.at - a.at
        server_cpu = (b.server - a.server) / span
        delivered = result["delivered_pps"]
        published = sum(result["sent_pps"].values())
        return {
            "server": self.config.label,
            "target": self.config.target,
            "sockets": self.config.sockets,
            "phase": phase,
            "kind": kind,
            "subscribers": result["subscribers"],
            "published_pps": published,
            "offered_pps": published * result["subscribers"],
            "delivered_pps": delivered,
            "delivery": result["delivery"],
            "server_cpu": server_cpu,
            "us_per_packet": server_cpu * 1e6 / delivered if delivered else None,
            "delay_ms": result["delay_ms"],
            "load_generator_cpu": (b.client - a.client) / span,
            "ksoftirqd0_cpu": (b.softirq - a.softirq) / span,
            "cpu0_others": max(0.0, (b.cores[0] - a.cores[0] - b.softirq + a.softirq) / span - server_cpu),
            "cpu1_others": max(0.0, (b.cores[1] - a.cores[1] - b.client + a.client) / span),
            "server_socket_drops_pps": (b.drops[0] - a.drops[0]) / span,
            "client_socket_drops_pps": (b.drops[1] - a.drops[1]) / span,
            "silent_subscribers_at_start": result["silent_at_start"],
            "publisher_ice": result["publisher_ice"],
            "subscribers_ice_failed": result["subscribers_ice_failed"],
            "janus_hangups": result["janus_hangups"],
            "window_s": span,
        }


def fanout(driver: Driver, args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each N: the video alone, then the audio alone, at the publisher's natural rates."""
    per_frame = driver.ready["per_frame"]
    rates = {kind: FRAME_RATES[kind] * per_frame[kind] for kind in FRAME_RATES}
    rows = []
    for n in args.sizes:
        driver.ask({"subscribers": n})
        rows.append(driver.measure("fan-out", "video", (rates["video"], 0), args.settle, args.window))
        rows.append(driver.measure("fan-out", "audio", (0, rates["audio"]), args.settle, args.window))
    return rows


def behind(row: dict[str, Any]) -> bool:
    """The server did not keep up: its clients received less than 98 % of what was sent, or a queue
    held the packets (a median delay over DELAYED_MS)."""
    return (row["delivery"] or 1) < 0.98 or (row["delay_ms"]["p50"] or 0) > DELAYED_MS


def saturate(driver: Driver, args: argparse.Namespace, start: dict[str, Any]) -> list[dict[str, Any]]:
    """Video only at the last N: the publisher's rate raised until the server falls `behind`, each step
    aimed at a full core from the last window's cost (at least 10 % more), then narrowed by halves
    between the highest rate kept up with and the lowest that was not, within `--ramp-steps` windows.
    The capacity is the most the clients received in a window the server kept up with; then a window
    at 100 % and one at 120 % of it, each after what the previous window queued has drained. The ramp
    starts below the capacity: at the cost per packet of the last fan-out window, fixed costs included."""
    n = start["subscribers"]
    offered = 0.7 * start["delivered_pps"] / start["server_cpu"]
    kept, late = 0.0, math.inf  # the highest rate the server kept up with, the lowest it did not
    ramp: list[dict[str, Any]] = []
    for _ in range(args.ramp_steps):
        drain = bool(ramp) and behind(ramp[-1])
        ramp.append(driver.measure("ramp", "video", (offered / n, 0), args.settle + 1, args.ramp_window, drain))
        row = ramp[-1]
        if row["load_generator_cpu"] >= 0.9:
            break
        if behind(row):
            late = min(late, offered)
        else:
            kept = max(kept, offered)
        if late < math.inf:
            if late <= 1.05 * kept:
                break
            offered = (kept + late) / 2
        else:
            offered = min(2 * offered, max(1.1 * offered, 0.99 * offered / row["server_cpu"]))
    kept_up = [r for r in ramp if not behind(r)]
    peak = max(kept_up or ramp, key=lambda r: float(r["delivered_pps"]))
    if late == math.inf:
        reached = (
            "not saturated: the load generator's core was full first"
            if ramp[-1]["load_generator_cpu"] >= 0.9
            else f"not saturated within {args.ramp_steps} windows"
        )
    else:
        reached = "server" if kept_up else "no ramp window kept up"
    rows = ramp
    for share in (1.0, 1.2):
        rate = share * peak["delivered_pps"] / n
        row = driver.measure(f"{share:.0%} of capacity", "video", (rate, 0), args.settle + 1, args.window + 2, True)
        row["capacity"] = {"delivered_pps": peak["delivered_pps"], "server_cpu": peak["server_cpu"], "reached": reached}
        rows.append(row)
    return rows


def warnings(r: dict[str, Any]) -> list[str]:
    """What makes a window doubtful: other work on the pinned CPUs, a busy load generator, clients
    that did not all receive (in the fan-out, where the server is far from saturated)."""
    out = []
    for cpu in ("cpu0", "cpu1"):
        if r[f"{cpu}_others"] > QUIET:
            out.append(f"other work used {r[f'{cpu}_others']:.0%} of {cpu.upper()}")
    if r["load_generator_cpu"] > 0.9:
        out.append(f"the load generator used {r['load_generator_cpu']:.0%} of its core")
    if r["silent_subscribers_at_start"]:
        out.append(f"{r['silent_subscribers_at_start']} subscribers received nothing when the window opened")
    if r["phase"] == "fan-out" and (r["delivery"] or 0) < 0.99:
        out.append(f"the clients received {fmt(r['delivery'], '.1%')} of what was sent")
    if r["subscribers_ice_failed"] or r["janus_hangups"]:
        out.append(f"peer connections lost: {r['subscribers_ice_failed']} ICE, {r['janus_hangups'] or 0} Janus hangups")
    return out


def background(seconds: float = 2.0) -> tuple[float, float]:
    """How busy CPU 0 and CPU 1 are with other work, measured while none of the benchmark's runs."""
    a = psutil.cpu_times(percpu=True)
    time.sleep(seconds)
    b = psutil.cpu_times(percpu=True)
    server, client = ((busy(b[cpu]) - busy(a[cpu])) / seconds for cpu in (SERVER_CPU, CLIENT_CPU))
    return server, client


def wait_quiet(limit: float) -> tuple[float, float]:
    """Waits up to `limit` seconds for both CPUs to be under QUIET with other work; the last measure."""
    deadline = time.monotonic() + limit
    while True:
        load = background()
        if max(load) < QUIET or time.monotonic() >= deadline:
            return load


def run_config(
    config: Config, net: Namespaces, args: argparse.Namespace, folder: Path
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """One server's windows, and the CPUs its threads and the load generator's were pinned to."""
    logs = folder / f"{config.target}-{config.sockets}{'' if config.shed else '-unshed'}"
    logs.mkdir(parents=True)
    with open(logs / "server.log", "wb") as server_log, open(logs / "clients.log", "wb") as client_log:
        server = spawn(net.server, SERVER_CPU, server_command(config, logs), server_log, stdout=server_log)
        url = f"http://{SERVER_ADDRESS}:{HTTP_PORTS[config.target]}"
        cmd = [PY, "-m", "benchmarks.pinned_clients", config.target, "--url", url, "--address", CLIENT_ADDRESS]
        client = spawn(
            net.client, CLIENT_CPU, cmd, client_log, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            driver = Driver(config, server, client, logs, args)
            pinning = {"server": threads_cpus(server.pid), "load generator": threads_cpus(client.pid)}
            rows = fanout(driver, args)
            if args.saturation:
                rows += saturate(driver, args, [r for r in rows if r["kind"] == "video"][-1])
            for row in rows:
                row["warnings"] = warnings(row)
            return rows, pinning
        finally:
            stop(client, server)
            client.wait()


def series(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, float]]:
    """Per server and kind: the marginal cost (µs per delivered packet) and the fixed CPU share,
    from the fan-out windows."""
    out = {}
    for label in dict.fromkeys(r["server"] for r in rows):
        for kind in ("video", "audio"):
            points = [r for r in rows if r["server"] == label and r["kind"] == kind and r["phase"] == "fan-out"]
            if len(points) >= 2:
                out[label, kind] = marginal([(r["delivered_pps"], r["server_cpu"]) for r in points])
    return out


def ms(delay: dict[str, float | None]) -> str:
    return f"{fmt(delay['p50'], '.1f')} / {fmt(delay['p99'], '.1f')}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | phase | kind | N | offered pkt/s | delivered pkt/s | delivery | server CPU | µs / delivered pkt "
        "| delay p50 / p99 ms | load gen. CPU | ksoftirqd/0 | others on CPU 0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["server"],
            r["phase"],
            r["kind"],
            str(r["subscribers"]),
            f"{r['offered_pps']:,.0f}",
            f"{r['delivered_pps']:,.0f}",
            fmt(r["delivery"], ".1%"),
            f"{r['server_cpu']:.0%}",
            fmt(r["us_per_packet"], ".1f"),
            ms(r["delay_ms"]),
            f"{r['load_generator_cpu']:.0%}",
            f"{r['ksoftirqd0_cpu']:.0%}",
            f"{r['cpu0_others']:.0%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def capacity(c: dict[str, Any]) -> str:
    """The most one core delivered, with the server's share of it then, and whether it was the limit."""
    text = f"**{c['delivered_pps']:,.0f}** (at {c['server_cpu']:.0%} of the core)"
    return text if c["reached"] == "server" else f"{text}; {c['reached']}"


def rate_marginal(rows: list[dict[str, Any]], label: str) -> float | None:
    """µs per delivered packet at the margin with N fixed and the publisher's rate raised (the ramp's
    windows the server kept up with). The slope over N also carries what each added subscriber costs
    besides its packets (ICE consent, RTCP, timers); this one does not, but it counts as cheaper
    packets what a higher rate saves (more arrivals served by one wake-up of the event loop)."""
    kept = [
        (r["delivered_pps"], r["server_cpu"])
        for r in rows
        if r["server"] == label and r["phase"] == "ramp" and not behind(r)
    ]
    return marginal(kept)[0] if len({x for x, _ in kept}) >= 2 else None


def summary_table(rows: list[dict[str, Any]]) -> str:
    """One line per server: the cost of a video and an audio packet, average at the largest N and
    marginal, the marginal cost of a video packet at the largest N, and the capacity."""
    slopes = series(rows)
    lines = [
        "| server | video: µs / pkt, average at the largest N | video: **marginal µs / pkt** (over N) "
        "| video: marginal µs / pkt at the largest N (rate raised) | audio: µs / pkt, average at the largest N "
        "| audio: **marginal µs / pkt** (over N) | capacity: the most delivered pkt/s with one core |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r["server"] for r in rows):
        cells = [label]
        for kind in ("video", "audio"):
            last = [r for r in rows if r["server"] == label and r["kind"] == kind and r["phase"] == "fan-out"][-1]
            cells += [
                fmt(last["us_per_packet"], ".1f"),
                f"**{slopes[label, kind][0]:.1f}**" if (label, kind) in slopes else "-",
            ]
            if kind == "video":
                cells.append(fmt(rate_marginal(rows, label), ".1f"))
        row = next((r for r in rows if r["server"] == label and "capacity" in r), None)
        cells.append("-" if row is None else capacity(row["capacity"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fanout_table(rows: list[dict[str, Any]]) -> str:
    """Every fan-out window, with the marginal cost of its series beside its average."""
    slopes = series(rows)
    lines = [
        "| server | kind | N | delivered pkt/s | server CPU | µs / delivered pkt, average | marginal µs / pkt "
        "(slope over N) | fixed CPU (intercept) | delay p50 / p99 ms | others on CPU 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["phase"] != "fan-out":
            continue
        slope, fixed = slopes.get((r["server"], r["kind"]), (None, None))
        cells = [
            r["server"],
            r["kind"],
            str(r["subscribers"]),
            f"{r['delivered_pps']:,.0f}",
            f"{r['server_cpu']:.1%}",
            fmt(r["us_per_packet"], ".1f"),
            fmt(slope, ".1f"),
            fmt(fixed, ".1%"),
            ms(r["delay_ms"]),
            f"{r['cpu0_others']:.0%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def saturation_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | load | N | offered pkt/s | delivered pkt/s | delivery | server CPU | capacity (ramp) "
        "| added delay p50 / p99 ms | load gen. CPU | ksoftirqd/0 | others on CPU 0 | server socket drops/s "
        "| publisher ICE after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "capacity" not in r:
            continue
        cells = [
            r["server"],
            r["phase"],
            str(r["subscribers"]),
            f"{r['offered_pps']:,.0f}",
            f"{r['delivered_pps']:,.0f}",
            fmt(r["delivery"], ".1%"),
            f"{r['server_cpu']:.0%}",
            capacity(r["capacity"]) if r["phase"].startswith("100") else "",
            ms(r["delay_ms"]),
            f"{r['load_generator_cpu']:.0%}",
            f"{r['ksoftirqd0_cpu']:.0%}",
            f"{r['cpu0_others']:.0%}",
            f"{r['server_socket_drops_pps']:,.0f}",
            r["publisher_ice"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def conditions(args: argparse.Namespace, configs: list[Config]) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain") else ""),
        "commit_subject": git("log", "-1", "--format=%s"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "machine": machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("aiortc", "aioice", "uvloop", "pylibsrtp")},
        "janus": janus.version() if any(c.target == "janus" for c in configs) else None,
        "servers": [c.label for c in configs],
        "loadavg_at_start": os.getloadavg(),
        "parameters": {
            "sizes": args.sizes,
            "window_s": args.window,
            "settle_s": args.settle,
            "saturation": args.saturation,
            "ramp_window_s": args.ramp_window,
            "retries": f"a window with other work over {QUIET:.0%} of CPU 0 or 1 measured again, at most "
            f"{RETRIES} times and {args.retries} per server, after up to {args.retry_wait:g} s of waiting for quiet",
            "publisher": "VP8 640x360 30 fps ~1 Mbit/s (keyframe every 1 s, ~3.8 packets a frame), Opus 20 ms; "
            "pre-encoded, a 12-byte send-time trailer in every payload",
            "layout": f"server in its namespace at {SERVER_ADDRESS} pinned to CPU {SERVER_CPU}; load generator "
            f"in another at {CLIENT_ADDRESS} pinned to CPU {CLIENT_CPU}; one veth pair; no STUN",
            "janus": "VideoRoom and HTTP transport only, event_loops = 1, room without bitrate cap or FIR period",
        },
    }


def doubts(info: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The run's warnings, as Markdown lines (none: the machine was quiet and every client received)."""
    lines = [
        f"- {label}: other work on CPU 0 / CPU 1 just before it started: {load[0]:.0%} / {load[1]:.0%}"
        for label, load in info["background"].items()
        if max(load) > QUIET
    ]
    lines += [
        f"- {r['server']}, {r['phase']}, {r['kind']}, N = {r['subscribers']}: {w}" for r in rows for w in r["warnings"]
    ]
    return ["**Warnings** (figures to take with care):", "", *lines, ""] if lines else []


def section(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return "\n".join(
        [
            BEGIN,
            "",
            f"- **Machine:** {info['machine']}; kernel {info['kernel']}; Python {info['python']} ({versions}).",
            f"- **Commit:** {info['commit']} on {info['branch']} ({info['commit_subject']}), {info['date']}; "
            f"load average {info['loadavg_at_start'][0]:.2f} at the start, {info['loadavg_at_end'][0]:.2f} at the "
            f"end; run time {info['run_s']} s.",
            f"- **Servers:** {'; '.join(info['servers'])}"
            + (f" (`janus --version`: {info['janus']})" if info["janus"] else "")
            + ".",
            f"- **Layout:** {info['parameters']['layout']}.",
            f"- **Publisher:** {info['parameters']['publisher']}.",
            f"- **Windows:** {info['parameters']['window_s']:g} s after {info['parameters']['settle_s']:g} s of "
            f"settling (saturation: ramp windows of {info['parameters']['ramp_window_s']:g} s, then "
            f"{info['parameters']['window_s'] + 2:g} s at 100 % and at 120 % of the capacity found, each after "
            f"{info['parameters']['settle_s'] + 1:g} s; the server is behind when its clients receive less than 98 % "
            f"or the median added delay exceeds {DELAYED_MS:g} ms); {info['parameters']['retries']}. "
            "Raw results: [benchmarks-pinned.json](benchmarks-pinned.json).",
            "",
            "**Summary:**",
            "",
            summary_table(rows),
            "",
            "**The fan-out series** (the server's CPU time over the packets the clients received; the marginal cost "
            "is the slope over N of its series):",
            "",
            fanout_table(rows),
            "",
            "**Saturation** (video only, the publisher's packet rate raised at the largest N):",
            "",
            saturation_table(rows),
            "",
            *doubts(info, rows),
            "<details><summary>Every window</summary>",
            "",
            table(rows),
            "",
            "</details>",
            "",
            END,
        ]
    )


def write_section(doc: Path, text: str) -> None:
    """Replaces the part between the markers (appends it the first time)."""
    content = doc.read_text()
    if BEGIN in content and END in content:
        content = content[: content.index(BEGIN)] + text + content[content.index(END) + len(END) :]
    else:
        content = content.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(content)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="./dev bench pinned", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="5,10,20,40", help="subscriber counts of the fan-out series")
    parser.add_argument(
        "--sockets",
        default="per-peer,shared",
        help="Classe's media sockets, comma-separated: per-peer (one per peer connection), shared (one for all)",
    )
    parser.add_argument(
        "--unshed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also Classe on the shared socket with shed_under_load off: what shedding changes past saturation",
    )
    parser.add_argument("--janus", action=argparse.BooleanOptionalAction, default=True, help="the Janus baseline")
    parser.add_argument("--saturation", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--window", type=float, default=6.0, help="seconds of each fan-out window")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before each window")
    parser.add_argument("--ramp-window", type=float, default=5.0, help="seconds of each window of the ramp")
    parser.add_argument("--ramp-steps", type=int, default=6, help="at most this many ramp windows")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="seconds to wait, before each server, for the CPUs to be quiet"
    )
    parser.add_argument(
        "--retries", type=int, default=4, help="windows measured again (other work on CPU 0 or 1) per server, at most"
    )
    parser.add_argument("--retry-wait", type=float, default=8.0, help="seconds to wait for quiet before one")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks-pinned.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md", help="where the section goes")
    parser.add_argument("--from-json", type=Path, help="only write the section again from a saved JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        write_section(args.doc, section(saved["conditions"], saved["results"]))
        return
    args.sizes = [int(n) for n in args.sizes.split(",")]
    sockets = [s for s in args.sockets.split(",") if s]
    if unknown := set(sockets) - {"per-peer", "shared"}:
        parser.error(f"--sockets: unknown {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        raise SystemExit("the pinned benchmark makes network namespaces: run it as root")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("the pinned benchmark needs CPUs 0 and 1")
    configs = [Config("classe", s) for s in sockets]
    configs += [Config("classe", "shared", shed=False)] if args.unshed else []
    configs += [Config("janus", "per-peer")] if args.janus else []
    info = conditions(args, configs)
    print(json.dumps(info, indent=2, ensure_ascii=False), flush=True)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    info["pinning"], info["background"] = {}, {}
    with tempfile.TemporaryDirectory(prefix="classe-pinned-") as tmp, namespaces() as net:
        for config in configs:
            info["background"][config.label] = load = wait_quiet(args.quiet_wait)
            print(f"{config.label}: other work on CPU 0 / CPU 1 before: {load[0]:.0%} / {load[1]:.0%}", flush=True)
            print(table([]), flush=True)
            config_rows, info["pinning"][config.label] = run_config(config, net, args, Path(tmp))
            rows += config_rows
    info["run_s"] = round(time.monotonic() - started)
    info["loadavg_at_end"] = os.getloadavg()
    text = section(info, rows)
    print(text)
    args.json.write_text(json.dumps({"conditions": info, "results": rows}, indent=2, ensure_ascii=False))
    write_section(args.doc, text)
    print(f"wrote {args.json} and the section of {args.doc} in {info['run_s']} s")


if __name__ == "__main__":
    main()
