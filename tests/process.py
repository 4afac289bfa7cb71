"""A real Classe server as a separate process (`python -m signaling.cli serve`), for the tests that
signal it, restart it or drive its operator's commands. Its log goes to a file the test reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import free_port, free_udp_port
from .web import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


class ClasseProcess:
    """One server, configured by a TOML file in `folder`; `start` again after a stop restarts it on
    the same ports, database and data folder."""

    def __init__(self, folder: Path, **settings: Any) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = int(settings.pop("port", 0)) or free_port()
        metrics_port = int(settings.pop("metrics_port", free_port()))
        fields: dict[str, Any] = {
            "port": self.port,
            "metrics_port": metrics_port,
            "media_port": free_udp_port(),
            "data_dir": str(folder / "data"),
            "dev_mode": True,
            "shed_under_load": False,
            # The token secret outlives a restart, as an operator sets it (README): not needed for a
            # rejoin (each one gets a fresh token), but ids stay the same.
            "token_secret": "a-secret-for-the-tests-that-is-long-enough",
            **settings,
        }
        self.config = folder / "classe.toml"
        self.config.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in fields.items()))
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # its metrics listener
        self.process: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "signaling.cli", *args, "--config", str(self.config)]

    async def command(self, *args: str, **env: str) -> tuple[int, str, str]:
        """Run one `classe` command against this server's settings: exit status, output, errors."""
        process = await asyncio.create_subprocess_exec(
            *self.cli(*args),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def create_teacher(self, email: str = "prof@ac-lyon.fr", name: str = "Mme Durand") -> None:
        status, _, err = await self.command(
            "create-account", "--email", email, "--name", name, CLASSE_PASSWORD=PASSWORD
        )
        assert status == 0, err

    async def start(self, timeout: float = 30.0) -> None:
        log = self.folder / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.cli("serve"), cwd=ROOT, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.process.returncode is None, self.log()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                assert time.monotonic() < deadline, f"the server did not start:\n{self.log()}"
                await asyncio.sleep(0.1)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exited(self, timeout: float) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def logs_text(self) -> str:
        """Every run's log (a restarted server has one per start)."""
        return "".join(log.read_text(errors="replace") for log in self.logs)

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """GET /readyz: its status and answer."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "/readyz") as response:
            answer: dict[str, Any] = await response.json()
            return response.status, answer

    @property
    def ws_url(self) -> str:
        """The WebSocket a join answer names for a class hosted here (with a directory that names it)."""
        return self.url.replace("http://", "ws://") + "/ws"

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
