"""What a live class remembers (bans, lobby decisions, locks, holds), kept where another node finds
it: when a class moves (its node stops or dies), the node that takes it over carries on with the
teachers' decisions instead of starting afresh.

One node hosts a class at a time and is the only one to write its snapshot; the snapshot is read
once, when a node that does not know the class receives its first participant. Writes leave the
event loop's hands at once: the latest snapshot of each class waits in memory and a writer task
sends it, so a slow Redis never holds up a teacher's click.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .base import SessionStore, stop_tasks

log = logging.getLogger(__name__)
# A snapshot is a few sets of opaque ids; one this large was not written by a node.
MAX_SNAPSHOT_BYTES = 1 << 20


def session_key(class_id: str) -> str:
    return f"classe:session:{class_id}"


class RedisSessions(SessionStore):
    """Snapshots as JSON under `classe:session:<class id>`, expiring `ttl` seconds after their
    class was last hosted (class_idle_seconds: removals outlive an empty class that long)."""

    def __init__(self, client: Redis, hosted: Callable[[], dict[str, int]], ttl: float) -> None:
        self.client = client
        self.hosted = hosted
        self.ttl_ms = max(1000, int(ttl * 1000))
        self._waiting: dict[str, str | None] = {}  # the snapshot to write (None: to delete)
        self._written: dict[str, str] = {}  # the last one written: an unchanged class is not rewritten
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer()), asyncio.create_task(self._keep_alive())]

    async def stop(self) -> None:
        await stop_tasks(self._tasks)

    async def recall(self, class_id: str) -> Any:
        if class_id in self._waiting:  # not written yet: this node's word is the latest
            text = self._waiting[class_id]
            return None if text is None else json.loads(text)
        try:
            raw = await self.client.get(session_key(class_id))
        except (RedisError, OSError) as exc:
            log.warning("could not read a class's decisions from Redis (%s): it starts afresh here", type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            if len(raw) > MAX_SNAPSHOT_BYTES:
                raise ValueError("too large")
            return json.loads(raw)
        except ValueError:
            log.warning("dropped a malformed class snapshot from Redis")
            return None

    def remember(self, class_id: str, snapshot: dict[str, object]) -> None:
        text = json.dumps(snapshot, separators=(",", ":"))
        if class_id not in self._waiting and self._written.get(class_id) == text:
            return
        self._waiting[class_id] = text
        self._wake.set()

    def forget(self, class_id: str) -> None:
        self._waiting[class_id] = None
        self._written.pop(class_id, None)
        self._wake.set()

    async def flush(self) -> None:
        await self._write()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._write():
                await asyncio.sleep(1.0)  # Redis is away: what waits is tried again, latest first
                self._wake.set()

    async def _write(self) -> bool:
        batch, self._waiting = self._waiting, {}
        if not batch:
            return True
        pipe = self.client.pipeline(transaction=False)
        for class_id, text in batch.items():
            if text is None:
                pipe.delete(session_key(class_id))
            else:
                pipe.set(session_key(class_id), text, px=self.ttl_ms)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            for class_id, text in batch.items():
                self._waiting.setdefault(class_id, text)  # a newer snapshot taken meanwhile wins
            if not self._failing:
                log.error("could not write classes' decisions to Redis (%s): retrying", type(exc).__name__)
            self._failing = True
            return False
        for class_id, text in batch.items():
            if text is not None:
                self._written[class_id] = text
        if self._failing:
            log.info("classes' decisions are written to Redis again")
        self._failing = False
        return True

    async def _keep_alive(self) -> None:
        """A class whose decisions do not change keeps its snapshot while it is hosted here."""
        period = min(60.0, self.ttl_ms / 4000)
        while True:
            await asyncio.sleep(period)
            hosted = self.hosted()
            for class_id in [c for c in self._written if c not in hosted]:
                del self._written[class_id]
            if not self._written:
                continue
            pipe = self.client.pipeline(transaction=False)
            for class_id in self._written:
                pipe.pexpire(session_key(class_id), self.ttl_ms)
            with contextlib.suppress(RedisError, OSError):  # the writer logs outages
                await pipe.execute()
