"""The class of 30 with cameras: everything forwarded against bandwidth adaptation, in one run.

`./dev bench cameras` (or `python -m benchmarks.cameras`). A teacher and 30 students, each with a
camera and a microphone, 2 or 3 students talking at a time (see `benchmarks.camera_clients`), in
two servers one after the other:

- **everything**: `audio_forward_loudest = 0` and `video_last_n = 0` (every client receives every
  track: the server before issue 10), no `view` messages;
- **adaptation**: the server's defaults (loudest-K audio, last-N video) with each student's
  `view` showing the teacher large and one page of 9 thumbnails (`layout`), then the same server
  with the students' `view` in audio-only mode (`audio_only`).

For each measured window: the server process's CPU time (psutil), the packets it forwarded (its
metrics), each student's downlink as the clients count it, the loss the clients see (gaps in the
sequence numbers the server gave each stream), and the conditions. Writes a JSON file and prints a
Markdown table. A server that does not know the adaptation settings (before issue 10) is only run
in the `everything` mode.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from .run import ROOT, fmt, free_port, git, histogram_quantiles, machine, read_metrics, start_server, stop

PY = sys.executable
SETTINGS = ("audio_forward_loudest", "video_last_n", "thumbnail_bitrate", "large_tile_width")
TARGETS = {"packets": 4.0, "cpu": 4.0, "layout_kbps": 2500.0, "audio_only_kbps": 150.0}


def metrics(port: int) -> tuple[dict[str, float], dict[float, float]]:
    text = read_metrics(port)
    values = {name: float(v) for name, v in re.findall(r"^(classe_\w+?)(?:_total)? (\S+)$", text, re.M)}
    for reason, v in re.findall(r'^classe_dropped_packets(?:_total)?\{reason="(\w+)"\} (\S+)$', text, re.M):
        values[f"drop_{reason}"] = float(v)
    buckets = {
        float(le): float(count)
        for le, count in re.findall(r'^classe_forwarding_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    }
    return values, buckets


def udp_errors() -> dict[str, int]:
    """The kernel's UDP counters (all sockets): datagrams dropped because a receive buffer was full."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    counters = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:]), strict=True)) if len(lines) >= 2 else {}
    return {k: counters.get(k, 0) for k in ("RcvbufErrors", "InErrors", "InDatagrams")}


def socket_drops(pid: int) -> int:
    """Datagrams the kernel dropped on this process's UDP sockets (receive buffer full), so far.

    Read from the process's own view of the socket tables: the right one if it runs in another
    network namespace (the pinned benchmark)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return 0
    total = 0
    for table in (f"/proc/{pid}/net/udp", f"/proc/{pid}/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 12 and parts[9] in inodes:
                total += int(parts[12])
    return total


def server_settings() -> dict[str, Any] | None:
    """The adaptation settings this checkout's server knows, with their defaults (None: it knows none)."""
    from signaling.config import Settings

    fields = Settings.model_fields
    known = {name: fields[name].default for name in SETTINGS if name in fields}
    return known if {"audio_forward_loudest", "video_last_n"} <= known.keys() else None


class Sample:
    def __init__(self, server: psutil.Process, client: psutil.Process, port: int) -> None:
        self.at = time.monotonic()
        s, c = server.cpu_times(), client.cpu_times()
        self.server_cpu = s.user + s.system
        self.client_cpu = c.user + c.system
        self.machine = psutil.cpu_times()
        self.metrics, self.buckets = metrics(port)
        self.udp = udp_errors()
        self.drops = (socket_drops(server.pid), socket_drops(client.pid))
        self.loadavg = os.getloadavg()


def busy(t: Any) -> float:
    return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))


