"""Two nodes sharing one redis-server and one database, as separate processes, with real aiortc
peers: a node stopped with SIGTERM tells its participants, its class reopens on the other node,
they rejoin there and media flows again, and a student removed before the move is still refused
after it; a draining node keeps its class, new classes go to the other."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .peers import Peer
from .process import ClasseProcess
from .redis_server import RedisServer
from .rejoining import Attendee, Entrance, clean, metric, until
from .test_access import new_class
from .web import PASSWORD, Browser, code_of


@dataclass
class Cluster:
    """Two nodes, the entrance (the load balancer) in front of them, and who came in."""

    nodes: list[ClasseProcess]
    entrance: Entrance
    teacher: Browser
    attendees: list[Attendee] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)

    def node(self, url: str) -> ClasseProcess:
        return next(node for node in self.nodes if node.url == url)

    def other(self, node: ClasseProcess) -> ClasseProcess:
        return next(n for n in self.nodes if n is not node)

    async def attend(self, code: str, name: str | None = None) -> Attendee:
        """The teacher (no name, publishing) or a student, through the entrance."""
        browser = self.teacher if name is None else Browser(self.entrance)
        attendee = Attendee(self.entrance, browser, code, name, publish=name is None)
        self.attendees.append(attendee)
        await attendee.join()
        return attendee


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Cluster]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'classe.db'}"
    nodes = [
        ClasseProcess(tmp_path / name, redis_url=redis_server.url, database_url=database, node_id=name)
        for name in ("node-a", "node-b")
    ]
    await nodes[0].create_teacher()
    for node in nodes:  # one after the other: each migrates the shared database at start
        await node.start()
    entrance = Entrance(nodes[0].url)
    teacher = Browser(entrance)
    await teacher.sign_in("prof@ac-lyon.fr", PASSWORD)
    everyone = Cluster(nodes, entrance, teacher)
    yield everyone
    for attendee in everyone.attendees:
        await attendee.close()
    for peer in everyone.peers:
        await peer.close()
    await teacher.http.close()
    for node in nodes:
        await node.kill()


async def test_a_stopped_node_s_class_reopens_on_the_other_and_its_peers_rejoin_there(cluster: Cluster) -> None:
    code = code_of(await new_class(cluster.teacher, lobby=False, title="Physique 2nde"))
    prof = await cluster.attend(code)
    host = cluster.node(prof.node)
    students = [await cluster.attend(code, "Léo"), await cluster.attend(code, "Inès")]
    assert {s.node for s in students} == {host.url}  # every participant lands where the class lives
    for student in students:
        await until(student.sees_video(), what="video before the move")
    # Tom is removed before the move: he must stay out after it (the class's decisions are in Redis).
    tom = Browser(cluster.entrance)
    grant = await tom.ok("POST", "/api/join", {"code": code, "name": "Tom"})
    intruder = Peer(grant["ws_url"].removesuffix("/ws").replace("ws://", "http://"), "", "Tom")
    cluster.peers.append(intruder)
    await intruder.join(grant["token"])
    assert prof.peer is not None
    await prof.peer.send({"type": "moderate", "action": "remove", "participant_id": intruder.id})
    assert (await intruder.expect("error"))["code"] == "removed"
    survivor = cluster.other(host)
    stays = Peer(host.url, "", "Zoé")  # ignores the warning: keeps the stopping node up a while
    cluster.peers.append(stays)
    async with Browser(cluster.entrance) as guest:
        await stays.join(await guest.join_token(code, "Zoé"))

    # The load balancer sends new requests to the other node once this one is no longer ready.
    signalled = time.monotonic()
    host.signal(signal.SIGTERM)
    cluster.entrance.url = survivor.url
    await until(lambda: all(a.told for a in cluster.attendees), timeout=5, what="everyone told")

    # Everyone rejoins on the other node, where the class reopened; the video flows again.
    for student in students:
        await until(lambda: student.node == survivor.url, timeout=20, what=f"{student.name} moved")  # noqa: B023
        await until(student.sees_video(), timeout=20, what=f"{student.name}'s video after the move")
    moved = time.monotonic() - signalled
    assert prof.node == survivor.url
    assert moved < 15, f"the class took {moved:.1f} s to move"
    print(f"media flowing again on the other node {moved:.1f} s after SIGTERM")
    # The stopping node, still up for Zoé, left the directory: it sends joins to the other node.
    async with Browser(host) as late:
        answer = await late.ok("POST", "/api/join", {"code": code, "name": "Tom"})
    assert answer["ws_url"] == survivor.ws_url
    assert await metric(survivor.metrics_url, "classe_live_classes") == 1.0
    assert await metric(survivor.metrics_url, "classe_participants") == 3.0
    # Removed on the stopped node, refused on the other.
    grant = await tom.ok("POST", "/api/join", {"code": code, "name": "Tom"})
    assert grant["ws_url"] == survivor.ws_url
    again = Peer(survivor.url, "", "Tom")
    cluster.peers.append(again)
    assert (await again.join(grant["token"], until="error"))["code"] == "removed"
    await tom.http.close()

    await stays.close()
    assert await host.exited(timeout=15) == 0
    assert not any(e["type"] == "teacher_away" for s in students for p in s.peers for e in p.events)
    clean(host.log())
    clean(survivor.log())


async def test_a_draining_node_keeps_its_class_and_new_classes_go_to_the_other(cluster: Cluster) -> None:
    first = code_of(await new_class(cluster.teacher, lobby=False, title="Maths 4e"))
    second = code_of(await new_class(cluster.teacher, lobby=False, title="Anglais 4e"))
    prof = await cluster.attend(first)
    host = cluster.node(prof.node)
    other = cluster.other(host)

    status, out, _ = await host.command("drain")
    assert status == 0 and '"draining"' in out
    # The other node sees it at its next renewal (a third of the lease).
    deadline = time.monotonic() + 10
    while await metric(other.metrics_url, 'classe_directory_nodes{state="draining"}') != 1.0:
        assert time.monotonic() < deadline, "the other node does not see the drain"
        await asyncio.sleep(0.2)
    # A new class opens on the other node, even asked through the draining one.
    async with Browser(host) as guest:
        answer = await guest.ok("POST", "/api/join", {"code": second, "name": "Tom"})
    assert answer["ws_url"] == other.ws_url
    # The live class goes on where it is: a new student joins it there and gets the teacher's video.
    leo = await cluster.attend(first, "Léo")
    assert leo.node == host.url
    await until(leo.sees_video())

    # Ready again: both nodes take classes.
    status, out, _ = await host.command("drain", "--undo")
    assert status == 0 and '"ready"' in out
    assert (await host.ready())[0] == 200
    clean(host.log())
    clean(other.log())
