"""Several nodes sharing one Redis server: leases for nodes and classes, and atomic placement.

What Redis holds (all under `classe:`, every key with a lease):
- `nodes`: the ids of the nodes that registered (pruned when their lease is gone);
- `node:<id>`: a node's URL, state and load, as JSON; the node renews it every lease/3 seconds;
- `node:<id>:classes`: the classes it hosts, with their participants (-1: placed there, nobody
  arrived yet), renewed with it;
- `class:<class id>`: the node hosting the class, renewed by that node while it remembers the class;
- channel `node:<id>:commands`: what another node's HTTP API asks of a class hosted there.

The scripts run in Redis, one at a time: two nodes placing the same class at once get one answer,
and classes opening together spread (each placement sees the ones before it). They read keys they
are not given (a node's load), so they need one Redis server (or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..budgets import SharedBuckets
from ..config import MAX_NODE_URL, NODE_ID, NODE_URL, Settings
from .base import (
    ClassCommand,
    ClassDirectory,
    DirectoryUnavailable,
    Host,
    LoadSampler,
    Node,
    NodeLoad,
    NodeState,
    NoReadyNode,
    Placement,
    stop_tasks,
    ws_address,
)
from .sessions import RedisSessions

log = logging.getLogger(__name__)
PREFIX = "classe:"
NODES = PREFIX + "nodes"
# A node's load, for placement, is the greater of its participants and this many per class it
# hosts or was just given: classes opening together spread instead of all going to the node that
# was emptiest a moment ago (its participants are only reported every lease/3 seconds).
CLASS_WEIGHT = 30
# A node busier than this (its process's CPU time over wall time, 1.0 being one core) gets new
# classes only when every ready node is.
BUSY_CPU = 0.8
MAX_COMMAND_BYTES = 512
HEALTH_SECONDS = 1.0

# KEYS: the class's key, the node set. ARGV: class id, lease (ms), class weight, busy CPU, longest URL.
PLACE = """
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', 'classe:node:' .. owner) == 1 then return owner end
local weight, busy_cpu, max_url = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Only nodes write here; still, a description that does not parse, or is not whole, is passed over
-- rather than failing every placement (parse_node checks it again, in full).
local function usable(id, raw)
  local ok, node = pcall(cjson.decode, raw)
  if not ok or type(node) ~= 'table' or node.id ~= id or type(node.url) ~= 'string' then return nil end
  if #node.url > max_url or not string.find(node.url, '^https?://[%w%.%-%[%]:/_~]+$') then return nil end
  for _, field in ipairs({'cpu', 'participants', 'packets_per_second', 'classes'}) do
    if tonumber(node[field]) == nil then return nil end
  end
  return node
end
local best, best_busy, best_score
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local raw = redis.call('GET', 'classe:node:' .. id)
  if not raw then
    redis.call('SREM', KEYS[2], id)
  else
    local node = usable(id, raw)
    if node and node.state == 'ready' then
      -- Constant time per node, whatever the number of classes placed there.
      local classes = redis.call('HLEN', 'classe:node:' .. id .. ':classes')
      local score = math.max(tonumber(node.participants), weight * classes)
      local busy = 0
      if tonumber(node.cpu) >= busy_cpu then busy = 1 end
      if best == nil or busy < best_busy
          or (busy == best_busy and (score < best_score or (score == best_score and id < best))) then
        best, best_busy, best_score = id, busy, score
      end
    end
  end
end
if not best then return false end
redis.call('SET', KEYS[1], best, 'PX', ARGV[2])
local hash = 'classe:node:' .. best .. ':classes'
redis.call('HSET', hash, ARGV[1], -1)
redis.call('PEXPIRE', hash, ARGV[2])
return best
"""

# KEYS: the class's key. ARGV: this node, class id, lease (ms).
HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', 'classe:node:' .. owner) == 1 then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local hash = 'classe:node:' .. ARGV[1] .. ':classes'
local n = redis.call('HGET', hash, ARGV[2])
if not n or n == '-1' then redis.call('HSET', hash, ARGV[2], 0) end  -- someone came: no longer a bare reservation
redis.call('PEXPIRE', hash, ARGV[3])
return ARGV[1]
"""

