from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from signaling.app import SERVER, ClassServer, create_app
from signaling.config import Settings


@dataclass
class RunningServer:
    url: str
    server: ClassServer
    settings: Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def classe() -> AsyncIterator[RunningServer]:
    """A real server on loopback (HTTP on a free port, media on a UDP range)."""
    settings = Settings(port=free_port(), media_port_min=42000, media_port_max=42999, ice_timeout_seconds=10)
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    yield RunningServer(f"http://127.0.0.1:{settings.port}", app[SERVER], settings)
    await runner.cleanup()
