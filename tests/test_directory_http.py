"""A node with a Redis class directory, through its HTTP API and WebSocket (a real server, a real
redis-server): a Redis outage gives clear errors and never a crash, and what anyone reaching the
port can make the directory hold, send or write into pages is bounded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from signaling.directory import ClassCommand
from signaling.directory.redis import RedisDirectory, node_key

from .conftest import RunningServer
from .peers import Peer
from .redis_server import RedisServer
from .test_access import new_class
from .test_console import admin
from .test_directory import SECRET, Classes, node_settings, until
from .web import Browser, code_of, teacher

LEASE = 1.0


@pytest.fixture
def settings_overrides(redis_server: RedisServer) -> dict[str, Any]:
    return {"redis_url": redis_server.url, "token_secret": SECRET, "node_id": "node-a", "node_lease_seconds": LEASE}


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json()


async def guest_join(classe: RunningServer, code: str, name: str = "Léa") -> tuple[int, Any]:
    async with Browser(classe) as guest:
        return await guest.call("POST", "/api/join", {"code": code, "name": name})


async def class_keys(redis: aioredis.Redis) -> list[str]:
    return [key async for key in redis.scan_iter("classe:class:*")]


async def test_without_redis_joins_get_a_clear_503_live_classes_go_on_and_readyz_says_why(
    classe: RunningServer, redis_server: RedisServer
) -> None:
    here = classe.url.replace("http://", "ws://") + "/ws"
    status, ready = await get(classe.url + "/readyz")
    assert status == 200
    assert ready == {
        "status": "ready",
        "node": "node-a",
        "checks": {"database": "ok", "directory": "ok", "state": "ready"},
    }
    async with await teacher(classe) as t, await admin(classe) as console:
        live, idle = await new_class(t, lobby=False, title="Maths"), await new_class(t, lobby=False, title="Histoire")
        answer = await t.ok("POST", "/api/join", {"code": code_of(live)})
        assert answer["ws_url"] == here
        prof = Peer(classe.url, "", "Mme Durand", role="teacher")
        status, early = await guest_join(classe, code_of(idle))  # a token for a class nobody opens yet
        assert status == 200
        try:
            await prof.join(answer["token"], ws_url=answer["ws_url"])
            redis_server.stop()

            # The class live here goes on: its participants can still (re)join through this node.
            status, body = await guest_join(classe, code_of(live))
            assert (status, body["ws_url"]) == (200, here)
            student = Peer(classe.url, "", "Léa")
            await student.join(body["token"], ws_url=body["ws_url"])
            await student.close()
            # Nobody can say where another class should open.
            status, body = await guest_join(classe, code_of(idle))
            assert status == 503 and body["error"] == "directory_unavailable" and body["message"]
            stray = Peer(classe.url, "", "Hugo")
            refused = await stray.join(early["token"], until="error", ws_url=early["ws_url"])
            assert (refused["code"], refused["fatal"]) == ("directory_unavailable", True)
            await stray.close()
            # Both refusals are counted (and logged) as such: one at POST /api/join, one at the WebSocket.
            assert classe.server.events.refusals["directory_unavailable"] == 2
            await asyncio.sleep(1.1)  # /readyz asks Redis at most once a second
            status, ready = await get(classe.url + "/readyz")
            assert status == 503 and ready["status"] == "not_ready"
            assert ready["checks"]["directory"].startswith("redis unreachable")
            assert ready["checks"]["database"] == "ok"
            # The dashboard answers, with what this node knows of live classes; changes are saved.
            classes = (await t.ok("GET", "/api/classes"))["classes"]
            assert {c["title"]: c["live"] for c in classes} == {"Maths": True, "Histoire": False}
            await t.ok("PUT", f"/api/classes/{idle['id']}", {"title": "Histoire", "access": "link", "lobby": True})
            async with aiohttp.ClientSession() as http, http.get(classe.metrics_url) as response:
                assert response.status == 200
            # The console counts this node's classes, and says that it cannot see the others'.
            seen = await console.ok("GET", "/api/admin/classes")
            assert seen["directory"] == "unavailable" and [c["title"] for c in seen["classes"]] == ["Maths"]

            redis_server.start()
            await until(lambda: _joins(classe, code_of(idle)), timeout=10)
            await until(lambda: _ready(classe), timeout=10)
        finally:
            await prof.close()


async def _joins(classe: RunningServer, code: str) -> bool:
    return (await guest_join(classe, code))[0] == 200


async def _ready(classe: RunningServer) -> bool:
    return (await get(classe.url + "/readyz"))[0] == 200


async def test_joins_for_many_classes_hold_one_short_placement_each(
    classe: RunningServer, redis: aioredis.Redis
) -> None:
    """Anyone with class links can ask POST /api/join as often as they like: each class is placed
    once (the same answer after), and a placement nobody reaches is gone after one lease. Unknown
    links and forged tokens place nothing."""
    async with await teacher(classe) as t:
        codes = [code_of(await new_class(t, title=f"Classe {i}")) for i in range(20)]
        answers = await asyncio.gather(*(guest_join(classe, code, f"Élève {n}") for code in codes for n in range(5)))
        assert {status for status, _ in answers} == {200}
        assert len(await class_keys(redis)) == 20
        assert await redis.hlen(node_key("node-a") + ":classes") == 20

        for forged in ("x" * 43, "../../etc", "classe:nodes"):
            status, _ = await guest_join(classe, forged)
            assert status in (400, 404)
        liar = Peer(classe.url, "", "Hugo")
        refused = await liar.join("v1.forged.token", until="error")
        assert refused["code"] == "invalid_token"
        await liar.close()
        assert len(await class_keys(redis)) == 20

        started = time.monotonic()
        await until(lambda: _no_class_keys(redis), timeout=LEASE * 5)
        assert time.monotonic() - started < LEASE * 5
        await until(lambda: _hash_empty(redis), timeout=LEASE * 5)
        # The node set and this node's description; besides, only rate-limit buckets (the teacher's
        # sign-up mail, the unknown links: signaling/budgets.py), counted for all nodes.
        left = {key async for key in redis.scan_iter("*")}
        assert {key for key in left if not key.startswith("classe:budget:")} == {"classe:nodes", node_key("node-a")}


async def _no_class_keys(redis: aioredis.Redis) -> bool:
    return not await class_keys(redis)


async def _hash_empty(redis: aioredis.Redis) -> bool:
    return not await redis.exists(node_key("node-a") + ":classes")


async def test_a_node_description_in_redis_never_writes_into_the_pages_policy(
    classe: RunningServer, redis: aioredis.Redis
) -> None:
    """The pages' connect-src names each node's origin: a description with a long or hostile URL is
    left out, and the header stays short."""
    hostile = {
        "long": "http://" + "a" * 5000 + ".test",
        "csp": "http://x.test; script-src https://evil.test",
        "quote": "http://x.test'",
    }
    for node_id, url in hostile.items():
        description = {"id": node_id, "url": url, "state": "ready", "cpu": 0, "participants": 0}
        await redis.set(node_key(node_id), json.dumps({**description, "packets_per_second": 0, "classes": 0}))
        await redis.sadd("classe:nodes", node_id)
    await classe.server.directory.renew()
    async with aiohttp.ClientSession() as http, http.get(classe.url + "/") as response:
        policy = response.headers["Content-Security-Policy"]
    connect = next(d for d in policy.split("; ") if d.startswith("connect-src"))
    assert connect == f"connect-src 'self' {classe.url.replace('http://', 'ws://')}"
    assert len(policy) < 500
    assert classe.server.directory.malformed_nodes == 3


async def test_dashboard_changes_send_one_command_each_to_the_hosting_node(
    classe: RunningServer, redis_server: RedisServer, tmp_path: Any
) -> None:
    """A teacher's changes to a class live on another node each send it one short command, in order:
    no more than the requests she makes, each of which the API already checks and charges."""
    elsewhere = Classes()
    node_b = RedisDirectory(node_settings(redis_server.url, "node-b", tmp_path, LEASE), elsewhere)
    await node_b.start()
    try:
        async with await teacher(classe) as t:
            classroom = await new_class(t, lobby=False, title="Maths")
            elsewhere.live[classroom["id"]] = 12
            assert (await node_b.hold(classroom["id"])).here
            await asyncio.sleep(0.5)  # node-b subscribed
            for i in range(20):
                update = {"title": "Maths", "access": "link", "lobby": i % 2 == 0}
                await t.ok("PUT", f"/api/classes/{classroom['id']}", update)
            await until(lambda: len(elsewhere.commands) == 20)
            expected = [ClassCommand.LOBBY_ON if i % 2 == 0 else ClassCommand.LOBBY_OFF for i in range(20)]
            assert [command for _, command in elsewhere.commands] == expected
            await t.ok("DELETE", f"/api/classes/{classroom['id']}")
            await until(lambda: elsewhere.commands[-1] == (classroom["id"], ClassCommand.END))
            await asyncio.sleep(0.3)
            assert len(elsewhere.commands) == 21
    finally:
        await node_b.stop()
        await node_b.close()
