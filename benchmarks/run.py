"""Runs the load benchmarks and writes docs/benchmarks.md, its JSON and its plot.

Each configuration starts a fresh server process, a load-generator process, and samples the
server's CPU time, memory and forwarding counter exactly over the measured window. Classe, the
MediaRelay baseline and the bare UDP forwarder are measured in the same run, side by side.

Four entries (`./dev bench` passes its arguments here):
- `./dev bench [--sizes ...]`: the fan-out scaling runs above and the audio-only whole class;
- `./dev bench cameras [--duration ...]`: the class of 30 with cameras, everything forwarded
  against bandwidth adaptation (`benchmarks/cameras.py`, about 3 minutes), which writes
  docs/benchmarks-class30.json;
- `./dev bench simulcast [--duration ...]`: the class of 30 with simulcast cameras and three
  students behind 500 kbit/s, in the core's simulation (`benchmarks/simulcast.py`, about 20 s),
  which writes docs/benchmarks-simulcast.json with `--json`;
- `./dev bench mass-switch [--classes ... --workers 1,2]`: classes opening within a minute
  through the Redis directory, against 1 and 2 worker processes (`benchmarks/mass_switch.py`,
  about 3 minutes), which writes docs/benchmarks-mass-switch.json with `--json`;
- `./dev bench pinned [--sockets per-peer,shared ...]`: the server pinned to CPU 0 and its load
  generator to CPU 1, Classe beside Janus: cost per delivered packet (average and marginal),
  saturation and past it (`benchmarks/pinned.py`, about 5 minutes, root), which writes
  docs/benchmarks-pinned.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The benchmarks read each server's metrics on its own HTTP port, which serves /metrics only to
# this token (docs/operations.md, "Metrics"); no metrics listener of its own, on a port that
# several benchmark servers would share.
METRICS_TOKEN = "benchmarks-read-the-metrics"
METRICS_SETTINGS = {"CLASSE_METRICS_TOKEN": METRICS_TOKEN, "CLASSE_METRICS_PORT": "0"}


def read_metrics(port: int) -> str:
    """The text of the server's /metrics on its HTTP port."""
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return str(resp.read().decode())


