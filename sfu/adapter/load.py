"""Measures how loaded the process is, for the core's `LoadShedder`, at a steady pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..core.overload import INTERVAL, LoadShedder
from .network import MediaNetwork


class LoadMonitor:
    """Every INTERVAL: the process's CPU time over the wall time, and the longest a datagram
    waited in its shared media sockets to be read; the shedder decides, and `on_change` hears
    when its level moves."""

    def __init__(self, shedder: LoadShedder, network: MediaNetwork, on_change: Callable[[], None]) -> None:
        self.shedder = shedder
        self.network = network
        self.on_change = on_change
        self._handle: asyncio.TimerHandle | None = None
        self._wall = 0.0
        self._cpu = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._wall, self._cpu = loop.time(), time.process_time()
        self._handle = loop.call_later(INTERVAL, self._measure)

    def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        wall, cpu = loop.time(), time.process_time()
        busy = (cpu - self._cpu) / max(wall - self._wall, 1e-3)
        self._wall, self._cpu = wall, cpu
        backlog = self.network.backlog()
        if backlog is not None and self.shedder.observe(wall, busy, backlog):
            self.on_change()
        self._handle = loop.call_later(INTERVAL, self._measure)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
