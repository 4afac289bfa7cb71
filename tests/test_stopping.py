"""Graceful stop and drain of one node (no Redis), on a real server process with real aiortc peers:
SIGTERM tells every participant to rejoin, refuses new joins, exits 0 once they have left (or
after the grace period), and the restarted server takes them back; `classe drain` keeps the live
classes and refuses new ones."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from signaling.classroom import ClassSession
from signaling.config import Settings
from signaling.directory import NodeState
from signaling.server import ClassServer
from signaling.stopping import FIRST_REJOIN_MS, rejoin_delays

from .peers import Peer
from .process import ClasseProcess
from .rejoining import Attendee, Entrance, clean, metric, until
from .test_access import new_class
from .web import PASSWORD, Browser, code_of


class Lesson:
    """A server process with a teacher account and a link class without lobby, opened by the
    teacher (publishing camera and microphone); the participants rejoin as the browser client does."""

    def __init__(self, node: ClasseProcess, teacher: Browser, code: str) -> None:
        self.node = node
        self.entrance = Entrance(node.url)
        self.teacher = teacher
        self.code = code
        self.attendees: list[Attendee] = []
        self.peers: list[Peer] = []  # participants who do not rejoin by themselves

    async def attend(self, name: str | None = None) -> Attendee:
        """The teacher (no name, publishing) or a student, through POST /api/join and the WebSocket."""
        browser = self.teacher if name is None else Browser(self.entrance)
        attendee = Attendee(self.entrance, browser, self.code, name, publish=name is None)
        self.attendees.append(attendee)
        await attendee.join()
        return attendee

    async def stay(self, name: str, token: str | None = None) -> Peer:
        """A student who ignores `server_stopping` (an old page, a stalled one)."""
        peer = Peer(self.node.url, "", name)
        self.peers.append(peer)
        await peer.join(token or await self.token(name))
        return peer

    async def token(self, name: str, code: str | None = None) -> str:
        async with Browser(self.node) as guest:
            return await guest.join_token(code or self.code, name)

    async def close(self) -> None:
        for attendee in self.attendees:
            await attendee.close()
        for peer in self.peers:
            await peer.close()


@pytest.fixture
async def lesson_on(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Lesson]]]:
    """Starts a server with the given settings and opens a lesson on it; stops what it started."""
    started: list[tuple[ClasseProcess, Lesson]] = []

    async def start(**settings: Any) -> Lesson:
        node = ClasseProcess(tmp_path, **settings)
        await node.create_teacher()
        await node.start()
        teacher = Browser(node)
        await teacher.sign_in("prof@ac-lyon.fr", PASSWORD)
        classroom = await new_class(teacher, lobby=False, title="Sciences 5e")
        lesson = Lesson(node, teacher, code_of(classroom))
        started.append((node, lesson))
        await lesson.attend()
        return lesson

    yield start
    for node, lesson in started:
        await lesson.close()
        await lesson.teacher.http.close()
        await node.kill()


async def post_join(url: str, code: str, name: str) -> tuple[int, dict[str, Any], str | None]:
    """POST /api/join as a new browser: status, answer and Retry-After."""
    async with Browser(Entrance(url)) as browser:
        _, session = await browser.call("GET", "/api/session")
        headers = {"X-CSRF-Token": session["csrf"]}
        async with browser.http.post(url + "/api/join", json={"code": code, "name": name}, headers=headers) as response:
            return response.status, await response.json(), response.headers.get("Retry-After")


async def test_sigterm_tells_everyone_refuses_joins_and_the_restarted_server_takes_them_back(
    lesson_on: Callable[..., Awaitable[Lesson]],
) -> None:
    lesson = await lesson_on(stop_grace_seconds=30)
    node = lesson.node
    students = [await lesson.attend("Léo"), await lesson.attend("Inès")]
    for student in students:
        await until(student.sees_video(), what="video before the stop")
    first_peers = [student.peer for student in students]
    late_token = await lesson.token("Tom")  # minted before the stop, used after it
    zoe = await lesson.stay("Zoé")  # keeps the server up while the refusals are checked

    signalled = time.monotonic()
    node.signal(signal.SIGTERM)
    await until(lambda: all(a.told for a in lesson.attendees), timeout=5, what="everyone told")
    assert all(told[0][1] - signalled < 1.0 for told in (a.told for a in lesson.attendees))
    delays = {a.name: a.told[0][0]["reconnect_in_ms"] for a in lesson.attendees}
    # The teacher first, to open the class again before the students arrive; all within the grace.
    assert delays[None] == FIRST_REJOIN_MS < min(delays["Léo"], delays["Inès"]) <= max(delays.values()) < 30_000

    # Nobody gets in, neither through the HTTP API nor the WebSocket; the node says it stops.
    status, answer, retry_after = await post_join(node.url, lesson.code, "Tom")
    assert (status, answer["error"], retry_after) == (503, "server_stopping", "5")
    late = Peer(node.url, "", "Tom")
    lesson.peers.append(late)
    refused = await late.join(late_token, until="error")
    assert (refused["code"], refused["fatal"]) == ("server_stopping", True)
    status, ready = await node.ready()
    assert (status, ready["checks"]["state"]) == (503, "stopping")
    assert await metric(node.metrics_url, "classe_node_stopping") == 1.0
    assert await metric(node.metrics_url, "classe_node_draining") == 1.0

    # The last one left: the server exits at once, long before the grace period.
    await zoe.close()
    assert await node.exited(timeout=15) == 0
    assert time.monotonic() - signalled < 15

    # Restarted, it takes everyone back: they rejoin by themselves and the video flows again.
    restarting = time.monotonic()
    await node.start()
    for student, before in zip(students, first_peers, strict=True):
        await until(student.sees_video(), timeout=40, what=f"{student.name}'s video after the restart")
        assert student.peer is not before
    assert all(len(a.joins) == 2 for a in lesson.attendees)
    print(f"back in {time.monotonic() - restarting:.1f} s after the restart began")
    # The teacher was moving, not leaving: no student was told she was away.
    assert not any(e["type"] == "teacher_away" for p in first_peers if p for e in p.events)
    clean(node.logs_text())


async def test_those_who_stay_are_closed_after_the_grace_period(lesson_on: Callable[..., Awaitable[Lesson]]) -> None:
    lesson = await lesson_on(stop_grace_seconds=2)
    node = lesson.node
    leo = await lesson.stay("Léo")
    await until(lambda: len(leo.video()) == 1 and len(leo.video()[0].numbers) > 5)
    signalled = time.monotonic()
    node.signal(signal.SIGTERM)
    told = await leo.expect("server_stopping", timeout=5)
    assert told["reconnect_in_ms"] <= 2000
    # Léo does not leave: after the grace period he is told the server stops, and closed.
    assert await node.exited(timeout=15) == 0
    assert 2 <= time.monotonic() - signalled < 2 + 3 + 3  # the grace, the connections' closing, margin
    await until(lambda: any(e["type"] == "error" for e in leo.events), timeout=5)
    goodbye = next(e for e in leo.events if e["type"] == "error")
    assert (goodbye["code"], goodbye["fatal"]) == ("server_stopping", True)
    clean(node.log())


async def test_a_second_signal_cuts_the_wait_even_with_a_pupil_in_the_lobby(
    lesson_on: Callable[..., Awaitable[Lesson]],
) -> None:
    lesson = await lesson_on(stop_grace_seconds=120)
    node = lesson.node
    classroom = await new_class(lesson.teacher, lobby=True, title="Histoire 3e")
    lesson.code = code_of(classroom)
    await lesson.attend()  # opens the class with a lobby
    waiting = Peer(node.url, "", "Léo")
    lesson.peers.append(waiting)
    await waiting.join(await lesson.token("Léo"), until="waiting")

    node.signal(signal.SIGTERM)
    told = await waiting.expect("server_stopping", timeout=5)  # those in the lobby are told too
    assert told["reconnect_in_ms"] > FIRST_REJOIN_MS
    await asyncio.sleep(0.5)
    signalled = time.monotonic()
    node.signal(signal.SIGINT)
    assert await node.exited(timeout=15) == 0
    assert time.monotonic() - signalled < 6
    clean(node.log())


async def test_a_draining_node_keeps_its_live_class_and_refuses_new_ones(
    lesson_on: Callable[..., Awaitable[Lesson]],
) -> None:
    lesson = await lesson_on()
    node = lesson.node
    leo = await lesson.attend("Léo")
    other = code_of(await new_class(lesson.teacher, lobby=False, title="Histoire 3e"))
    socket = node.folder / "data" / "admin.sock"
    assert stat.S_IMODE(os.stat(socket).st_mode) == 0o600  # the server's user only

    tom_token = await lesson.token("Tom", other)  # minted before the drain, used after it
    status, out, _ = await node.command("drain")
    assert status == 0
    state = json.loads(out)
    assert {k: state[k] for k in ("state", "classes", "participants")} == {
        "state": "draining",
        "classes": 1,
        "participants": 2,
    }
    status, ready = await node.ready()
    assert (status, ready["checks"]["state"]) == (503, "draining")
    assert await metric(node.metrics_url, "classe_node_draining") == 1.0

    # The live class goes on: a new student still joins it, and receives the teacher's video.
    ines = await lesson.attend("Inès")
    await until(ines.sees_video())
    # A class that is not live here does not open: refused before the WebSocket, and at it.
    status, answer, retry_after = await post_join(node.url, other, "Tom")
    assert (status, answer["error"], retry_after) == (503, "server_draining", "5")
    assert (await lesson.teacher.call("POST", "/api/join", {"code": other}))[0] == 503
    tom = Peer(node.url, "", "Tom")
    lesson.peers.append(tom)
    refused = await tom.join(tom_token, until="error")
    assert (refused["code"], refused["fatal"]) == ("server_draining", True)

    # Ready again; then draining, and waiting for the last class to end.
    status, out, _ = await node.command("drain", "--undo")
    assert (status, json.loads(out)["state"]) == (0, "ready")
    assert (await node.ready())[0] == 200
    assert (await post_join(node.url, other, "Tom"))[0] == 200
    assert (await node.command("drain"))[0] == 0
    waiting = asyncio.create_task(node.command("drain", "--wait"))
    await asyncio.sleep(1.5)
    assert not waiting.done()  # the class is still live
    for attendee in (lesson.attendees[0], leo, ines):
        await attendee.close()
    status, out, _ = await asyncio.wait_for(waiting, 15)
    assert status == 0
    assert json.loads(out.splitlines()[-1])["classes"] == 0

    # Stopped, the socket is gone: the command says no server answers.
    node.signal(signal.SIGTERM)
    assert await node.exited(timeout=15) == 0
    assert not socket.exists()
    status, _, err = await node.command("drain")
    assert status == 1 and "no Classe server answers" in err
    clean(node.log())


async def test_the_operator_socket_refuses_other_users(tmp_path: Path) -> None:
    """Even in a folder anyone may enter, another user cannot connect to the operator's socket."""
    shared = Path(tempfile.mkdtemp(prefix="classe-run-", dir="/tmp"))  # /tmp/pytest-of-root is 0700
    shared.chmod(0o755)  # so that only the socket's own permissions stand in the way
    path = shared / "classe.sock"
    node = ClasseProcess(tmp_path / "node", admin_socket=str(path))
    await node.start()
    connect = ["/usr/bin/python3", "-c", f"import socket; socket.socket(socket.AF_UNIX).connect({str(path)!r})"]
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    try:
        mode = os.stat(path)
        assert (stat.S_IMODE(mode.st_mode), mode.st_uid) == (0o600, os.getuid())
        other = subprocess.run([*as_nobody, *connect], capture_output=True, text=True, timeout=30)
        assert other.returncode != 0 and "PermissionError" in other.stderr, other.stderr
        mine = subprocess.run(connect, capture_output=True, text=True, timeout=30)
        assert mine.returncode == 0, mine.stderr  # the server's own user (here root) gets in
        path.chmod(0o666)  # the control: with the socket open to all, the same user does get in
        assert subprocess.run([*as_nobody, *connect], capture_output=True, timeout=30).returncode == 0
    finally:
        await node.kill()
        shutil.rmtree(shared)