def row(mode: str, phase: dict[str, Any], a: Sample, b: Sample) -> dict[str, Any]:
    span = b.at - a.at
    # Forwarded: the packets the server numbered for the clients (received or lost). The server's own
    # counter (classe_rtp_forwarded_packets) is kept beside it: older servers counted in it the
    # consumers they visited but did not send to.
    forwarded = phase["client_expected_pps"] * span
    counter = b.metrics.get("classe_rtp_forwarded_packets", 0) - a.metrics.get("classe_rtp_forwarded_packets", 0)
    server_cpu = (b.server_cpu - a.server_cpu) / span
    client_cpu = (b.client_cpu - a.client_cpu) / span
    machine = (busy(b.machine) - busy(a.machine)) / span
    received = b.metrics.get("classe_rtp_received_packets", 0) - a.metrics.get("classe_rtp_received_packets", 0)
    sent_bytes = b.metrics.get("classe_srtp_sent_bytes", 0) - a.metrics.get("classe_srtp_sent_bytes", 0)
    return {
        "mode": mode,
        "phase": phase["phase"],
        "window_s": span,
        "server_cpu": server_cpu,
        "forwarded_pps": forwarded / span,
        "server_counter_forwarded_pps": counter / span,
        "server_received_pps": received / span,
        "server_drops_pps": {
            k[5:]: (b.metrics[k] - a.metrics.get(k, 0)) / span
            for k in b.metrics
            if k.startswith("drop_") and b.metrics[k] > a.metrics.get(k, 0)
        },
        "server_sent_kbps": sent_bytes * 8 / span / 1000,
        "cpu_us_per_forwarded_packet": server_cpu * 1e6 / (forwarded / span) if forwarded else None,
        "server_forwarding_us": histogram_quantiles(a.buckets, b.buckets),
        "load_generator_cpu": client_cpu,
        "other_processes_cpu": max(0.0, machine - server_cpu - client_cpu),
        "loadavg_1min": b.loadavg[0],
        "kernel_udp_rcvbuf_drops_per_s": (b.udp["RcvbufErrors"] - a.udp["RcvbufErrors"]) / span,
        "server_socket_drops_per_s": (b.drops[0] - a.drops[0]) / span,
        "load_generator_socket_drops_per_s": (b.drops[1] - a.drops[1]) / span,
        "nacks_received": b.metrics.get("classe_nacks_received", 0) - a.metrics.get("classe_nacks_received", 0),
        "keyframe_requests_sent": b.metrics.get("classe_keyframe_requests_sent", 0)
        - a.metrics.get("classe_keyframe_requests_sent", 0),
        **{k: v for k, v in phase.items() if k != "phase"},
    }


# Where the server's time goes, by the innermost of these frames on the stack (py-spy names).
PROFILE_PARTS = (
    ("consumer: rewrite and queue", "Consumer.forward ("),
    ("fan-out loop (incl. paused consumers)", "Producer._fan_out ("),
    ("producer: receive (cache, NACK, stats)", "Producer.receive ("),
    ("SRTP decrypt of arrivals", "Session.unprotect ("),
    ("transport: receive and route", "Transport.receive_rtp ("),
    ("arrival callback (before routing)", "data_received ("),
    ("arrival callback (before routing)", "datagram_received ("),
    ("SRTP encrypt", "SrtpProtector."),
    ("send: sendto on the socket", "PeerTransport.send ("),
    ("flush of the outboxes", "LiveSession.flush ("),
    ("core timers (reports, NACK, keyframes, speakers)", "handle_timer ("),
    ("signaling (WebSocket, room)", "signaling/"),
    ("aiohttp (HTTP, WebSocket)", "aiohttp/"),
    ("aiortc/aioice (ICE checks, DTLS, RTCP)", "aioice/"),
    ("aiortc/aioice (ICE checks, DTLS, RTCP)", "aiortc/"),
)


def profile_summary(path: Path) -> dict[str, Any]:
    """The event loop's busy samples from py-spy's collapsed stacks, split by PROFILE_PARTS.

    Only the main thread's stacks count (the others are idle pools), and with native frames a
    sample waiting in epoll is idle. Each busy sample goes to the innermost part on its stack.
    """
    parts: dict[str, int] = {}
    leaves: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "run_app (" not in stack or not n.isdigit():
            continue
        frames = stack.split(";")
        frames = frames[next(i for i, f in enumerate(frames) if f.startswith("run_app (")) + 1 :]
        if not frames or frames[-1].startswith(("epoll_wait", "epoll_pwait")):
            continue
        busy += int(n)
        part = "event loop and the rest"
        for frame in reversed(frames):
            hit = next((label for label, marker in PROFILE_PARTS if marker in frame), None)
            if hit:
                part = hit
                break
        parts[part] = parts.get(part, 0) + int(n)
        leaf = re.sub(r" \((?:.*/)?([^/]+):\d+\)$", r" (\1)", frames[-1])
        leaves[leaf] = leaves.get(leaf, 0) + int(n)
    if not busy:
        return {}
    return {
        "busy_samples": busy,
        "parts": {k: v / busy for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "self_time": {k: v / busy for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]},
    }


