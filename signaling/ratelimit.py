"""Token buckets keyed by client address or account: sans-IO, fed with the time."""

from __future__ import annotations


class RateLimiter:
    """At most `burst` events at once, refilled at `burst / window` per second.

    Callers check before an attempt and spend on failure, so that a whole school behind one NAT
    address using valid links is never held back, while guessing is.
    """

    def __init__(self, burst: int, window: float, max_keys: int = 100_000) -> None:
        self.burst = float(burst)
        self.rate = burst / window
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def allowed(self, key: str, now: float) -> bool:
        return self._level(key, now) >= 1.0

    def spend(self, key: str, now: float) -> None:
        if len(self._buckets) >= self.max_keys:
            self._prune(now)
        self._buckets[key] = (max(0.0, self._level(key, now) - 1.0), now)

    def take(self, key: str, now: float) -> bool:
        """For what is spent when allowed (a message, a log line): spend one if there is one."""
        if not self.allowed(key, now):
            return False
        self.spend(key, now)
        return True

    def retry_after(self, key: str, now: float) -> float:
        return max(0.0, (1.0 - self._level(key, now)) / self.rate)

    def _prune(self, now: float) -> None:
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # still full: under attack, forget the oldest half
            for key in list(self._buckets)[: self.max_keys // 2]:
                del self._buckets[key]
