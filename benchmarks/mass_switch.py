"""The mass switch: a whole region's classes opening within a minute, against 1 and 2 worker
processes of `classe serve` on this machine, side by side in one run.

For each worker count: a real redis-server and a fresh server (SQLite, the Redis directory), a
teacher account and its classes made before the measure; then, spread over `--window` seconds,
each class opens: its teacher joins through the HTTP API (`POST /api/join`, which places the
class) and the WebSocket the answer names, publishes a microphone over real WebRTC (pre-encoded
Opus), and its students join one after another, one of them receiving over real WebRTC, the
others by signaling only (a light client: the server's negotiation timeout is raised so that they
are not removed for not answering). Measured: each join's latency (from the POST to `joined`),
failed joins, the first audio packet's delay for the WebRTC students, and, once every class is
in, the classes and participants each process holds, its forwarded packets/s and its CPU.

    ./dev bench mass-switch [--classes 40 --students 12 --window 40 --workers 1,2 --json PATH]

Writes docs/benchmarks-mass-switch.json with --json; the reading is in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
from aiortc import RTCPeerConnection, RTCSessionDescription

from .clients import Publishing, new_pc
from .fastpath import FastPath, neuter
from .media import encode_audio
from .run import METRICS_SETTINGS, fmt, free_port, git, machine, read_metrics

ROOT = Path(__file__).resolve().parent.parent
TEACHER, PASSWORD = "prof@ac-lyon.fr", "mass switch benchmark password"
SECRET = "mass-switch-benchmark-token-secret"
JOIN_TIMEOUT = 30.0


@dataclass
class Outcome:
    joins: list[float] = field(default_factory=list)  # seconds, POST /api/join to `joined`
    first_audio: list[float] = field(default_factory=list)  # seconds, `joined` to the first packet
    failures: dict[str, int] = field(default_factory=dict)

    def failed(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


class Server:
    """redis-server and `classe serve --workers N`, each in a temporary folder."""

    def __init__(self, workers: int, folder: Path) -> None:
        self.workers, self.folder = workers, folder
        self.port, self.redis_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CLASSE_HOST": "127.0.0.1",
            "CLASSE_PORT": str(self.port),
            "CLASSE_MEDIA_PORT": str(44000 + 10 * workers),
            "CLASSE_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'classe.db'}",
            "CLASSE_DATA_DIR": str(folder),
            "CLASSE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CLASSE_TOKEN_SECRET": SECRET,
            "CLASSE_WORKERS": str(workers),
            "CLASSE_NEGOTIATION_TIMEOUT_SECONDS": "3600",
            "CLASSE_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            **METRICS_SETTINGS,
        }
        self.redis: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "signaling.cli", *args]

    def start(self) -> None:
        redis = shutil.which("redis-server")
        if redis is None:
            raise SystemExit("redis-server is missing: apt-get install redis-server")
        self.redis = subprocess.Popen(
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        env = {**self.env, "CLASSE_PASSWORD": PASSWORD}
        made = self.cli("create-account", "--email", TEACHER, "--name", "Mme Durand")
        subprocess.run(made, cwd=ROOT, env=env, check=True, capture_output=True)
        log = (self.folder / "server.log").open("wb")
        self.process = subprocess.Popen(self.cli("serve"), cwd=ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not all(self._ready(port) for port in self.ports()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def ports(self) -> list[int]:
        """Where each process answers alone (its metrics): the workers' own ports, or the one port."""
        return [self.port] if self.workers == 1 else [self.port + 1 + i for i in range(self.workers)]

    @staticmethod
    def _ready(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def processes(self) -> list[psutil.Process]:
        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        return parent.children() if self.workers > 1 else [parent]

    def stop(self) -> None:
        for process in (self.process, self.redis):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


def metric(port: int, name: str) -> float:
    text = read_metrics(port)
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class Participant:
    def __init__(self, http: aiohttp.ClientSession, base: str, code: str, name: str, outcome: Outcome) -> None:
        self.http, self.base, self.code, self.name, self.outcome = http, base, code, name, outcome
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sub: RTCPeerConnection | None = None
        self.path: FastPath | None = None
        self.receives = False  # answers its subscription over real WebRTC
        self.joined_at = 0.0
        self.first_packet: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def join(self) -> bool:
        """As the class page does: its session (and CSRF token) when it loads, then the click."""
        try:
            async with self.http.get(f"{self.base}/api/session") as r:
                headers = {"X-CSRF-Token": (await r.json())["csrf"]}
        except aiohttp.ClientError as exc:
            self.outcome.failed(f"session {type(exc).__name__}")
            return False
        started = time.monotonic()
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                form = {"code": self.code, "name": self.name}
                async with self.http.post(f"{self.base}/api/join", json=form, headers=headers) as r:
                    grant = await r.json()
                    if r.status != 200:
                        self.outcome.failed(f"http {r.status} {grant.get('error')}")
                        return False
                ws_url = grant.get("ws_url") or self.base.replace("http", "ws", 1) + "/ws"
                self.ws = await self.http.ws_connect(ws_url, heartbeat=None, max_msg_size=0)
                self._reader = asyncio.create_task(self._read())
                await self.ws.send_json({"type": "join", "protocol": 1, "token": grant["token"]})
                reply = await self.replies.get()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.outcome.failed(type(exc).__name__)
            return False
        if reply["type"] != "joined":
            self.outcome.failed(f"{reply['type']} {reply.get('code')}")
            return False
        self.joined_at = time.monotonic()
        self.outcome.joins.append(self.joined_at - started)
        return True

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["type"] == "subscribe_offer" and self.receives:
                await self._answer(data["sdp"])
            elif data["type"] in ("joined", "publish_answer", "error"):
                await self.replies.put(data)

    async def _answer(self, sdp: str) -> None:
        assert self.ws is not None
        if self.sub is None:
            self.sub = new_pc()
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        neuter(self.sub)
        if self.path is None:
            self.path = FastPath(self.sub, self._packet)
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        await self.ws.send_json({"type": "subscribe_answer", "sdp": self.sub.localDescription.sdp})

    def _packet(self, packet: bytes) -> None:
        if not self.first_packet.done():
            self.first_packet.set_result(time.monotonic())

    async def publish_audio(self, frames: dict[str, list[Any]], stop: asyncio.Event) -> asyncio.Task[None] | None:
        assert self.ws is not None
        pub = Publishing(False, True)
        sdp = await pub.offer()
        await self.ws.send_json({"type": "publish", "sdp": sdp, "tracks": [{"mid": "0", "source": "microphone"}]})
        reply = await self.replies.get()
        if reply["type"] != "publish_answer":
            self.outcome.failed(f"publish {reply.get('code')}")
            return None
        return await pub.start(reply["sdp"], frames, False, [], stop)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.sub is not None:
            await self.sub.close()


async def make_classes(base: str, count: int) -> list[str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/api/session") as r:
            csrf = (await r.json())["csrf"]
        headers = {"X-CSRF-Token": csrf}
        async with http.post(f"{base}/api/login", json={"email": TEACHER, "password": PASSWORD}, headers=headers) as r:
            assert r.status == 200, await r.text()
        codes = []
        for i in range(count):
            form = {"title": f"Classe {i}", "access": "link", "lobby": False}
            async with http.post(f"{base}/api/classes", json=form, headers=headers) as r:
                codes.append(str((await r.json())["link"]).rsplit("/", 1)[1])
        return codes


async def open_class(
    base: str, code: str, students: int, at: float, outcome: Outcome, frames: dict[str, list[Any]], stop: asyncio.Event
) -> tuple[list[Participant], list[asyncio.Task[None]], list[aiohttp.ClientSession]]:
    """The teacher at `at`, then the students within the next 5 s; each has a browser of its own."""
    rng = random.Random(code)
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(students + 1)]
    teacher = Participant(sessions[0], base, code, "Prof", outcome)
    await _sign_in(sessions[0], base)
    people, tasks = [teacher], []
    if await teacher.join():
        task = await teacher.publish_audio(frames, stop)
        if task is not None:
            tasks.append(task)
    arrivals = sorted(rng.uniform(0, 5) for _ in range(students))
    start = time.monotonic()

    async def student(i: int, delay: float) -> None:
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        pupil = Participant(sessions[i + 1], base, code, f"Élève {i}", outcome)
        pupil.receives = i == 0
        people.append(pupil)
        if await pupil.join() and pupil.receives:
            try:
                got = await asyncio.wait_for(pupil.first_packet, JOIN_TIMEOUT)
                outcome.first_audio.append(got - pupil.joined_at)
            except TimeoutError:
                outcome.failed("no audio")

    await asyncio.gather(*(student(i, d) for i, d in enumerate(arrivals)))
    return people, tasks, sessions


async def _sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/api/session") as r:
        csrf = (await r.json())["csrf"]
    login = {"email": TEACHER, "password": PASSWORD}
    async with http.post(f"{base}/api/login", json=login, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200, await r.text()


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    a = np.array(values) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


async def measure(workers: int, args: argparse.Namespace, frames: dict[str, list[Any]]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"classe-mass-{workers}-"))
    server = Server(workers, folder)
    try:
        server.start()
        base = f"http://127.0.0.1:{server.port}"
        codes = await make_classes(base, args.classes)
        outcome, stop = Outcome(), asyncio.Event()
        processes = server.processes()
        cpu_before = [p.cpu_times() for p in processes]
        me, load_before = psutil.Process(), os.getloadavg()[0]
        mine_before = sum(me.cpu_times()[:2])
        began = time.monotonic()
        spacing = args.window / args.classes
        opened = await asyncio.gather(
            *(
                open_class(base, code, args.students, began + i * spacing, outcome, frames, stop)
                for i, code in enumerate(codes)
            )
        )
        switch_s = time.monotonic() - began
        generator_cpu = (sum(me.cpu_times()[:2]) - mine_before) / switch_s
        cpu_switch = [sum(p.cpu_times()[:2]) - sum(b[:2]) for p, b in zip(processes, cpu_before, strict=True)]
        # Everyone is in: what each process holds and forwards.
        forwarded = [metric(port, "classe_rtp_forwarded_packets_total") for port in server.ports()]
        cpu_hold = [p.cpu_times() for p in processes]
        await asyncio.sleep(args.hold)
        forwarded_pps = [
            (metric(port, "classe_rtp_forwarded_packets_total") - f) / args.hold
            for port, f in zip(server.ports(), forwarded, strict=True)
        ]
        held = [
            {"classes": metric(port, "classe_live_classes"), "participants": metric(port, "classe_participants")}
            for port in server.ports()
        ]
        cpu_held = [(sum(p.cpu_times()[:2]) - sum(b[:2])) / args.hold for p, b in zip(processes, cpu_hold, strict=True)]
        stop.set()
        for people, tasks, sessions in opened:
            await asyncio.gather(*tasks, return_exceptions=True)
            for person in people:
                await person.close()
            for http in sessions:
                await http.close()
        return {
            "workers": workers,
            "classes": args.classes,
            "participants": args.classes * (args.students + 1),
            "switch_s": round(switch_s, 1),
            "join_ms": quantiles(outcome.joins),
            "joins": len(outcome.joins),
            "failed_joins": outcome.failures,
            "first_audio_ms": quantiles(outcome.first_audio),
            "held": held,
            "forwarded_pps": [round(x) for x in forwarded_pps],
            "cpu_during_switch": [round(c / switch_s, 3) for c in cpu_switch],
            "cpu_while_held": [round(c, 3) for c in cpu_held],
            "load_generator_cpu_during_switch": round(generator_cpu, 3),
            "load_average_before": load_before,
        }
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | classes / participants | opened over | joins | failed | join p50 / p99 / max ms "
        "| first audio p50 / p99 ms | held per process (classes / participants) | forwarded pkt/s per process "
        "| CPU per process, switch / held | load generator CPU, switch | load average before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        j, a = r["join_ms"], r["first_audio_ms"]
        held = ", ".join(f"{h['classes']:.0f} / {h['participants']:.0f}" for h in r["held"])
        cpu = ", ".join(f"{s:.0%} / {h:.0%}" for s, h in zip(r["cpu_during_switch"], r["cpu_while_held"], strict=True))
        failed = sum(r["failed_joins"].values())
        lines.append(
            f"| {r['workers']} | {r['classes']} / {r['participants']} | {r['switch_s']} s | {r['joins']} "
            f"| {failed} {r['failed_joins'] or ''} | {' / '.join(fmt(j[q], '.0f') for q in ('p50', 'p99', 'max'))} "
            f"| {' / '.join(fmt(a[q], '.0f') for q in ('p50', 'p99'))} | {held} "
            f"| {', '.join(map(str, r['forwarded_pps']))} | {cpu} "
            f"| {r['load_generator_cpu_during_switch']:.0%} | {r['load_average_before']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--window", type=float, default=40.0, help="seconds over which the classes open")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds measured once everyone is in")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", type=Path, help="write the results and conditions there")
    args = parser.parse_args(argv)
    frames = {"audio": encode_audio()}
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        print(f"{workers} worker(s)…", file=sys.stderr, flush=True)
        results.append(asyncio.run(measure(workers, args, frames)))
    conditions = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain") else ""),
        "machine": machine(),
        "python": platform.python_version(),
        "load_average_at_end": os.getloadavg()[0],
        "parameters": {
            "classes": args.classes,
            "students_per_class": args.students,
            "window_s": args.window,
            "hold_s": args.hold,
            "clients": "one process on the same machine: per class, the teacher publishes Opus over real WebRTC "
            "and one student receives it over real WebRTC; the other students join by signaling only",
            "server": "classe serve (SQLite, Redis directory, shared media port per worker), "
            "negotiation_timeout_seconds 3600, max_connections_per_address 100000",
        },
    }
    if args.json:
        args.json.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2) + "\n")
    print(json.dumps(conditions, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
