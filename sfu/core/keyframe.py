"""Keyframe requests towards a publisher, rate limited but never lost."""

from __future__ import annotations


class KeyframeRequester:
    """Lets one request through per `min_interval`; a request inside the interval is kept pending.

    A subscriber joining just after another one must still get its keyframe: the pending request
    goes out as soon as the interval allows, instead of being dropped.
    """

    __slots__ = ("_last", "_pending", "min_interval")

    def __init__(self, min_interval: float = 0.5) -> None:
        self.min_interval = min_interval
        self._last = float("-inf")
        self._pending = False

    def request(self, now: float) -> bool:
        """True when a PLI should be sent now."""
        if now - self._last >= self.min_interval:
            self._last = now
            self._pending = False
            return True
        self._pending = True
        return False

    def defer(self) -> None:
        """Keep a request pending without using the interval (the publisher cannot be asked yet)."""
        self._pending = True

    @property
    def pending(self) -> bool:
        return self._pending

    def deadline(self) -> float | None:
        """When a pending request may go out; None when none is pending."""
        return self._last + self.min_interval if self._pending else None

    def poll(self, now: float) -> bool:
        """True when a request kept pending may go out now."""
        if self._pending and now >= self._last + self.min_interval:  # as deadline() computes it
            self._last = now
            self._pending = False
            return True
        return False
