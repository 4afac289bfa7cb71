"""The process's log: standard logging to standard error, as text or as JSON lines.

Text is for people reading `journalctl`; JSON (`log_format = "json"`) is one object per line for
log collectors (Loki, Elasticsearch, Vector…). Both carry the same events (signaling/events.py).
The standard library's logging rather than structlog: aiohttp, aiortc and SQLAlchemy already log
through it, and one formatter per format turns their lines and ours into the same shape with no
second pipeline to configure.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Libraries whose informational lines name addresses (aioice and aiortc: ICE candidates).
QUIET = ("aioice", "aiortc")


class TextFormatter(logging.Formatter):
    """The usual text line; an event's line also names the node (several workers share one log)."""

    def __init__(self, node: str | None) -> None:
        super().__init__(TEXT_FORMAT)
        self.node = node

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if self.node is not None and getattr(record, "event", None) is not None:
            line += f" node={self.node}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, node, and either an event's fields (event, class,
    participant, role, reason, …) or a library's logger and message; a traceback, if any, in
    `error` (inside the object: the line stays one line)."""

    def __init__(self, node: str | None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
            line.update(getattr(record, "fields", {}))
        else:
            line["logger"] = record.name
            line["message"] = record.getMessage()
        if self.node is not None:
            line["node"] = self.node
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["error"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str = "text", node: str | None = None) -> None:
    """Every line of the process, ours and the libraries', to standard error in one format.
    `node`: the serving node's id, on every line (None for the one-off commands). As
    `logging.basicConfig`, nothing changes where logging is already set up (a program that runs
    `classe` commands in its own process, a test run), but the quieted libraries."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node) if log_format == "json" else TextFormatter(node))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # a library's warning is a line of the log, in its format
