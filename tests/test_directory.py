"""The class directory of several nodes (signaling/directory/redis.py) against a real redis-server:
placement, leases, commands between nodes, and what it does with malformed entries or without Redis.

Each directory here stands for a node; its live classes are a table the test sets (the node's side
of `directory.Host`), and its CPU a number the test sets, so that placement can be checked exactly.
The nodes as whole processes are in tests/test_nodes.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from sfu.core import MediaStats
from signaling.config import Settings
from signaling.directory import ClassCommand, DirectoryUnavailable, NodeLoad, NodeState, NoReadyNode
from signaling.directory.base import LoadSampler
from signaling.directory.redis import RedisDirectory, class_key, commands_channel, node_key
from signaling.metrics import make_registry

from .redis_server import RedisServer

SECRET = "a-secret-shared-by-every-node-of-the-tests"


class Classes:
    """A node's live classes as the directory sees them: participants per class, and what the
    directory asked of them."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.lost: list[str] = []
        self.commands: list[tuple[str, ClassCommand]] = []
        self.expelled: list[tuple[str, str | None]] = []

    def hosted(self) -> dict[str, int]:
        return dict(self.live)

    def forwarded_packets(self) -> int:
        return 0

    async def lose(self, class_id: str) -> None:
        self.lost.append(class_id)
        self.live.pop(class_id, None)

    async def obey(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        if command is ClassCommand.EXPEL:
            self.expelled.append((class_id, identity))
            return
        self.commands.append((class_id, command))


class SetLoad(LoadSampler):
    """The node's CPU as the test sets it (the test process's own would be shared by every node)."""

    cpu = 0.0

    def sample(self) -> NodeLoad:
        return NodeLoad(participants=sum(self.host.hosted().values()), cpu=self.cpu)


class Node:
    def __init__(self, directory: RedisDirectory, classes: Classes, load: SetLoad) -> None:
        self.directory = directory
        self.classes = classes
        self.load = load
        self.stopped = False

    async def stop(self) -> None:
        await self.directory.stop()
        self.stopped = True

    @property
    def id(self) -> str:
        return self.directory.node_id

    async def halt(self) -> None:
        """The process dies: nothing renewed, nothing released."""
        for task in self.directory._tasks:
            task.cancel()
        await asyncio.gather(*self.directory._tasks, return_exceptions=True)
        self.directory._tasks = []


def node_settings(redis_url: str, node_id: str, tmp_path: Path, lease: float = 1.0) -> Settings:
    return Settings(
        redis_url=redis_url,
        token_secret=SECRET,
        node_id=node_id,
        node_url=f"http://{node_id}.classe.test:8080",
        node_lease_seconds=lease,
        data_dir=tmp_path,
    )


@pytest.fixture
async def nodes(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    started: list[Node] = []

    async def start(node_id: str, lease: float = 30.0, **live: int) -> Node:
        classes = Classes()
        classes.live.update(live)
        directory = RedisDirectory(node_settings(redis_server.url, node_id, tmp_path, lease), classes)
        load = SetLoad(classes)
        directory.sampler = load
        await directory.start()
        node = Node(directory, classes, load)
        started.append(node)
        return node

    yield start
    for node in started:
        if not node.stopped:
            await node.directory.stop()
        await node.directory.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        assert time.monotonic() < deadline, "still not true"
        await asyncio.sleep(0.05)


# Settings


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "redis_url needs token_secret set explicitly"),
        ({"redis_url": "redis://r", "token_secret": SECRET, "host": "0.0.0.0"}, "needs node_url"),
        ({"redis_url": "redis://r", "token_secret": SECRET, "host": "::"}, "needs node_url"),
        ({"node_url": "javascript:alert(1)"}, "node_url"),
        ({"node_url": "https://n1.example.org/?a=1"}, "node_url"),
        ({"node_url": "https://n1.example.org; script-src *"}, "node_url"),
        ({"node_url": "https://" + "a" * 200 + ".example.org"}, "at most 200 characters"),
        ({"node_id": "n1:evil"}, "node_id"),
        ({"node_id": "-n1"}, "node_id"),
        ({"node_lease_seconds": 0.1}, "node_lease_seconds"),
        (
            {"redis_url": "redis://r", "token_secret": SECRET, "host": "0.0.0.0", "node_url": "https://n1.example.org"},
            None,
        ),
        ({"redis_url": "redis://r", "token_secret": SECRET}, None),
        ({}, None),
    ],
)
def test_settings_of_several_nodes(
    fields: dict[str, Any], error: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLASSE_CONFIG_FILE", raising=False)
    if error is None:
        settings = Settings(data_dir=tmp_path, **fields)
        assert settings.node_address.startswith("http")
        return
    with pytest.raises(ValidationError, match=error):
        Settings(data_dir=tmp_path, **fields)


def test_the_token_secret_counts_as_set_from_the_environment_or_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever way the operator sets it; generated (different on each node) it does not count."""
    monkeypatch.delenv("CLASSE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("CLASSE_REDIS_URL", "redis://127.0.0.1:6379/0")
    with pytest.raises(ValidationError, match="token_secret"):
        Settings(data_dir=tmp_path)
    monkeypatch.setenv("CLASSE_TOKEN_SECRET", SECRET)
    assert Settings(data_dir=tmp_path).token_secret == SECRET
    monkeypatch.delenv("CLASSE_TOKEN_SECRET")
    config = tmp_path / "classe.toml"
    config.write_text(f'token_secret = "{SECRET}"\nnode_url = "https://n1.example.org/node/n1/"\n')
    settings = Settings(data_dir=tmp_path, config_file=config)
    assert settings.token_secret == SECRET
    assert settings.node_address == "https://n1.example.org/node/n1"


# Placement


async def test_a_class_that_opens_goes_to_the_least_loaded_ready_node(nodes: Any) -> None:
    """A node's load is the greater of its participants and 30 per class it hosts or was just
    given; a node whose CPU is busy gets a class only when every ready node is."""
    a = await nodes("node-a", maths=40)
    b = await nodes("node-b", french=3)
    c = await nodes("node-c")
    c.load.cpu = 0.95
    for node in (a, b, c):
        await node.directory.renew()
    placed = await c.directory.place("history")
    assert (placed.node_id, placed.here, placed.ws_url) == ("node-b", False, "ws://node-b.classe.test:8080/ws")
    # node-b now has two classes (60), one about to open: node-a's 40 participants are less.
    assert (await a.directory.place("science")).node_id == "node-a"
    # The same class again: the same node, without a second reservation.
    assert (await b.directory.place("history")).node_id == "node-b"
    c.load.cpu = 0.1
    await c.directory.renew()
    assert (await a.directory.place("music")).node_id == "node-c"
    a.load.cpu = b.load.cpu = c.load.cpu = 0.9  # all busy: the least loaded again
    for node in (a, b, c):
        await node.directory.renew()
    assert (await a.directory.place("art")).node_id == "node-c"


async def test_classes_opening_together_spread_over_the_nodes(nodes: Any) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    await asyncio.gather(a.directory.renew(), b.directory.renew())
    placed = await asyncio.gather(*(a.directory.place(f"class-{i}") for i in range(8)))
    assert sorted(p.node_id for p in placed) == ["node-a"] * 4 + ["node-b"] * 4


async def test_a_draining_node_keeps_its_classes_and_takes_no_new_one(nodes: Any) -> None:
    a = await nodes("node-a", maths=2)
    b = await nodes("node-b", french=25)
    await a.directory.hold("maths")
    await a.directory.set_state(NodeState.DRAINING)
    assert (await b.directory.place("maths")).node_id == "node-a"
    assert (await b.directory.place("history")).node_id == "node-b"
    await b.directory.set_state(NodeState.DRAINING)
    with pytest.raises(NoReadyNode):
        await a.directory.place("science")
    assert (await b.directory.place("maths")).node_id == "node-a"
    assert {n.id: n.state for n in b.directory.nodes()} == {"node-a": NodeState.DRAINING, "node-b": NodeState.DRAINING}


async def test_nodes_placing_one_class_at_once_get_one_answer(nodes: Any) -> None:
    started = [await nodes(f"node-{i}") for i in range(3)]
    for round_ in range(5):
        class_id = f"class-{round_}"
        asked = [node.directory.place(class_id) for node in started for _ in range(10)]
        asked += [node.directory.hold(class_id) for node in started]
        answers = await asyncio.gather(*asked)
        assert len({p.node_id for p in answers}) == 1
        assert sum(p.here for p in answers[-3:]) == 1  # of the three nodes asked to hold it, one does


# Leases


async def test_a_node_that_dies_frees_its_classes_when_its_lease_expires(nodes: Any, redis: aioredis.Redis) -> None:
    a = await nodes("node-a", lease=1.0, maths=12)
    b = await nodes("node-b", lease=1.0, french=3)
    assert (await a.directory.hold("maths")).here
    await a.directory.renew()
    assert await b.directory.participants(["maths", "french", "unknown"]) == {"maths": 12, "french": 3}
    await a.halt()
    dead_at = time.monotonic()
    # Until its lease runs out, the class is still node-a's: joins go there, and fail, and retry.
    assert (await b.directory.place("maths")).node_id == "node-a"
    assert not (await b.directory.hold("maths")).here
    await until(lambda: _placed_on(b, "maths", "node-b"), timeout=5)
    assert time.monotonic() - dead_at > 0.5
    assert await redis.get(class_key("maths")) == "node-b"
    assert await b.directory.participants(["maths"]) == {}  # placed; nobody has arrived yet
    await until(lambda: {n.id for n in b.directory.nodes()} == {"node-b"}, timeout=5)
    assert not await redis.sismember("classe:nodes", "node-a")


async def _placed_on(node: Node, class_id: str, expected: str) -> bool:
    return (await node.directory.place(class_id)).node_id == expected


async def test_a_node_back_after_its_lease_lapsed_ends_the_class_another_node_took(
    nodes: Any, redis: aioredis.Redis
) -> None:
    a = await nodes("node-a", lease=1.0, maths=12, french=4)
    b = await nodes("node-b", lease=1.0)
    await a.directory.hold("maths")
    await a.directory.hold("french")
    await a.halt()  # a long pause (a frozen VM): its lease lapses
    await until(lambda: _placed_on(b, "maths", "node-b"), timeout=5)
    await b.directory.hold("maths")
    await a.directory.renew()  # awake again
    assert a.classes.lost == ["maths"]
    assert await redis.get(class_key("maths")) == "node-b"
    assert await redis.get(class_key("french")) == "node-a"  # nobody took it: node-a keeps it
    assert await redis.hkeys(node_key("node-a") + ":classes") == ["french"]


async def test_a_class_placed_elsewhere_that_nobody_reached_stays_with_its_participants(
    nodes: Any, redis: aioredis.Redis
) -> None:
    """After a lapse (or a Redis restarted empty), a join may place a live class on another node
    before its node tells Redis again: until someone reaches that node, the class stays put."""
    a = await nodes("node-a", lease=1.0, maths=12)
    b = await nodes("node-b", lease=1.0)
    await a.directory.hold("maths")
    await a.halt()
    await until(lambda: _placed_on(b, "maths", "node-b"), timeout=5)
    await a.directory.renew()
    assert a.classes.lost == []
    assert await redis.get(class_key("maths")) == "node-a"
    assert not await redis.hexists(node_key("node-b") + ":classes", "maths")
    assert (await b.directory.place("maths")).node_id == "node-a"
    assert not (await b.directory.hold("maths")).here


async def test_a_placed_class_nobody_reaches_is_released_after_one_lease(nodes: Any, redis: aioredis.Redis) -> None:
    a = await nodes("node-a", lease=1.0)
    assert (await a.directory.place("maths")).here
    assert await redis.get(class_key("maths")) == "node-a"
    await until(lambda: _gone(redis, class_key("maths")), timeout=5)
    await until(lambda: _gone(redis, node_key("node-a") + ":classes"), timeout=5)


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_a_node_that_stops_releases_its_classes_at_once(nodes: Any, redis: aioredis.Redis) -> None:
    a = await nodes("node-a", maths=5)
    b = await nodes("node-b")
    await a.directory.hold("maths")
    await a.stop()
    assert (await b.directory.place("maths")).node_id == "node-b"
    assert await redis.smembers("classe:nodes") == {"node-b"}
    # Out of the directory, a stopping node still sends newcomers to where their class goes.
    assert (await a.directory.place("french")).node_id == "node-b"


# Commands between nodes


async def test_commands_reach_the_node_hosting_the_class(nodes: Any) -> None:
    a = await nodes("node-a", maths=5)
    b = await nodes("node-b")
    await a.directory.hold("maths")
    await asyncio.sleep(0.5)  # subscribed
    await b.directory.forward("maths", ClassCommand.LOBBY_ON)
    await until(lambda: a.classes.commands == [("maths", ClassCommand.LOBBY_ON)])
    await asyncio.sleep(2.5)  # longer than the client's socket timeout: still subscribed
    await b.directory.forward("maths", ClassCommand.END)
    await a.directory.forward("maths", ClassCommand.LOBBY_OFF)  # its own class: nothing to send
    await b.directory.forward("unplaced", ClassCommand.END)  # no node hosts it: nothing to send
    await until(lambda: len(a.classes.commands) == 2)
    await asyncio.sleep(0.3)
    assert a.classes.commands == [("maths", ClassCommand.LOBBY_ON), ("maths", ClassCommand.END)]
    assert b.classes.commands == []
    # A suspended account is put out of a class on another node: the command carries its identity.
    await b.directory.forward("maths", ClassCommand.EXPEL, "identity-of-the-account")
    await until(lambda: a.classes.expelled == [("maths", "identity-of-the-account")])


# Malformed entries and outages


MALFORMED_NODES = {
    "not-json": "{",
    "not-a-table": "[1, 2]",
    "no-url": json.dumps({"id": "no-url", "state": "ready", "cpu": 0}),
    "script": json.dumps({"id": "script", "url": "javascript:alert(1)", "state": "ready", "cpu": 0}),
    "long": json.dumps({"id": "long", "url": "http://" + "a" * 5000, "state": "ready", "cpu": 0}),
    "bad-types": json.dumps({"id": "bad-types", "url": "http://ok.test", "state": "ready", "cpu": {"x": 1}}),
    "unknown-state": json.dumps({"id": "unknown-state", "url": "http://ok.test", "state": "on fire", "cpu": 0}),
    "csp": json.dumps(
        {
            "id": "csp",
            "url": "http://x.test; script-src *",
            "state": "ready",
            "cpu": 0,
            "participants": 0,
            "packets_per_second": 0,
            "classes": 0,
        }
    ),
}


async def test_every_live_class_is_listed_with_its_node_for_the_console(nodes: Any) -> None:
    """What the administration console shows: each class some node hosts, where, with how many;
    a class placed that nobody reached yet is not live."""
    a = await nodes("node-a", maths=12, french=0)
    b = await nodes("node-b", history=5)
    await asyncio.gather(a.directory.renew(), b.directory.renew())
    assert (await a.directory.place("science")).node_id == "node-b"  # reserved there, nobody in it yet
    a.classes.live["maths"] = 13  # this node's own classes: as they are now, not at the last renewal
    expected = {"maths": ("node-a", 13), "french": ("node-a", 0), "history": ("node-b", 5)}
    assert await a.directory.live_classes() == expected
    await b.stop()  # it leaves the directory, with its classes
    assert await a.directory.live_classes() == {"maths": ("node-a", 13), "french": ("node-a", 0)}


async def test_malformed_nodes_and_commands_are_set_aside_and_counted(nodes: Any, redis: aioredis.Redis) -> None:
    """Only nodes write to Redis; still, nothing read from it is trusted: a description that does
    not parse is passed over (placement, the pages' connect-src), a command that does not parse is
    dropped, and both are counted."""
    for node_id, raw in MALFORMED_NODES.items():
        await redis.set(node_key(node_id), raw)
        await redis.sadd("classe:nodes", node_id)
    a = await nodes("node-a", maths=50)
    await a.directory.renew()
    for i in range(6):
        assert (await a.directory.place(f"class-{i}")).node_id == "node-a"
    assert [n.id for n in a.directory.nodes()] == ["node-a"]
    assert a.directory.connect_origins() == ["ws://node-a.classe.test:8080"]
    assert a.directory.malformed_nodes == len(MALFORMED_NODES)

    await a.directory.hold("maths")
    await asyncio.sleep(0.5)  # subscribed
    channel = commands_channel("node-a")
    garbage = ["", "{", "[]", '{"class": 1, "command": "end"}', '{"class": "maths", "command": "explode"}']
    garbage += [json.dumps({"class": "maths" * 200, "command": "end"}), "[" * 400 + "]" * 400]
    for _ in range(100):
        for message in garbage:
            await redis.publish(channel, message)
    await redis.publish(channel, json.dumps({"class": "maths", "command": "lobby_on"}))
    await until(lambda: a.classes.commands == [("maths", ClassCommand.LOBBY_ON)])
    assert a.directory.dropped_commands == 100 * len(garbage)
    registry = make_registry(MediaStats(), lambda: (0, 0, 0), directory=a.directory)
    assert registry.get_sample_value("classe_directory_dropped_commands_total") == 700
    assert registry.get_sample_value("classe_directory_malformed_nodes") == len(MALFORMED_NODES)
    assert registry.get_sample_value("classe_directory_nodes", {"state": "ready"}) == 1


async def test_without_redis_every_question_fails_clearly_and_the_node_registers_again(
    nodes: Any, redis_server: RedisServer
) -> None:
    a = await nodes("node-a", lease=1.0, maths=3)
    await a.directory.hold("maths")
    assert await a.directory.health() is None
    redis_server.stop()
    assert (await a.directory.place("maths")).here  # live here: it goes on here meanwhile
    for asked in (
        a.directory.place("history"),
        a.directory.hold("maths"),
        a.directory.participants(["maths"]),
        a.directory.live_classes(),
        a.directory.forward("maths", ClassCommand.END),
    ):
        with pytest.raises(DirectoryUnavailable):
            await asked
    await asyncio.sleep(1.1)  # past the cached answer
    assert (await a.directory.health() or "").startswith("redis unreachable")
    await asyncio.sleep(1.0)  # the renewals fail meanwhile, and go on
    redis_server.start()  # empty, as a Redis restarted without persistence
    await until(lambda: _registered(a), timeout=10)
    assert (await a.directory.place("history")).node_id == "node-a"
    await until(lambda: _health_ok(a), timeout=5)
    b = await nodes("node-b", lease=1.0)
    assert not (await b.directory.hold("maths")).here  # node-a holds its live class again


async def _registered(node: Node) -> bool:
    return bool(await node.directory.client.exists(node_key(node.id)))


async def _health_ok(node: Node) -> bool:
    return await node.directory.health() is None


async def test_readiness_asks_redis_at_most_once_a_second(nodes: Any, redis: aioredis.Redis) -> None:
    """/readyz answers anyone reaching the port: a thousand at once cost Redis one PING."""
    a = await nodes("node-a")
    before = int((await redis.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0))
    answers = await asyncio.gather(*(a.directory.health() for _ in range(1000)))
    assert set(answers) == {None}
    after = int((await redis.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0))
    assert after - before == 1
