"""What a live class's teachers decided, and the HTTP API's rate limits, shared by the nodes through
a real Redis: a class that moves to another node keeps its removals, admissions, locks and holds;
a guesser's budget is one for all the nodes its requests reach."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from signaling.classroom import ClassSession
from signaling.directory.sessions import RedisSessions, session_key

from .conftest import Mailbox, RunningServer, running_server
from .peers import Peer
from .redis_server import RedisServer
from .test_access import new_class
from .web import Browser, code_of, teacher

SECRET = "a-token-secret-shared-by-the-nodes-of-the-test"


@asynccontextmanager
async def nodes(
    folder: Path, mailbox: Mailbox, database_url: str, redis: RedisServer, *names: str, **settings: Any
) -> AsyncIterator[list[RunningServer]]:
    """Nodes in this process sharing the database and Redis (tests/test_nodes.py runs processes)."""
    async with AsyncExitStack() as stack:
        running = []
        for name in names:
            overrides = {"redis_url": redis.url, "token_secret": SECRET, "node_id": name, "node_lease_seconds": 3}
            overrides.update(settings)
            (folder / name).mkdir()
            node = running_server(folder / name, mailbox, database_url, overrides)
            running.append(await stack.enter_async_context(node))
        yield running


def on(browser: Browser, node: RunningServer) -> Browser:
    """The same browser (its cookies: its identity) asking another node."""
    browser.classe = node
    return browser


def test_a_snapshot_gives_back_the_class_and_nothing_malformed_passes() -> None:
    session = ClassSession("c1", lobby=True, lesson=True, locked=True, lobby_locked=True)
    session.locks = {"screen", "chat"}
    session.banned, session.refused, session.admitted = {"idn-1"}, {"idn-2"}, {"p-3"}
    session.held = {"p-3": {"microphone"}, "p-4": set()}
    session.screen_allowed = {"p-3"}
    restored = ClassSession.restore("c1", session.snapshot())
    assert restored.snapshot() == session.snapshot()
    assert restored.held == {"p-3": {"microphone"}} and not restored.chat
    saved = session.snapshot()
    for bad in (None, [], {"lesson": "yes"}, {**saved, "banned": "idn-1"}, {**saved, "held": []}):
        with pytest.raises(ValueError):
            ClassSession.restore("c1", bad)
    # Only known sources pass from a snapshot into the locks and holds.
    odd = ClassSession.restore("c1", {**session.snapshot(), "locks": ["chat", "rocket"], "held": {"p": ["rocket"]}})
    assert odd.locks == {"chat"} and odd.held == {"p": set()}


async def test_a_class_that_moves_keeps_its_removals_admissions_and_locks(
    tmp_path: Path, mailbox: Mailbox, database_url: str, redis_server: RedisServer
) -> None:
    async with nodes(tmp_path, mailbox, database_url, redis_server, "node-a", "node-b") as (a, b):
        async with await teacher(a) as t, Browser(a) as ines, Browser(a) as leo:
            classroom = await new_class(t, lobby=True, title="Physique 3e")
            code, class_id = code_of(classroom), classroom["id"]
            prof = Peer(a.url, "", "Prof")
            pupil, intruder = Peer(a.url, "", "Inès"), Peer(a.url, "", "Léo")
            try:
                await prof.join(await t.join_token(code))  # placed on node-a (both idle: by name)
                assert class_id in a.server.rooms
                await pupil.join(await ines.join_token(code, "Inès"), until="waiting")
                await intruder.join(await leo.join_token(code, "Léo"), until="waiting")
                await prof.send({"type": "moderate", "action": "admit", "all": True})
                await pupil.admitted()
                await intruder.admitted()
                await prof.send({"type": "moderate", "action": "remove", "participant_id": intruder.id})
                assert (await intruder.expect("error"))["code"] == "removed"
                await prof.send({"type": "moderate", "action": "lock", "locks": {"chat": True}})
                await prof.send({"type": "moderate", "action": "mute", "participant_id": pupil.id})
                await pupil.expect("moderated")
                # node-a leaves (as when it stops): its decisions are written first.
                await a.server.directory.stop()
                saved = await aioredis.from_url(redis_server.url).get(session_key(class_id))
                assert saved is not None and b"Prof" not in saved and b"In\\u00e8s" not in saved
            finally:
                for peer in (prof, pupil, intruder):
                    await peer.close()
            # Everyone asks again: the class opens on node-b as node-a left it.
            prof, pupil, intruder = Peer(b.url, "", "Prof"), Peer(b.url, "", "Inès"), Peer(b.url, "", "Léo")
            try:
                grant = await on(t, b).ok("POST", "/api/join", {"code": code})
                assert grant["ws_url"] == f"ws://127.0.0.1:{b.settings.port}/ws", grant
                await prof.join(grant["token"])
                assert class_id in b.server.rooms
                joined = await pupil.join(await on(ines, b).join_token(code, "Inès"))  # not back to the lobby
                assert joined["state"]["locks"]["chat"] is True
                assert joined["participant"]["held"] == ["microphone"]
                refused = await intruder.join(await on(leo, b).join_token(code, "Léo"), until="error")
                assert refused["code"] == "removed"
            finally:
                for peer in (prof, pupil, intruder):
                    await peer.close()


async def test_an_ended_class_forgets_its_decisions_everywhere(
    tmp_path: Path, mailbox: Mailbox, database_url: str, redis_server: RedisServer
) -> None:
    async with nodes(tmp_path, mailbox, database_url, redis_server, "node-a") as (a,):
        async with await teacher(a) as t, Browser(a) as leo:
            classroom = await new_class(t, lobby=False)
            code, class_id = code_of(classroom), classroom["id"]
            prof, intruder = Peer(a.url, "", "Prof"), Peer(a.url, "", "Léo")
            try:
                await prof.join(await t.join_token(code))
                await intruder.join(await leo.join_token(code, "Léo"))
                await prof.send({"type": "moderate", "action": "remove", "participant_id": intruder.id})
                await intruder.expect("error")
                client = aioredis.from_url(redis_server.url)
                assert await until_true(lambda: client.exists(session_key(class_id)))
                await prof.send({"type": "moderate", "action": "end"})
                await prof.expect("error")
                assert await until_true(lambda: _absent(client, session_key(class_id)))
            finally:
                await prof.close()
                await intruder.close()


async def test_a_lesson_ended_by_the_teachers_absence_is_ended_for_the_next_node(
    tmp_path: Path, mailbox: Mailbox, database_url: str, redis_server: RedisServer
) -> None:
    """No message ends it (a timer does): the snapshot is written when the class empties."""
    async with nodes(tmp_path, mailbox, database_url, redis_server, "node-a", teacher_absence_seconds=0.5) as (a,):
        async with await teacher(a) as t, Browser(a) as ines:
            classroom = await new_class(t, lobby=False)
            code, class_id = code_of(classroom), classroom["id"]
            prof, pupil = Peer(a.url, "", "Prof"), Peer(a.url, "", "Inès")
            client = aioredis.from_url(redis_server.url)
            try:
                await prof.join(await t.join_token(code))
                await pupil.join(await ines.join_token(code, "Inès"))
                await prof.send({"type": "moderate", "action": "lock", "locks": {"chat": True}})
                assert await until_true(lambda: _lesson_is(client, class_id, True))
                await prof.close()
                assert (await pupil.expect("error"))["code"] == "no_teacher"
                assert await until_true(lambda: _lesson_is(client, class_id, False))
                saved = json.loads(await client.get(session_key(class_id)))
                assert saved == a.server.sessions[class_id].snapshot()  # as this node has it
                assert "chat" not in saved["locks"]  # the lesson's locks ended with it
            finally:
                await prof.close()
                await pupil.close()
                await client.aclose()


async def _lesson_is(client: aioredis.Redis, class_id: str, lesson: bool) -> bool:
    saved = await client.get(session_key(class_id))
    return saved is not None and json.loads(saved)["lesson"] is lesson


async def _absent(client: aioredis.Redis, key: str) -> bool:
    return not await client.exists(key)


async def until_true(check: Any, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_decisions_taken_while_redis_is_away_are_written_when_it_is_back(
    redis_server: RedisServer,
) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True, socket_timeout=1.0)
    store = RedisSessions(client, lambda: {"c1": 3}, ttl=3600)
    store.start()
    try:
        redis_server.stop()
        session = ClassSession("c1", lesson=True, banned={"idn-1"})
        store.remember("c1", session.snapshot())  # never raises, never waits
        await asyncio.sleep(0.3)
        assert await store.recall("c1") == session.snapshot()  # this node's own word, not yet written
        redis_server.start()
        assert await until_true(lambda: client.exists(session_key("c1")), timeout=10)
        other = RedisSessions(client, dict, ttl=3600)
        assert ClassSession.restore("c1", await other.recall("c1")).banned == {"idn-1"}
        # A malformed snapshot (not written by a node) is dropped, the class starts afresh.
        await client.set(session_key("c2"), "{not json")
        assert await other.recall("c2") is None
    finally:
        await store.stop()
        await client.aclose()


async def test_a_guessers_budget_is_one_for_all_the_nodes(
    tmp_path: Path, mailbox: Mailbox, database_url: str, redis_server: RedisServer
) -> None:
    async with nodes(tmp_path, mailbox, database_url, redis_server, "node-a", "node-b") as (a, b):
        async with Browser(a) as guesser:
            # 20 unknown links per 10 minutes and per address: ten on each node, then none on either.
            for i in range(20):
                status, _ = await on(guesser, (a, b)[i % 2]).call("GET", f"/api/join/unknown{i}")
                assert status == 404
            for node in (a, b):
                status, answer = await on(guesser, node).call("GET", "/api/join/unknown-again")
                assert status == 429 and answer["error"] == "rate_limited"
            keys = [key async for key in aioredis.from_url(redis_server.url).scan_iter("classe:budget:*")]
            assert keys and not any(b"127.0.0.1" in key for key in keys)  # no address in clear
            # Redis away: each node counts on its own, the limit is not lifted.
            redis_server.stop()
            refused = 0
            for i in range(25):
                status, _ = await on(guesser, a).call("GET", f"/api/join/lost{i}")
                refused += status == 429
            assert refused >= 5
            assert a.services.limits.class_links.shared is not None
            assert a.services.limits.class_links.shared.failures > 0