# ARGV: this node, its description (JSON), lease (ms), then pairs of class id and participants.
# Renews the node and the classes it hosts; a class it no longer remembers is released; returns
# the classes another node took over meanwhile (this node's lease had lapsed) and someone reached
# there. A class placed elsewhere meanwhile that nobody reached stays here, with its participants
# (after a Redis restart, say, the next join may have placed it before this node told Redis).
RENEW = """
local me, lease = ARGV[1], ARGV[3]
redis.call('SET', 'classe:node:' .. me, ARGV[2], 'PX', lease)
redis.call('SADD', 'classe:nodes', me)
local hash = 'classe:node:' .. me .. ':classes'
local held, lost = {}, {}
for i = 4, #ARGV, 2 do
  local key = 'classe:class:' .. ARGV[i]
  local owner = redis.call('GET', key)
  if owner and owner ~= me and tonumber(ARGV[i + 1]) > 0
      and redis.call('HGET', 'classe:node:' .. owner .. ':classes', ARGV[i]) == '-1' then
    redis.call('HDEL', 'classe:node:' .. owner .. ':classes', ARGV[i])
    owner = false
  end
  if owner == false or owner == me then
    redis.call('SET', key, me, 'PX', lease)
    held[ARGV[i]] = ARGV[i + 1]
  else
    table.insert(lost, ARGV[i])
  end
end
local before = redis.call('HGETALL', hash)
for i = 1, #before, 2 do
  local id = before[i]
  if held[id] == nil then
    local key = 'classe:class:' .. id
    if redis.call('GET', key) == me then
      if before[i + 1] == '-1' then held[id] = '-1' else redis.call('DEL', key) end
    end
  end
end
redis.call('DEL', hash)
for id, n in pairs(held) do redis.call('HSET', hash, id, n) end
redis.call('PEXPIRE', hash, lease)
return lost
"""

# ARGV: class ids. For each, the node hosting it and its participants there ('' and -1: not live).
PARTICIPANTS = """
local out = {}
for _, id in ipairs(ARGV) do
  local owner = redis.call('GET', 'classe:class:' .. id)
  local n = false
  if owner and redis.call('EXISTS', 'classe:node:' .. owner) == 1 then
    n = redis.call('HGET', 'classe:node:' .. owner .. ':classes', id)
  end
  table.insert(out, n and owner or '')
  table.insert(out, n or '-1')
end
return out
"""

# ARGV: this node. Its classes go free at once, and it leaves the node set.
LEAVE = """
local hash = 'classe:node:' .. ARGV[1] .. ':classes'
for _, id in ipairs(redis.call('HKEYS', hash)) do
  local key = 'classe:class:' .. id
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('DEL', hash, 'classe:node:' .. ARGV[1])
redis.call('SREM', 'classe:nodes', ARGV[1])
return 1
"""


def class_key(class_id: str) -> str:
    return f"{PREFIX}class:{class_id}"


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def commands_channel(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}:commands"


def parse_node(raw: str) -> Node | None:
    """A node's description as Redis holds it; None for anything malformed (it ends up in a
    Content-Security-Policy and in metric labels: nothing but a well-formed URL and state passes)."""
    try:
        data = json.loads(raw)
        url, state = str(data["url"]), NodeState(data["state"])
        load = NodeLoad(int(data["participants"]), float(data["packets_per_second"]), float(data["cpu"]))
        node = Node(str(data["id"]), url, state, load, int(data["classes"]))
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    well_formed = len(url) <= MAX_NODE_URL and NODE_URL.match(url) and NODE_ID.match(node.id)
    return node if well_formed else None


def _count(value: Any) -> int:
    """Participants as the directory holds them; -1 (not live) for anything else."""
    try:
        return int(value)
    except (ValueError, TypeError):
        return -1


