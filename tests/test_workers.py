"""`classe serve --workers 2`: a supervisor and two real worker processes sharing one Redis and one
SQLite file. Two classes run in two workers and their peers receive each other's media; a worker
killed with SIGKILL is started again and its class reopens when the peers rejoin; SIGTERM stops
the whole with exit status 0."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil
import pytest

from signaling.config import Settings
from signaling.workers import admin_sockets, check, worker_flags

from .peers import Peer
from .process import ClasseProcess
from .redis_server import RedisServer, nodes_calm
from .test_access import new_class
from .web import PASSWORD, Browser, code_of

SECRET = "a-token-secret-for-the-workers-test"


def free_run(count: int, kind: socket.SocketKind) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "still not true"
        await asyncio.sleep(0.1)


def sees_video(peer: Peer, frames: int = 5) -> Callable[[], bool]:
    return lambda: len(peer.video()) == 1 and len(peer.video()[0].numbers) > frames


def test_each_worker_gets_its_own_ports_node_and_socket_and_several_need_redis() -> None:
    settings = Settings(workers=3, redis_url="redis://127.0.0.1:1/0", token_secret=SECRET, port=9000, node_id="n")
    flags = worker_flags(settings, 2)
    assert flags[flags.index("--port") + 1] == "9003" and flags[flags.index("--shared-port") + 1] == "9000"
    assert flags[flags.index("--node-id") + 1] == "n-2" and flags[flags.index("--media-port") + 1] == "40002"
    assert flags[flags.index("--admin-socket") + 1] == str(admin_sockets(settings)[2])
    assert flags[flags.index("--metrics-port") + 1] == str(Settings().metrics_port + 2)  # a listener each
    unlisted = Settings(workers=2, redis_url="redis://x/0", token_secret=SECRET, metrics_port=0)
    assert "--metrics-port" not in worker_flags(unlisted, 1)  # 0: no metrics listener, in any worker
    assert len(set(admin_sockets(settings))) == 3
    ranged = Settings(workers=2, redis_url="redis://127.0.0.1:1/0", token_secret=SECRET, media_port=0)
    assert worker_flags(ranged, 1)[-4:] == ["--media-port-min", "40500", "--media-port-max", "40999"]
    named = Settings(workers=2, redis_url="redis://x/0", token_secret=SECRET, node_url="https://c.fr/w/{worker}")
    assert worker_flags(named, 1)[worker_flags(named, 1).index("--node-url") + 1] == "https://c.fr/w/1"
    with pytest.raises(SystemExit, match="redis_url"):
        check(Settings(workers=2))
    with pytest.raises(SystemExit, match="metrics_port"):
        check(Settings(workers=2, redis_url="redis://x/0", token_secret=SECRET, metrics_port=65535))
    with pytest.raises(ValueError, match="worker"):  # every worker would claim one URL
        Settings(workers=2, redis_url="redis://x/0", token_secret=SECRET, node_url="https://c.fr")


def worker_pid(node: ClasseProcess, own_port: int) -> int:
    assert node.process is not None
    for child in psutil.Process(node.process.pid).children():
        command = child.cmdline()
        if "--shared-port" in command and command[command.index("--port", command.index("--workers")) + 1] == str(
            own_port
        ):
            return int(child.pid)
    raise AssertionError(f"no worker on port {own_port}")


async def ready(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def until_ready(*ports: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all([await ready(port) for port in ports]):
        assert time.monotonic() < deadline, f"workers on {ports} not ready"
        await asyncio.sleep(0.2)


async def open_class(node: ClasseProcess, teacher: Browser, code: str) -> tuple[str, Peer, Peer]:
    """The teacher publishes a camera through the worker the join answer names; a pupil receives it."""
    grant = await teacher.ok("POST", "/api/join", {"code": code})
    base = grant["ws_url"].removesuffix("/ws").replace("ws://", "http://")
    prof, pupil = Peer(base, "", "Mme Durand", role="teacher"), Peer(base, "", "Inès")
    await prof.join(grant["token"])
    await prof.publish(audio=False)
    async with Browser(node) as guest:
        answer = await guest.ok("POST", "/api/join", {"code": code, "name": "Inès"})
    assert answer["ws_url"] == grant["ws_url"]  # whichever worker answered the POST
    await pupil.join(answer["token"])
    await until(sees_video(pupil), timeout=30)
    return grant["ws_url"], prof, pupil


async def test_two_classes_run_in_two_workers_and_a_worker_that_dies_comes_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port, metrics_port = free_run(3, socket.SOCK_STREAM), free_run(2, socket.SOCK_STREAM)
    settings = {"port": port, "media_port": free_run(2, socket.SOCK_DGRAM), "workers": 2, "metrics_port": metrics_port}
    node = ClasseProcess(tmp_path, redis_url=redis_server.url, token_secret=SECRET, **settings)
    await node.create_teacher()
    peers: list[Peer] = []
    try:
        await node.start()
        await until_ready(port + 1, port + 2)
        for index in range(2):  # each worker's metrics on a listener of its own: metrics_port + i
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{metrics_port + index}/metrics") as r,
            ):
                assert re.search(
                    rf'^classe_node_info{{directory="redis",node="[^"]+-{index}"}} 1.0$', await r.text(), re.M
                )
        async with Browser(node) as teacher:
            await teacher.sign_in("prof@ac-lyon.fr", PASSWORD)
            codes = [code_of(await new_class(teacher, lobby=False, title=f"Classe {i}")) for i in range(2)]
            opened = []
            for code in codes:
                await nodes_calm(redis_server.url, 2)  # a worker busy on CPU would be passed over
                opened.append(await open_class(node, teacher, code))
            peers += [peer for _, *pair in opened for peer in pair]
            # One class per worker: the second went to the one the first left idle.
            assert {url for url, *_ in opened} == {f"ws://127.0.0.1:{port + 1}/ws", f"ws://127.0.0.1:{port + 2}/ws"}
            first_port = int(opened[0][0].rsplit(":", 1)[1].removesuffix("/ws"))
            dead = worker_pid(node, first_port)
            psutil.Process(dead).kill()
            await until(lambda: not psutil.pid_exists(dead) or psutil.Process(dead).status() == "zombie")
            await until_ready(first_port)  # started again by the supervisor
            assert worker_pid(node, first_port) != dead
            # The other class never noticed; the first one's peers rejoin and get their media again.
            other = opened[1][2]
            before = len(other.video()[0].numbers)
            await until(lambda: len(other.video()[0].numbers) > before + 5)
            _, prof, pupil = await open_class(node, teacher, codes[0])
            peers += [prof, pupil]
        node.signal(signal.SIGTERM)
        assert await node.exited(40) == 0, node.log()
    finally:
        for peer in peers:
            await peer.close()
        await node.kill()
