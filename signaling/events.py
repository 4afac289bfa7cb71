"""The class events: one log line each, structured, and counted for /metrics.

Operators follow a lesson in the log (docs/operations.md, "Logs"): a class opened, who joined,
waited, was refused (and why) or left (and why), an ICE failure, the class ended (and why), the
node drained or stopped. Every line names classes and participants by their opaque ids, never a
name, an e-mail address or an IP address: the fields below are the only ones written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from enum import StrEnum

from .ratelimit import RateLimiter

log = logging.getLogger("classe.events")
# A value written as it is in the text format; any other is quoted (JSON string), so that no value
# can start a line of its own or pass for another field.
_PLAIN = re.compile(r"[A-Za-z0-9._:,=+/-]{1,128}")
# Refusals are what anyone can cause (a forged token, a class link without an account, a retry storm
# while no node is ready): their lines are budgeted per process and per reason, 60 at once then one
# a second, so that a flood of forged tokens does not hide a removal; every refusal is still counted
# (classe_join_refusals_total), and the lines left out too.
REFUSAL_LINES_BURST, REFUSAL_LINES_WINDOW = 60, 60.0


class Event(StrEnum):
    CLASS_OPENED = "class_opened"
    CLASS_ENDED = "class_ended"
    PARTICIPANT_JOINED = "participant_joined"
    PARTICIPANT_WAITING = "participant_waiting"
    PARTICIPANT_LEFT = "participant_left"
    JOIN_REFUSED = "join_refused"
    ICE_FAILED = "ice_failed"
    TEACHER_AWAY = "teacher_away"
    NODE_STARTED = "node_started"
    NODE_DRAINING = "node_draining"
    NODE_READY = "node_ready"
    NODE_STOPPING = "node_stopping"
    NODE_STOPPED = "node_stopped"


class JoinResult(StrEnum):
    """What a `join` message got first: in, waiting (lobby, or no teacher yet), or refused."""

    JOINED = "joined"
    WAITING = "waiting"
    REFUSED = "refused"


def text_value(value: object) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class ClassEvents:
    """Writes the events of this process's classes and counts them (plain counters, read at
    scrape time by signaling/metrics.py)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.joins: Counter[str] = Counter()  # JoinResult
        self.refusals: Counter[str] = Counter()  # by reason (the error code)
        self.departures: Counter[str] = Counter()  # by reason
        self.opened = 0
        self.ended: Counter[str] = Counter()  # by reason
        self.unlogged = 0  # refusals counted but not written: over the line budget
        self._clock = clock
        self._refusal_lines = RateLimiter(REFUSAL_LINES_BURST, REFUSAL_LINES_WINDOW)

    def emit(
        self,
        event: Event,
        class_id: str | None = None,
        participant: str | None = None,
        role: str | None = None,
        reason: str | None = None,
        **more: object,
    ) -> None:
        """One line: `event class=… participant=… role=… reason=…` and the event's own fields."""
        fields = {"class": class_id, "participant": participant, "role": role, "reason": reason, **more}
        fields = {key: value for key, value in fields.items() if value is not None}
        self._count(event, reason)
        # Reasons are the server's own error codes: a few keys, never a client's text.
        if event is Event.JOIN_REFUSED and not self._refusal_lines.take(reason or "", self._clock()):
            self.unlogged += 1
            return
        line = " ".join([event.value, *(f"{key}={text_value(value)}" for key, value in fields.items())])
        log.info(line, extra={"event": event.value, "fields": fields})

    def joined(self, result: JoinResult) -> None:
        self.joins[result] += 1

    def _count(self, event: Event, reason: str | None) -> None:
        if event is Event.JOIN_REFUSED:
            self.refusals[reason or "unknown"] += 1
        elif event is Event.PARTICIPANT_LEFT:
            self.departures[reason or "left"] += 1
        elif event is Event.CLASS_OPENED:
            self.opened += 1
        elif event is Event.CLASS_ENDED:
            self.ended[reason or "empty"] += 1
