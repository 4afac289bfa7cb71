"""A real Redis server (Debian's `redis-server`) for the tests: loopback only, nothing written to disk."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from signaling.directory.redis import BUSY_CPU, NODES, node_key

from .conftest import free_port


class RedisServer:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `./dev test` installs it (apt-get install redis-server)")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No persistence: a restart is an empty Redis, as after losing it.
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.folder), "--daemonize", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        """An outage: the server goes away at once, as on a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


async def nodes_calm(url: str, count: int, timeout: float = 30.0) -> None:
    """Wait until `count` nodes are registered and none is busy on CPU: placement passes over a node
    at BUSY_CPU or more (a node just started, or slowed by the tests around it, may be), and a test
    that expects a class on the idle node must not meet that rule by chance."""
    client = aioredis.from_url(url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ids = await client.smembers(NODES)
            raws = await client.mget([node_key(i) for i in ids]) if ids else []
            loads = [json.loads(raw)["cpu"] for raw in raws if raw]
            if len(loads) >= count and all(cpu < BUSY_CPU for cpu in loads):
                return
            assert time.monotonic() < deadline, f"nodes not calm: {loads}"
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