def test_rejoin_delays_put_teachers_first_and_stay_within_the_grace() -> None:
    rng = random.Random(1)
    delays = rejoin_delays(2, 30, 10, rng)
    assert delays[:2] == [FIRST_REJOIN_MS, FIRST_REJOIN_MS]
    assert all(FIRST_REJOIN_MS < d <= FIRST_REJOIN_MS + 500 + 640 for d in delays[2:])
    crowd = rejoin_delays(0, 5000, 10, rng)
    assert max(crowd) <= 250 + 500 + 5000 and max(crowd) - min(crowd) > 4000  # spread over half the grace
    assert max(rejoin_delays(1, 10, 0.5, rng)) <= 250  # a short grace shortens every delay
    assert rejoin_delays(1, 1, 0, rng) == [0, 0]


@pytest.mark.parametrize(
    ("state", "stopping", "hosted", "refusal"),
    [
        (NodeState.READY, False, False, None),
        (NodeState.DRAINING, False, True, None),
        (NodeState.DRAINING, False, False, "server_draining"),
        (NodeState.DRAINING, True, True, "server_stopping"),
        (NodeState.READY, True, False, "server_stopping"),
    ],
)
async def test_which_joins_a_node_refuses(
    tmp_path: Path, state: NodeState, stopping: bool, hosted: bool, refusal: str | None
) -> None:
    server = ClassServer(Settings(data_dir=tmp_path))
    await server.directory.set_state(state)
    server.stopping = stopping
    if hosted:  # a class this node keeps (live, or emptied a moment ago)
        server.sessions["maths"] = ClassSession("maths")
    assert server.refusal("maths") == refusal
