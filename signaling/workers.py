"""`classe serve --workers N`: N server processes on one machine, so that it uses all its cores.

Python runs one core per process, and a class lives in one process. The supervisor starts N
workers, each a node of the Redis directory (redis_url is required): the directory places each
class on the least-loaded worker, so many classes spread over the cores. All workers accept the
HTTP API on the shared port (SO_REUSEPORT: the kernel spreads the connections); each also listens
on a port of its own, port + 1 + i, where the browsers of the classes it hosts open their
WebSocket (the join answer's `ws_url`). Media: worker i uses media_port + i, or its share of the
media_port_min..media_port_max range; metrics: metrics_port + i.

The supervisor forwards SIGTERM and SIGINT (each worker stops gracefully, its classes reopening on
the other workers as their participants rejoin), and starts again a worker that died.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from .accounts import fill_search_names
from .config import Settings
from .store import Database

log = logging.getLogger(__name__)
# A worker that dies is started again after a pause that doubles while it keeps dying at once.
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 30.0
STEADY_SECONDS = 60.0  # having run this long, a worker that dies is restarted after FIRST_PAUSE
KILL_AFTER_GRACE = 15.0  # past the workers' stop_grace_seconds, those still running are killed


def check(settings: Settings) -> None:
    """Refuse, with the reason, what cannot work with several workers."""
    if settings.workers > 1 and not settings.redis_url:
        raise SystemExit(
            "classe: --workers needs redis_url: the workers are nodes that find each class's through the Redis "
            "class directory (docs/operations.md, 'Several processes')"
        )
    if settings.metrics_port and settings.metrics_port + settings.workers - 1 > 65535:
        raise SystemExit("classe: metrics_port + workers goes past port 65535: choose a lower metrics_port")
    if settings.workers > 1 and not settings.media_port:
        span = settings.media_port_max - settings.media_port_min + 1
        if span // settings.workers < 2:
            raise SystemExit("classe: the media port range is too small to share between the workers")


def worker_flags(settings: Settings, index: int) -> list[str]:
    """The settings of worker `index` that differ from the supervisor's: its node id, its own HTTP
    port and URL, its metrics port, its media port(s)."""
    own_port = settings.port + 1 + index
    flags = ["--workers", "1", "--node-id", f"{settings.node_id}-{index}", "--port", str(own_port)]
    flags += ["--shared-port", str(settings.port), "--admin-socket", str(admin_sockets(settings)[index])]
    if settings.node_url:
        flags += ["--node-url", settings.node_url.replace("{worker}", str(index))]
    if settings.metrics_port:  # 0 (none) is the same for every worker
        flags += ["--metrics-port", str(settings.metrics_port + index)]
    if settings.media_port:
        flags += ["--media-port", str(settings.media_port + index)]
    else:
        share = (settings.media_port_max - settings.media_port_min + 1) // settings.workers
        low = settings.media_port_min + index * share
        flags += ["--media-port-min", str(low), "--media-port-max", str(low + share - 1)]
    return flags


def admin_sockets(settings: Settings) -> list[Path]:
    """Each worker's operator's socket (`classe drain` asks them all); a single process's own."""
    path = settings.admin_socket_path
    if settings.workers == 1:
        return [path]
    return [path.with_name(f"{path.name}-{index}") for index in range(settings.workers)]


class Supervisor:
    def __init__(self, settings: Settings, argv: list[str]) -> None:
        self.settings = settings
        self.argv = argv  # the supervisor's own `serve` arguments, which every worker starts from
        self.workers: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._stopped = asyncio.Event()

    def command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "signaling.cli", *self.argv, *worker_flags(self.settings, index)]

    async def run(self) -> int:
        # The schema once, before the workers: each would otherwise upgrade it at the same moment.
        db = Database(self.settings.database)
        try:
            await db.migrate()
            await fill_search_names(db)
        finally:
            await db.close()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.stop, signal.SIGINT)
        log.info("starting %d workers on port %d", self.settings.workers, self.settings.port)
        results = await asyncio.gather(*(self._keep(index) for index in range(self.settings.workers)))
        return 0 if all(code == 0 for code in results) else 1

    def stop(self, signum: int) -> None:
        """The first signal asks every worker to stop gracefully; a second one cuts their wait."""
        if self.stopping and signum == signal.SIGTERM:
            signum = signal.SIGINT
        self.stopping = True
        self._stopped.set()
        for process in self.workers.values():
            if process.returncode is None:
                process.send_signal(signum)

    async def _keep(self, index: int) -> int:
        """Run worker `index` until the supervisor stops, starting it again when it dies."""
        pause = FIRST_PAUSE
        while True:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(*self.command(index))
            self.workers[index] = process
            code = await self._wait(process)
            if self.stopping:
                return code
            if time.monotonic() - started > STEADY_SECONDS:
                pause = FIRST_PAUSE
            log.error("worker %d exited with status %d: starting it again in %.0f s", index, code, pause)
            try:
                await asyncio.wait_for(self._stopped.wait(), pause)
                return code
            except TimeoutError:
                pause = min(pause * 2, LONGEST_PAUSE)

    async def _wait(self, process: asyncio.subprocess.Process) -> int:
        waiting = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not waiting.done():  # stopping: the worker has its grace period, then a little more
            try:
                await asyncio.wait_for(waiting, self.settings.stop_grace_seconds + KILL_AFTER_GRACE)
            except TimeoutError:
                log.error("a worker did not stop within its grace period: killed")
                process.kill()
                await process.wait()
        return process.returncode if process.returncode is not None else 1
