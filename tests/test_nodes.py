"""Several Classe nodes as separate processes (`classe serve`), sharing one redis-server and one
PostgreSQL database, with real aiortc peers and a real Chromium: a class lives on one node whichever
node answered the join, a second class goes to the less-loaded node, a node killed with SIGKILL is
noticed by its lease expiring and its class reopens on the other when the peers rejoin."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from .browser import chromium
from .conftest import Postgres
from .peers import Peer
from .process import ClasseProcess
from .redis_server import RedisServer, nodes_calm
from .test_access import new_class
from .test_web_client import join, video_plays
from .web import PASSWORD, Browser, code_of

# Short, so that a dead node is noticed within the test; long enough that a node slowed down by a
# busy 2-CPU machine still renews in time (every third of it).
LEASE = 3.0

Cluster = Callable[[int], Awaitable[list[ClasseProcess]]]


def ws_of(node: ClasseProcess) -> str:
    return node.url.replace("http://", "ws://") + "/ws"


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"still not true after {timeout} s"
        await asyncio.sleep(every)


async def metric(node: ClasseProcess, line: str) -> float | None:
    """The value of one metric line (name and labels) on the node, None when absent."""
    async with aiohttp.ClientSession() as http, http.get(node.metrics_url) as response:
        for text in (await response.text()).splitlines():
            if text.startswith(line + " "):
                return float(text.rsplit(" ", 1)[1])
    return None


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer, postgres: Postgres) -> AsyncIterator[Cluster]:
    """Starts `count` nodes (node-1, node-2, …) on one Redis and one database, with a teacher
    account, and waits until each node sees every other in the directory."""
    database_url = postgres.create_database()
    started: list[ClasseProcess] = []

    async def start(count: int) -> list[ClasseProcess]:
        nodes = []
        for i in range(1, count + 1):
            folder = tmp_path / f"node-{i}"
            folder.mkdir()
            node = ClasseProcess(
                folder,
                redis_url=redis_server.url,
                node_id=f"node-{i}",
                node_lease_seconds=LEASE,
                database_url=database_url,
            )
            nodes.append(node)
            started.append(node)
        await nodes[0].create_teacher()  # and the database's tables
        for node in nodes:
            await node.start()
        for node in nodes:
            await until(functools.partial(_sees, node, count))
        return nodes

    yield start
    for node in started:
        await node.kill()


async def _sees(node: ClasseProcess, count: int) -> bool:
    return await metric(node, 'classe_directory_nodes{state="ready"}') == count


async def lesson(node: ClasseProcess, title: str = "Sciences 5e") -> tuple[Browser, str]:
    """The teacher, signed in on `node`, and a new link class of hers without lobby."""
    teacher = Browser(node)
    await teacher.sign_in("prof@ac-lyon.fr", PASSWORD)
    return teacher, code_of(await new_class(teacher, lobby=False, title=title))


async def join_answer(node: ClasseProcess, code: str, name: str | None, teacher: Browser | None = None) -> Any:
    """POST /api/join on `node`, as a guest or as the teacher: her session is in the shared database,
    and her cookies, for 127.0.0.1, go to every port."""
    if teacher is not None:
        teacher.classe = node
        return await teacher.ok("POST", "/api/join", {"code": code})
    async with Browser(node) as guest:
        return await guest.ok("POST", "/api/join", {"code": code, "name": name})


async def enter(answer: Any, name: str, role: str = "student") -> Peer:
    """An aiortc peer joining where the join answer says."""
    peer = Peer("", "", name, role=role)
    await peer.join(answer["token"], ws_url=answer["ws_url"])
    return peer


def sees_video(peer: Peer, frames: int = 10) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(peer.video()) == 1 and len(peer.video()[0].numbers) > frames

    return check


def hosting(nodes: list[ClasseProcess], ws_url: str) -> tuple[ClasseProcess, ClasseProcess]:
    """The node a join answer points at, and the other one."""
    host = next(node for node in nodes if ws_of(node) == ws_url)
    return host, next(node for node in nodes if node is not host)


async def test_a_class_lives_on_one_node_whichever_node_answers_the_join(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    nodes = await cluster(2)
    teacher, code = await lesson(nodes[0])
    peers: list[Peer] = []
    try:
        answer = await join_answer(nodes[0], code, None, teacher)
        host, other = hosting(nodes, answer["ws_url"])
        prof = await enter(answer, "Mme Durand", role="teacher")
        peers.append(prof)
        await prof.publish()
        # Students asking either node are sent to the same one.
        for asked, name in ((other, "Léa"), (host, "Hugo"), (other, "Inès")):
            student_answer = await join_answer(asked, code, name)
            assert student_answer["ws_url"] == answer["ws_url"]
            peers.append(await enter(student_answer, name))
        for student in peers[1:]:
            await until(sees_video(student))

        # A join sent to the other node is refused there: ask POST /api/join again.
        stray = Peer("", "", "Zoé")
        peers.append(stray)
        refused = await stray.join((await join_answer(other, code, "Zoé"))["token"], until="error", ws_url=ws_of(other))
        assert (refused["code"], refused["fatal"]) == ("wrong_node", True)

        # A second class opens on the node with nobody in it.
        await nodes_calm(redis_server.url, 2)  # a node busy on CPU would be passed over
        second = code_of(await new_class(teacher, lobby=False, title="Histoire 4e"))
        assert (await join_answer(host, second, "Paul"))["ws_url"] == ws_of(other)

        # The dashboard, whichever node serves it, sees the first class live; a change made on the
        # other node reaches the node hosting the class (its lobby, here).
        teacher.classe = other
        classes: dict[str, Any] = {}

        async def first_live() -> bool:
            # As of the hosting node's last renewal (every third of a lease): polled, as the page does.
            classes.update({c["title"]: c for c in (await teacher.ok("GET", "/api/classes"))["classes"]})
            return bool(classes["Sciences 5e"]["live"])

        await until(first_live, timeout=10)
        assert not classes["Histoire 4e"]["live"]
        update = {"title": "Sciences 5e", "access": "link", "lobby": True}
        await teacher.ok("PUT", f"/api/classes/{classes['Sciences 5e']['id']}", update)

        async def lobby_on() -> bool:
            return any(e["type"] == "class_state" and e["state"]["lobby"] for e in peers[1].events)

        await until(lobby_on, timeout=10)
    finally:
        for peer in peers:
            await peer.close()
        await teacher.http.close()


async def test_a_node_killed_is_noticed_by_its_lease_and_its_class_reopens_on_the_other(cluster: Cluster) -> None:
    nodes = await cluster(2)
    teacher, code = await lesson(nodes[0])
    peers: list[Peer] = []
    try:
        answer = await join_answer(nodes[0], code, None, teacher)
        host, survivor = hosting(nodes, answer["ws_url"])
        prof = await enter(answer, "Mme Durand", role="teacher")
        await prof.publish()
        student = await enter(await join_answer(survivor, code, "Léa"), "Léa")
        peers += [prof, student]
        await until(sees_video(student))

        await host.kill()  # SIGKILL: no goodbye, its lease simply stops being renewed
        killed_at = time.monotonic()

        async def moved() -> Any:
            again = await join_answer(survivor, code, None, teacher)
            return again if again["ws_url"] == ws_of(survivor) else None

        again = await until(moved, timeout=LEASE + 15)
        assert time.monotonic() - killed_at < LEASE + 15
        prof = await enter(again, "Mme Durand", role="teacher")
        await prof.publish()
        student = await enter(await join_answer(survivor, code, "Léa"), "Léa")
        peers += [prof, student]
        await until(sees_video(student))
        await until(lambda: _sees(survivor, 1))
        async with aiohttp.ClientSession() as http, http.get(survivor.url + "/readyz") as response:
            ready = await response.json()
        assert response.status == 200, ready
        assert ready["checks"]["directory"] == "ok" and ready["node"] == survivor.folder.name
    finally:
        for peer in peers:
            await peer.close()
        await teacher.http.close()


async def test_a_page_served_by_one_node_joins_the_class_on_another_in_chromium(cluster: Cluster) -> None:
    """The join answer's ws_url, and the page's Content-Security-Policy that lets it connect there."""
    nodes = await cluster(2)
    teacher, code = await lesson(nodes[0])
    prof: Peer | None = None
    try:
        answer = await join_answer(nodes[0], code, None, teacher)
        host, page_node = hosting(nodes, answer["ws_url"])
        prof = await enter(answer, "Mme Durand", role="teacher")
        await prof.publish()
        async with chromium(page_node.url) as browser:
            page = await browser.page("lea")
            response = await page.goto(f"{page_node.url}/c/{code}")
            assert response is not None
            policy = response.headers["content-security-policy"]
            connect = next(d for d in policy.split("; ") if d.startswith("connect-src"))
            assert host.url.replace("http://", "ws://") in connect.split()
            await join(page, "Léa")
            await expect(page.locator("#room")).to_be_visible()
            await video_plays(page, "#stage .tile video")
            assert ws_of(host) in browser.requests  # the page's signaling went to the class's node
            assert ws_of(page_node) not in browser.requests
            own = (page_node.url + "/", ws_of(host), "blob:", "data:")
            assert [u for u in browser.requests if not u.startswith(own)] == []
            assert browser.errors == []
    finally:
        if prof is not None:
            await prof.close()
        await teacher.http.close()
