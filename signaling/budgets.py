"""The HTTP API's rate limits, shared by every node when Redis is configured.

Behind a load balancer (or `classe serve --workers N`, whose processes share one port) each
request may reach another process: buckets of one process's own would give a guesser N times the
budget. With Redis, the buckets live there, keyed by a keyed hash of the client's address or
account (no address or e-mail address in clear in Redis); when Redis does not answer, each process
falls back on its own buckets, so a limit is never lifted, at worst multiplied by the processes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

# KEYS: the bucket. ARGV: burst, refill per second, 1 to spend a token (0: only look).
# Returns how long until a token is there ("0": now), as a string (Lua numbers would be truncated).
# The time is Redis's own: the nodes' clocks need not agree.
BUCKET = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
if ARGV[3] == '1' then
  tokens = math.max(0, tokens - 1)
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000))
end
if tokens >= 1 then return '0' end
return tostring((1 - tokens) / rate)
"""


class SharedBuckets:
    """The buckets of every budget, in one Redis server."""

    def __init__(self, client: Redis, secret: str) -> None:
        self.client = client
        self._key = hashlib.sha256(b"classe-budgets:" + secret.encode()).digest()
        self._bucket = client.register_script(BUCKET)
        self.failures = 0  # calls Redis did not answer (each fell back on the process's buckets)

    def key(self, budget: str, key: str) -> str:
        digest = hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()[:32]
        return f"classe:budget:{budget}:{digest}"

    async def wait(self, budget: Budget, key: str, spend: bool) -> float | None:
        """Seconds until the bucket has a token (0: now), after spending one if `spend`; None when
        Redis does not answer."""
        args: list[Any] = [budget.burst, budget.rate, 1 if spend else 0]
        try:
            return float(await self._bucket(keys=[self.key(budget.name, key)], args=args))
        except (RedisError, OSError, ValueError) as exc:
            if not self.failures:
                log.error("rate limits: Redis does not answer (%s); each process counts on its own", type(exc).__name__)
            self.failures += 1
            return None


class Budget:
    """At most `burst` events at once, refilled at `burst / window` per second, for each key."""

    def __init__(self, name: str, burst: int, window: float) -> None:
        self.name = name
        self.burst = burst
        self.rate = burst / window
        self.local = RateLimiter(burst, window)
        self.shared: SharedBuckets | None = None

    async def retry_after(self, key: str, now: float) -> float:
        """0 when the key may try now; otherwise how long until it may."""
        if self.shared is not None:
            wait = await self.shared.wait(self, key, spend=False)
            if wait is not None:
                return wait
        return 0.0 if self.local.allowed(key, now) else self.local.retry_after(key, now)

    async def spend(self, key: str, now: float) -> None:
        if self.shared is None or await self.shared.wait(self, key, spend=True) is None:
            self.local.spend(key, now)