def scrape(port: int) -> tuple[float, dict[float, float]]:
    """The forwarded-packet counter and the cumulative forwarding-time histogram."""
    text = read_metrics(port)
    match = re.search(r"^classe_rtp_forwarded_packets_total (\S+)$", text, re.M)
    buckets = {
        float(le): float(count)
        for le, count in re.findall(r'^classe_forwarding_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    }
    return (float(match.group(1)) if match else 0.0), buckets


def histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    """Upper bounds (µs) of the buckets holding the p50, the p99 and the largest observation."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if not total:
        return {"p50": None, "p99": None, "max": None}

    def quantile(q: float) -> float:
        return next(b for b, c in zip(bounds, counts, strict=True) if c >= q * total) * 1e6

    largest = next(b for b, c in zip(bounds, counts, strict=True) if c >= total)
    return {"p50": quantile(0.5), "p99": quantile(0.99), "max": largest * 1e6}


def start_server(target: str, port: int, settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts one server; `settings` are extra CLASSE_* variables for Classe."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if target == "classe":
        env |= {
            "CLASSE_MEDIA_PORT_MIN": "43000",
            "CLASSE_MEDIA_PORT_MAX": "44999",
            "CLASSE_MAX_PARTICIPANTS_PER_CLASS": "1000",
            # Load clients take dev tokens: no accounts, no lobby. Its SQLite file goes to a throwaway folder.
            "CLASSE_DEV_MODE": "true",
            "CLASSE_DATA_DIR": tempfile.mkdtemp(prefix="classe-bench-"),
            **METRICS_SETTINGS,
            **(settings or {}),
        }
        cmd = [PY, "-m", "signaling.cli", "serve", "--port", str(port)]
    elif target == "relay":
        cmd = [PY, "-m", "benchmarks.relay_server", "--port", str(port)]
    else:
        cmd = [PY, "-m", "benchmarks.udp_forwarder", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if target == "udp":
            time.sleep(0.5)
            return proc
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            continue
    proc.kill()
    raise RuntimeError(f"{target} server did not start")


def stop(client: subprocess.Popen[str], server: subprocess.Popen[bytes]) -> None:
    """The load generator at once; the server given ten seconds to close its sockets."""
    client.kill()
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def run_one(target: str, scenario: str, subscribers: int, duration: float, warmup: float) -> dict[str, Any]:
    port = free_port()
    server = start_server(target, port)
    ps = psutil.Process(server.pid)
    idle_rss = ps.memory_info().rss
    url = f"http://127.0.0.1:{port}" if target != "udp" else f"127.0.0.1:{port}"
    client = subprocess.Popen(
        [
            PY,
            "-m",
            "benchmarks.clients",
            target,
            "--url",
            url,
            "--scenario",
            scenario,
            "--subscribers",
            str(subscribers),
            "--duration",
            str(duration),
            "--warmup",
            str(warmup),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cpu0 = cpu1 = 0.0
    fwd0 = fwd1 = 0.0
    hist0: dict[float, float] = {}
    hist1: dict[float, float] = {}
    rss = idle_rss
    result: dict[str, Any] = {}
    try:
        assert client.stdout is not None
        for line in client.stdout:
            if line.startswith("WINDOW_START"):
                t = ps.cpu_times()
                cpu0 = t.user + t.system
                if target == "classe":
                    fwd0, hist0 = scrape(port)
            elif line.startswith("WINDOW_END"):
                t = ps.cpu_times()
                cpu1 = t.user + t.system
                if target == "classe":
                    fwd1, hist1 = scrape(port)
                rss = ps.memory_info().rss
            elif line.startswith("{"):
                result = json.loads(line)
        client.wait(timeout=60)
        if not result:
            raise RuntimeError(f"load generator failed: {client.stderr.read()[-2000:] if client.stderr else ''}")
    finally:
        stop(client, server)
    cpu = cpu1 - cpu0
    # MediaRelay and the UDP forwarder have no counter: what the clients received is what they sent.
    pps = (fwd1 - fwd0) / duration if target == "classe" else result["received_pps"]
    receivers = subscribers if scenario == "fanout" else 31
    return {
        "target": target,
        "scenario": scenario,
        "subscribers": subscribers,
        "duration_s": duration,
        "forwarded_pps": pps,
        "cpu_utilization": cpu / duration,
        "cpu_s_per_1000_packets": cpu / (pps * duration / 1000) if pps else None,
        "subscribers_per_core": receivers / (cpu / duration) if cpu else None,
        "rss_mb": rss / 2**20,
        "rss_per_subscriber_kb": (rss - idle_rss) / receivers / 1024,
        "loss": result.get("loss"),
        "latency_us": result.get("latency_us"),
        "server_forwarding_us": histogram_quantiles(hist0, hist1) if target == "classe" else None,
    }


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> str:
    """The CPU model, logical CPUs and memory of this machine, for a result's conditions."""
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu_model}, {psutil.cpu_count()} logical CPUs, {psutil.virtual_memory().total // 2**30} GiB"


def conditions(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain") else ""),
        "machine": machine(),
        "python": platform.python_version(),
        "parameters": {
            "sizes": args.sizes,
            "relay_sizes": args.relay_sizes,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "publisher": "VP8 640x360 30 fps ~1 Mbit/s + Opus 20 ms, pre-encoded",
        },
    }


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | scenario | N | forwarded pkt/s | server CPU | CPU s / 1000 pkts | subscribers / core "
        "| server in→out p50 / p99 / max (ms, bucket bound) | end-to-end p50 / p99 / max (ms) | loss | RSS MB "
        "| RSS / subscriber KB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lat = r["latency_us"] or {}
        latency = (
            " / ".join(fmt(lat.get(k) and lat[k] / 1000, ".2f") for k in ("p50", "p99", "max"))
            if lat.get("p50")
            else "-"
        )
        srv = r.get("server_forwarding_us") or {}
        server = " / ".join(fmt(srv[k] / 1000, "g") for k in ("p50", "p99", "max")) if srv.get("p50") else "-"
        cells = [
            r["target"],
            r["scenario"],
            r["subscribers"],
            f"{r['forwarded_pps']:.0f}",
            f"{r['cpu_utilization']:.0%}",
            fmt(r["cpu_s_per_1000_packets"], ".4f"),
            fmt(r["subscribers_per_core"], ".0f"),
            server,
            latency,
            fmt(r["loss"], ".2%"),
            f"{r['rss_mb']:.0f}",
            f"{r['rss_per_subscriber_kb']:.0f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"classe": "tab:blue", "relay": "tab:red", "udp": "tab:green"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for target in ("classe", "relay", "udp"):
        pts = [r for r in rows if r["target"] == target and r["scenario"] == "fanout"]
        if not pts:
            continue
        n = [r["subscribers"] for r in pts]
        ax1.plot(
            n, [r["forwarded_pps"] for r in pts], "o-", color=colors[target], label=f"{target}: forwarded packets/s"
        )
        ax1.plot(
            n,
            [r["cpu_utilization"] * 1e4 for r in pts],
            "x--",
            color=colors[target],
            label=f"{target}: server CPU x 10^4",
        )
        e2e = [(r["subscribers"], r["latency_us"]["p99"] / 1000) for r in pts if (r["latency_us"] or {}).get("p99")]
        if e2e:
            ax2.plot(
                *zip(*e2e, strict=True), "o-", color=colors[target], label=f"{target}: end to end (load generator)"
            )
        srv = [
            (r["subscribers"], r["server_forwarding_us"]["p99"] / 1000)
            for r in pts
            if (r.get("server_forwarding_us") or {}).get("p99")
        ]
        if srv:
            ax2.plot(
                *zip(*srv, strict=True), "s--", color=colors[target], label=f"{target}: server in to out (bucket bound)"
            )
    ax1.set(xlabel="subscribers", title="Forwarded packets/s and server CPU", xscale="log", yscale="log")
    ax2.set(xlabel="subscribers", ylabel="p99 latency (ms)", title="p99 latency", xscale="log", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    if sys.argv[1:2] == ["simulcast"]:
        from .simulcast import main as simulcast

        simulcast(sys.argv[2:])
        return
    if sys.argv[1:2] == ["pinned"]:
        from .pinned import main as pinned

        pinned(sys.argv[2:])
        return
    if sys.argv[1:2] == ["mass-switch"]:
        from .mass_switch import main as mass_switch

        mass_switch(sys.argv[2:])
        return
    if sys.argv[1:2] == ["cameras"]:
        from .cameras import main as cameras

        cameras(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50,100,200", help="subscriber counts for Classe and the UDP forwarder")
    parser.add_argument("--relay-sizes", default="1,5,10", help="subscriber counts for the MediaRelay baseline")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--no-class", action="store_true", help="skip the whole-class scenario")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where benchmarks.json and .png go")
    parser.add_argument("--replot", type=Path, help="only redraw the table and plot from a saved benchmarks.json")
    args = parser.parse_args()
    if args.replot:
        rows = json.loads(args.replot.read_text())["results"]
        print(table(rows))
        plot(rows, args.out / "benchmarks.png")
        return
    sizes = [int(x) for x in args.sizes.split(",")]
    relay_sizes = [int(x) for x in args.relay_sizes.split(",") if x]
    plan = (
        [("classe", "fanout", n) for n in sizes]
        + [("udp", "fanout", n) for n in sizes]
        + [("relay", "fanout", n) for n in relay_sizes]
    )
    if not args.no_class:
        plan.append(("classe", "class", 30))
    info = conditions(args)
    print(json.dumps(info, indent=2), flush=True)
    rows = []
    for target, scenario, n in plan:
        row = run_one(target, scenario, n, args.duration, args.warmup)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps({"conditions": info, "results": rows}, indent=2))
    plot(rows, args.out / "benchmarks.png")
    print(f"wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.png'}")


if __name__ == "__main__":
    main()
