from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from playwright.async_api import expect

from signaling.api.context import SERVICES, Services
from signaling.app import SERVER, create_app
from signaling.config import Settings
from signaling.exposition import open_listener
from signaling.server import ClassServer

if TYPE_CHECKING:
    from .redis_server import RedisServer

# A page waits on what the servers and the other browsers of a test do, on a shared CI machine of
# 2 CPUs: Playwright's default of 5 s for `expect` has failed tests there that pass in 6 s. What a
# test asserts is unchanged; a real failure only takes longer to report.
expect.set_options(timeout=15_000)


def free_port(address: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def free_udp_port(address: str = "127.0.0.1") -> int:
    return free_port(address, socket.SOCK_DGRAM)


@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd, on loopback) received."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    async def wait_for(self, to: str, timeout: float = 10.0) -> Message:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in self.messages:
                if message["To"] == to:
                    self.messages.remove(message)
                    return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no mail to {to}")
            await asyncio.sleep(0.02)

    async def link(self, to: str) -> str:
        """The secret of the link in the next mail to `to` (the part after '#')."""
        message = await self.wait_for(to)
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        for word in body.decode().split():
            if word.startswith("http") and "#" in word:
                return word.split("#", 1)[1]
        raise AssertionError("no link in the mail")


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@dataclass
class Postgres:
    bindir: str
    port: int
    socket_dir: str

    def create_database(self) -> str:
        name = f"t{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [f"{self.bindir}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "classe", name],
            check=True,
            capture_output=True,
        )
        return f"postgresql+asyncpg://classe@127.0.0.1:{self.port}/{name}"

    def _pg_ctl(self, *args: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        data = f"{self.socket_dir}/data"
        subprocess.run([*as_user, f"{self.bindir}/pg_ctl", "-D", data, *args], check=True, capture_output=True)

    def stop(self) -> None:
        """An outage: the server goes away at once, as on a crash."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -h 127.0.0.1 -F"
        self._pg_ctl("-l", f"{self.socket_dir}/log", "-o", options, "-w", "start")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session, in a temporary folder (Debian's package; as root, run as postgres)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL is not installed: `./dev test` installs it (apt-get install postgresql)")
    bindir = os.path.dirname(initdb)
    root = tempfile.mkdtemp(prefix="classe-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = f"{root}/data"
    port = free_port()
    subprocess.run(
        [*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "classe", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -h 127.0.0.1 -F"
    subprocess.run(
        [*as_user, f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/log", "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield Postgres(bindir, port, root)
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; tests that prove storage parametrize it with both backends."""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        return pg.create_database()
    return f"sqlite+aiosqlite:///{tmp_path / 'classe.db'}"


both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis server on a free loopback port, with no persistence (tests/redis_server.py)."""
    from .redis_server import RedisServer

    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningServer:
    url: str
    server: ClassServer
    settings: Settings
    services: Services
    mailbox: Mailbox
    metrics_url: str = ""  # /metrics on the metrics listener ("" with metrics_port 0)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@asynccontextmanager
async def running_server(
    folder: Path, mailbox: Mailbox, database_url: str, overrides: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    """A real server on loopback: HTTP on a free port, media on one shared UDP port (or, with
    `media_port` 0 in the overrides, a range), metrics on a listener of their own, mail to a real
    SMTP server."""
    port = free_port()
    fields: dict[str, Any] = {
        "port": port,
        "metrics_port": free_port(),
        "media_port": free_udp_port(overrides.get("host", "127.0.0.1")),
        "media_port_min": 42000,
        "media_port_max": 42999,
        "ice_timeout_seconds": 10,
        # The peers run in the server's process and decode video in Python: its load says nothing
        # of a real server's (tests/test_overload_e2e.py turns the shedding on).
        "shed_under_load": False,
        "dev_mode": True,
        "data_dir": folder,
        "database_url": database_url,
        "smtp_host": "127.0.0.1",
        "smtp_port": mailbox.port,
        "smtp_starttls": False,
    }
    settings = Settings(**{**fields, **overrides})
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    metrics = await open_listener(app[SERVER].registry, settings)
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics" if metrics is not None else ""
    try:
        yield RunningServer(
            f"http://{settings.host}:{settings.port}", app[SERVER], settings, app[SERVICES], mailbox, metrics_url
        )
    finally:
        await runner.cleanup()
        if metrics is not None:
            await metrics.cleanup()


@pytest.fixture
async def classe(
    tmp_path: Path, mailbox: Mailbox, database_url: str, settings_overrides: dict[str, Any]
) -> AsyncIterator[RunningServer]:
    async with running_server(tmp_path, mailbox, database_url, settings_overrides) as server:
        yield server
