"""One server process from start to exit: serve until SIGTERM or SIGINT, then stop gracefully.

aiohttp's `run_app` turns SIGTERM into an exit that closes the listener first: joins would then
meet a closed port instead of an answer, and nobody would be told. Here the listener stays open
while the participants are told to rejoin (signaling/stopping.py); a second signal cuts the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from . import admin, stopping
from .app import SERVER, create_app
from .config import Settings

log = logging.getLogger(__name__)
# After the grace period, what is left (connections being closed) gets this long before aiohttp
# cancels its handlers.
SHUTDOWN_SECONDS = 3.0


async def run(settings: Settings, shared_port: int | None = None) -> None:
    """`shared_port`: a worker of `classe serve --workers` (signaling/workers.py) also accepts
    connections on the port it shares with the other workers, until it stops."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = create_app(settings)
    server = app[SERVER]
    # No access log: it would record participants' IP addresses (personal data under the GDPR).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()  # migrates, binds the media port
    socket_path = settings.admin_socket_path
    operator: web.AppRunner | None = None
    try:
        operator = await admin.open_socket(server, socket_path)
        await web.TCPSite(runner, settings.host, settings.port).start()
        shared = web.TCPSite(runner, settings.host, shared_port, reuse_port=True) if shared_port else None
        if shared is not None:
            await shared.start()
        await stop.wait()
        stop.clear()
        if shared is not None:  # the kernel sends the newcomers to the other workers
            await shared.stop()
        await stopping.stop(server, settings.stop_grace_seconds, stop)
    finally:
        if operator is not None:
            await admin.close_socket(operator, socket_path)
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
