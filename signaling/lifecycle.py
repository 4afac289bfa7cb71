"""One server process from start to exit: serve until SIGTERM or SIGINT, then stop gracefully.

aiohttp's `run_app` turns SIGTERM into an exit that closes the listener first: joins would then
meet a closed port instead of an answer, and nobody would be told. Here the listener stays open
while the participants are told to rejoin (signaling/stopping.py); a second signal cuts the wait.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from . import admin, exposition, stopping
from .app import SERVER, create_app
from .config import Settings
from .events import Event

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
    metrics: web.AppRunner | None = None
    left = 0
    try:
        operator = await admin.open_socket(server, socket_path)
        metrics = await exposition.open_listener(server.registry, settings)
        await web.TCPSite(runner, settings.host, settings.port).start()
        shared = web.TCPSite(runner, settings.host, shared_port, reuse_port=True) if shared_port else None
        if shared is not None:
            await shared.start()
        # Ports only: the addresses are the operator's settings, and no address goes into the log.
        media = settings.media_port or f"{settings.media_port_min}-{settings.media_port_max}"
        server.events.emit(
            Event.NODE_STARTED, port=settings.port, media_port=media, metrics_port=settings.metrics_port or "none"
        )
        await stop.wait()
        stop.clear()
        if shared is not None:  # the kernel sends the newcomers to the other workers
            await shared.stop()
        left = await stopping.stop(server, settings.stop_grace_seconds, stop)
    finally:
        if operator is not None:
            await admin.close_socket(operator, socket_path)
        await runner.cleanup()
        if metrics is not None:
            await metrics.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    server.events.emit(Event.NODE_STOPPED, closed=left)