class RedisDirectory(ClassDirectory):
    kind = "redis"

    def __init__(self, settings: Settings, host: Host, client: aioredis.Redis | None = None) -> None:
        super().__init__(settings, host)
        assert settings.redis_url
        self.client = client or aioredis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.lease_ms = int(settings.node_lease_seconds * 1000)
        self.url = settings.node_address
        self.sampler = LoadSampler(host)
        self._place = self.client.register_script(PLACE)
        self._hold = self.client.register_script(HOLD)
        self._renew = self.client.register_script(RENEW)
        self._participants = self.client.register_script(PARTICIPANTS)
        self._leave = self.client.register_script(LEAVE)
        self._nodes: list[Node] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._renewing = asyncio.Lock()
        self._reachable = True
        self._health: tuple[float, asyncio.Task[str | None]] | None = None  # when asked, the answer
        self.sessions = RedisSessions(self.client, host.hosted, settings.class_idle_seconds)

    async def start(self) -> None:
        """Register at once when Redis answers; otherwise the renewal loop keeps trying (/readyz says so)."""
        with contextlib.suppress(DirectoryUnavailable):
            await self.renew()
        self._tasks = [asyncio.create_task(self._renewals()), asyncio.create_task(self._commands())]
        self.sessions.start()

    async def stop(self) -> None:
        await self.sessions.flush()  # the node that takes the classes over finds the latest decisions
        await self.sessions.stop()
        await stop_tasks(self._tasks)
        try:
            await self._leave(args=[self.node_id])
        except (RedisError, OSError):
            log.warning("could not leave the class directory: this node's classes move when its lease expires")

    async def close(self) -> None:
        await self.client.aclose()

    async def place(self, class_id: str) -> Placement:
        if class_id in self.host.hosted():
            # Live here: here, unless another node took it meanwhile (this node's lease lapsed);
            # while Redis is away, it goes on here.
            try:
                return await self.hold(class_id)
            except DirectoryUnavailable:
                return Placement(self.node_id, True, ws_address(self.url))
        node_id = await self._call(self._place(keys=[class_key(class_id), NODES], args=self._place_args(class_id)))
        if not node_id:
            raise NoReadyNode()
        return await self._placement(str(node_id))

    def _place_args(self, class_id: str) -> list[Any]:
        return [class_id, self.lease_ms, CLASS_WEIGHT, BUSY_CPU, MAX_NODE_URL]

    async def hold(self, class_id: str) -> Placement:
        node_id = await self._call(self._hold(keys=[class_key(class_id)], args=[self.node_id, class_id, self.lease_ms]))
        return await self._placement(str(node_id))

    async def _placement(self, node_id: str) -> Placement:
        if node_id == self.node_id:
            return Placement(node_id, True, ws_address(self.url))
        node = next((n for n in self._nodes if n.id == node_id), None)
        if node is None:  # registered since this node last looked
            raw = await self._call(self.client.get(node_key(node_id)))
            node = parse_node(raw) if raw else None
        if node is None:
            raise DirectoryUnavailable(f"node {node_id} has no usable description")
        return Placement(node_id, False, ws_address(node.url))

    async def participants(self, class_ids: Iterable[str]) -> dict[str, int]:
        ids = list(class_ids)
        if not ids:
            return {}
        answer = await self._call(self._participants(args=ids))
        hosted = self.host.hosted()  # this node's own classes: now rather than at the last renewal
        found = {}
        for class_id, owner, count in zip(ids, answer[::2], answer[1::2], strict=True):
            if owner == self.node_id and class_id in hosted:
                found[class_id] = hosted[class_id]
            elif _count(count) >= 0:
                found[class_id] = _count(count)
        return found

    async def live_classes(self) -> dict[str, tuple[str, int]]:
        """Each registered node's class hash as Redis holds it (this node's own: as it is now);
        a reservation nobody reached yet (-1) is not a live class."""
        ids = sorted(await self._call(self.client.smembers(NODES)))
        pipe = self.client.pipeline(transaction=False)
        for node_id in ids:
            pipe.hgetall(f"{node_key(node_id)}:classes")
        hashes = await self._call(pipe.execute()) if ids else []
        found: dict[str, tuple[str, int]] = {}
        for node_id, classes in zip(ids, hashes, strict=True):
            if node_id == self.node_id:
                continue
            for class_id, count in classes.items():
                if _count(count) >= 0:
                    found[str(class_id)] = (str(node_id), _count(count))
        found.update((class_id, (self.node_id, count)) for class_id, count in self.host.hosted().items())
        return found

    async def forward(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        owner = await self._call(self.client.get(class_key(class_id)))
        if owner and owner != self.node_id:
            message = json.dumps({"class": class_id, "command": command.value, "identity": identity})
            await self._call(self.client.publish(commands_channel(str(owner)), message))

    def nodes(self) -> list[Node]:
        return list(self._nodes)

    def shared_buckets(self) -> SharedBuckets:
        return SharedBuckets(self.client, self.settings.token_secret)

    async def health(self) -> str | None:
        """At most one PING a second, its answer shared by the requests that ask meanwhile: /readyz
        answers anyone who reaches the HTTP port."""
        now = asyncio.get_running_loop().time()
        if self._health is None or now - self._health[0] >= HEALTH_SECONDS:
            self._health = (now, asyncio.ensure_future(self._ping()))
        return await asyncio.shield(self._health[1])

    async def _ping(self) -> str | None:
        try:
            await asyncio.wait_for(self.client.ping(), 2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            return f"redis unreachable ({type(exc).__name__})"
        return None

    async def set_state(self, state: NodeState) -> None:
        await super().set_state(state)
        await self.renew()  # at once: the next placement must see it

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise DirectoryUnavailable(type(exc).__name__) from None

    # Leases

    async def renew(self) -> None:
        """Renew this node's lease and its classes', end here the classes another node took over,
        and refresh the view of the nodes."""
        async with self._renewing:
            hosted = self.host.hosted()
            load = self.sampler.sample()
            description = {
                "id": self.node_id,
                "url": self.url,
                "state": self.state.value,
                "participants": load.participants,
                "packets_per_second": load.packets_per_second,
                "cpu": load.cpu,
                "classes": len(hosted),
            }
            args: list[Any] = [self.node_id, json.dumps(description), self.lease_ms]
            for class_id, count in hosted.items():
                args += [class_id, count]
            lost = await self._call(self._renew(args=args))
            self._nodes = await self._read_nodes()
        for class_id in lost:
            log.warning("class %s was placed on another node while this node's lease had lapsed: ended here", class_id)
            await self.host.lose(str(class_id))

    async def _read_nodes(self) -> list[Node]:
        ids = sorted(await self._call(self.client.smembers(NODES)))
        raws = [raw for raw in (await self._call(self.client.mget([node_key(i) for i in ids])) if ids else []) if raw]
        nodes = [node for node in map(parse_node, raws) if node is not None]
        self.malformed_nodes = len(raws) - len(nodes)
        return nodes

    async def _renewals(self) -> None:
        period = self.settings.node_lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew()
            except DirectoryUnavailable as exc:
                if self._reachable:
                    log.error("the class directory (Redis) is unreachable (%s): retrying every %.1f s", exc, period)
                self._reachable = False
                continue
            except Exception:
                log.exception("renewing this node's leases failed")
                continue
            if not self._reachable:
                log.info("the class directory (Redis) answers again")
            self._reachable = True

    # Commands from other nodes

    async def _commands(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(commands_channel(self.node_id))
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None:
                        await self._obey(message.get("data"))
            except (RedisError, OSError):
                await asyncio.sleep(1.0)  # the renewals log the outage
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _obey(self, data: Any) -> None:
        """Only nodes write to Redis, but a malformed command is dropped, not trusted."""
        try:
            if not isinstance(data, str) or len(data) > MAX_COMMAND_BYTES:
                raise ValueError("not a short string")
            message = json.loads(data)
            class_id, command = message["class"], ClassCommand(message["command"])
            identity = message.get("identity")
            if not isinstance(class_id, str) or not isinstance(identity, str | None):
                raise ValueError("class or identity is not a string")
        except (ValueError, KeyError, TypeError):
            self.dropped_commands += 1
            log.warning("dropped a malformed command from the class directory")
            return
        try:
            await self.host.obey(class_id, command, identity)
        except Exception:
            log.exception("a command from another node failed")
