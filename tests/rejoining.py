"""Participants that behave as the browser client does when their server stops (session.js): told
`server_stopping`, they wait the delay they were given, ask POST /api/join again through whichever
node the entrance (a load balancer) sends them to, join the node the answer names, publish again,
and retry with the client's backoff while they are refused or no server answers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from .peers import Peer
from .web import Browser

# What the browser client asks again for, even before its first join (session.js, ASK_AGAIN).
ASK_AGAIN = {"wrong_node", "directory_unavailable", "server_stopping", "server_draining"}


class Entrance:
    """Where the participants' HTTP requests go: the node a load balancer picks, switched by the test."""

    def __init__(self, url: str) -> None:
        self.url = url


class Refused(Exception):
    """This attempt did not get in: the client tries again after its backoff."""


class Attendee:
    """One participant, with its own cookies (the same participant on every rejoin)."""

    def __init__(self, entrance: Entrance, browser: Browser, code: str, name: str | None, publish: bool = False):
        self.entrance = entrance
        self.browser = browser
        self.code = code
        self.name = name  # None: the signed-in teacher
        self.publishes = publish
        self.peer: Peer | None = None
        self.peers: list[Peer] = []  # one per join, the last one current
        self.joins: list[tuple[str, float]] = []  # the node each join reached, and when
        self.told: list[tuple[dict[str, Any], float]] = []  # each `server_stopping`, and when
        self.attempts = 0
        self.rng = random.Random()
        self._watching: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> str:
        """The URL of the node the current connection reached."""
        return self.joins[-1][0]

    async def join(self) -> Peer:
        """Until in: POST /api/join, then the WebSocket it names; refused, after the client's backoff."""
        while True:
            try:
                return await self._join_once()
            except Refused:
                delay = min(1.0 * 2**self.attempts, 10.0) * (0.75 + self.rng.random() / 2)
                self.attempts += 1
                await asyncio.sleep(delay)

    async def _join_once(self) -> Peer:
        try:
            status, answer = await self.browser.call("POST", "/api/join", {"code": self.code, "name": self.name})
        except (aiohttp.ClientError, OSError) as exc:
            raise Refused(str(exc)) from None
        if status != 200:
            raise Refused(str(answer))
        base = answer["ws_url"].replace("ws://", "http://").removesuffix("/ws") if answer["ws_url"] else None
        peer = Peer(base or self.entrance.url, "", answer["name"])
        try:
            await peer.join(answer["token"])
            if self.publishes:
                await peer.publish()
        except (AssertionError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await peer.close()
            raise Refused(str(exc)) from None
        self.peer = peer
        self.peers.append(peer)
        self.joins.append((peer.base_url, time.monotonic()))
        self.attempts = 0
        task = asyncio.create_task(self._watch(peer))
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)
        return peer

    async def _watch(self, peer: Peer) -> None:
        """Told the server stops: wait the delay given, leave, join again. Closed with a fatal error
        that says "ask again" (without the warning, e.g. after the grace period): join again at once."""
        seen = 0
        while True:
            await asyncio.sleep(0.02)
            for event in peer.events[seen:]:
                if event["type"] == "server_stopping":
                    self.told.append((event, time.monotonic()))
                    await asyncio.sleep(event["reconnect_in_ms"] / 1000)
                    break
                if event["type"] == "error" and event.get("fatal") and event.get("code") in ASK_AGAIN:
                    break
            else:
                seen = len(peer.events)
                continue
            await peer.close()
            self.peer = None
            await self.join()
            return

    def sees_video(self, frames: int = 5) -> Callable[[], bool]:
        """The current connection receives one video, and more than `frames` of it."""

        def check() -> bool:
            peer = self.peer
            return peer is not None and len(peer.video()) == 1 and len(peer.video()[0].numbers) > frames

        return check

    async def close(self) -> None:
        for task in list(self._watching):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for peer in self.peers:
            await peer.close()
        await self.browser.http.close()


async def until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout} s: {what or check}"
        await asyncio.sleep(0.1)


async def metric(url: str, name: str) -> float:
    """One sample of a node's /metrics (`url`: its metrics listener's), by its full name (labels included)."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name}")


def clean(log: str) -> None:
    """A stop leaves no trace of a failure in the server's log."""
    assert "Traceback" not in log and " ERROR " not in log, log