def warnings(r: dict[str, Any]) -> list[str]:
    """What makes a window's figures doubtful: a machine busy with something else, a starved
    load generator, packets lost before the server counted them."""
    out = []
    published = sum(r["published_pps"].values())
    if published and r["server_received_pps"] < 0.97 * published:
        out.append(f"the server received {r['server_received_pps'] / published:.0%} of what the publishers sent")
    if r["other_processes_cpu"] > 0.3:
        out.append(f"other processes used {r['other_processes_cpu']:.0%} of a core")
    if r["load_generator_socket_drops_per_s"] > 0 or (r["loss"] or 0) > 0.001:
        out.append(f"the clients lost {r['loss'] or 0:.2%}")
    if r["load_generator_cpu"] > 0.9:
        out.append(f"the load generator used {r['load_generator_cpu']:.0%} of a core")
    return out


def run_mode(mode: str, args: argparse.Namespace, settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    env: dict[str, str] = {}
    views = mode == "adaptation"
    if mode == "everything" and settings is not None:
        env = {"CLASSE_AUDIO_FORWARD_LOUDEST": "0", "CLASSE_VIDEO_LAST_N": "0"}
    port = free_port()
    server = start_server("classe", port, env)
    cmd = [
        PY,
        "-m",
        "benchmarks.camera_clients",
        "--url",
        f"http://127.0.0.1:{port}",
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--period",
        str(args.period),
        "--student-kbps",
        str(args.student_kbps),
    ] + (["--views"] if views else [])
    client = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sp, cp = psutil.Process(server.pid), psutil.Process(client.pid)
    spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    starts: dict[str, Sample] = {}
    ends: dict[str, Sample] = {}
    phases: list[dict[str, Any]] = []
    try:
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("WINDOW_START"):
                starts[line.split()[1]] = Sample(sp, cp, port)
                if args.profile:
                    out = args.profile / f"{mode}-{line.split()[1]}.txt"
                    spies.append((line.split()[1], out, profile(server.pid, args.duration, out, args.profile_native)))
            elif line.startswith("WINDOW_END"):
                ends[line.split()[1]] = Sample(sp, cp, port)
            elif line.startswith("["):
                phases = json.loads(line)
        client.wait(timeout=60)
        if not phases:
            raise RuntimeError(f"load generator failed: {client.stderr.read()[-3000:] if client.stderr else ''}")
    finally:
        stop(client, server)
    rows = [row(mode, p, starts[p["phase"]], ends[p["phase"]]) for p in phases]
    for r in rows:
        r["warnings"] = warnings(r)
        for w in r["warnings"]:
            print(f"warning, {mode}: {r['phase']}: {w}", file=sys.stderr)
    for phase, out, spy in spies:
        spy.wait(timeout=60)
        summary = profile_summary(out) if out.exists() else {}
        cpu = 0.0
        for r in rows:
            if r["phase"] == phase:
                r["profile"] = {"file": str(out), **summary}
                cpu = r["server_cpu"]
        print(f"server profile, {mode}: {phase} ({out}), share of busy samples and of a core:", file=sys.stderr)
        for name, share in summary.get("parts", {}).items():
            print(f"  {share:6.1%} {share * cpu:6.1%}  {name}", file=sys.stderr)
        print("  innermost frames:", file=sys.stderr)
        for name, share in summary.get("self_time", {}).items():
            print(f"  {share:6.1%}  {name}", file=sys.stderr)
    return rows


def profile(pid: int, duration: float, out: Path, native: bool) -> subprocess.Popen[bytes]:
    """Samples the server with py-spy (on PATH) over one window, as collapsed stacks."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "200"]
    cmd += ["--format", "raw", "--output", str(out)]
    # native frames show what the event loop's C code does, but need the server stopped at each sample
    cmd += ["--native"] if native else ["--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def conditions(args: argparse.Namespace, settings: dict[str, Any] | None) -> dict[str, Any]:
    branches = {}
    for branch in ("i10-select", "i10-core"):
        tip = git("rev-parse", "--short", branch)
        if tip:
            merged = subprocess.run(["git", "merge-base", "--is-ancestor", branch, "HEAD"], cwd=ROOT).returncode == 0
            branches[branch] = f"{tip} ({'merged' if merged else 'not merged'})"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain") else ""),
        "commit_subject": git("log", "-1", "--format=%s"),
        "branches": branches,
        "machine": machine(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "server_settings": settings,
        "parameters": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "talkers": f"2 or 3 students at a time, changing every {args.period:g} s; the teacher every other period",
            "teacher": "VP8 640x360 30 fps ~1 Mbit/s (keyframe every 1 s) + Opus 32 kbit/s mono, 20 ms",
            "students": f"VP8 320x180 15 fps ~{args.student_kbps} kbit/s (keyframe every 2 s) + Opus 32 kbit/s mono, "
            "20 ms; not talking: low-level noise (about 40-byte packets) with the audio level saying so",
            "views": "student: teacher 640x360 css px + 9 students at 160x90; teacher: 9 students at 160x90",
            "trailer": "every RTP payload carries a 12-byte send-time trailer: downlink 'media' excludes it",
        },
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | server CPU | forwarded pkt/s | µs CPU / fwd pkt | student downlink kbit/s mean / max "
        "(audio + video) | student receives audio / video pkt/s | videos received (server) | loss (clients) "
        "| end-to-end p50 / p99 ms | load gen. CPU | others' CPU | UDP drops/s server / load gen. / all |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["student_downlink_kbps"]
        lat = r["latency_us"]
        cells = [
            r["mode"] if r["mode"] == r["phase"] else f"{r['mode']}: {r['phase']}",
            f"{r['server_cpu']:.0%}",
            f"{r['forwarded_pps']:.0f}",
            fmt(r["cpu_us_per_forwarded_packet"], ".1f"),
            f"{d['mean_media']:.0f} / {d['max_media']:.0f} ({d['audio']:.0f} + {d['video']:.0f})",
            f"{r['student_received_pps']['audio']:.0f} / {r['student_received_pps']['video']:.0f}",
            fmt(r["videos_receiving_mean"], ".1f"),
            fmt(r["loss"], ".2%"),
            f"{fmt(lat['p50'] and lat['p50'] / 1000, '.1f')} / {fmt(lat['p99'] and lat['p99'] / 1000, '.1f')}",
            f"{r['load_generator_cpu']:.0%}",
            f"{r['other_processes_cpu']:.0%}",
            f"{r['server_socket_drops_per_s']:.0f} / {r['load_generator_socket_drops_per_s']:.0f} / "
            f"{r['kernel_udp_rcvbuf_drops_per_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets against this run's rows."""
    by = {r["phase"]: r for r in rows}
    out = []
    base, layout, audio = by.get("everything"), by.get("layout"), by.get("audio_only")
    if base and layout:
        for label, key, target in (
            ("forwarded packets", "forwarded_pps", TARGETS["packets"]),
            ("server CPU", "server_cpu", TARGETS["cpu"]),
        ):
            ratio = base[key] / layout[key] if layout[key] else float("inf")
            verdict = "met" if ratio >= target else "not met"
            out.append(f"{label}: {ratio:.1f}x fewer with adaptation (target >= {target:g}x): {verdict}")
    if layout:
        kbps = layout["student_downlink_kbps"]["max_media"]
        verdict = "met" if kbps < TARGETS["layout_kbps"] else "not met"
        out.append(f"student downlink, default layout: {kbps:.0f} kbit/s at most (target < 2500): {verdict}")
    if audio:
        kbps = audio["student_downlink_kbps"]["max_media"]
        verdict = "met" if kbps < TARGETS["audio_only_kbps"] else "not met"
        out.append(f"student downlink, audio-only: {kbps:.0f} kbit/s at most (target < 150): {verdict}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="./dev bench cameras", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of each measured window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--period", type=float, default=4.0, help="seconds between changes of talkers")
    parser.add_argument("--student-kbps", type=int, default=150, help="the students' camera bitrate")
    parser.add_argument(
        "--modes", default="everything,adaptation", help="which servers to run (adaptation needs issue 10's settings)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-class30.json")
    parser.add_argument(
        "--profile", type=Path, help="sample the server with py-spy (on PATH) in each window, stacks into this folder"
    )
    parser.add_argument("--profile-native", action="store_true", help="with --profile: C frames too (slows the server)")
    args = parser.parse_args(argv)
    settings = server_settings()
    modes = [m for m in args.modes.split(",") if m]
    if "adaptation" in modes and settings is None:
        print("this server has no adaptation settings yet: running the everything mode only", file=sys.stderr)
        modes = [m for m in modes if m != "adaptation"]
    info = conditions(args, settings)
    print(json.dumps(info, indent=2, ensure_ascii=False), flush=True)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    for mode in modes:
        rows += run_mode(mode, args, settings)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    info["run_s"] = round(time.monotonic() - started)
    info["loadavg_at_end"] = os.getloadavg()
    print(table(rows))
    verdicts = comparison(rows)
    for line in verdicts:
        print(line)
    for r in rows:
        for w in r["warnings"]:
            print(f"warning, {r['mode']}: {r['phase']}: {w} (run again on a quiet machine)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"conditions": info, "results": rows, "targets": verdicts}, indent=2, ensure_ascii=False)
    )
    print(f"wrote {args.out} in {info['run_s']} s")


if __name__ == "__main__":
    main()
