"""The class directory: which node hosts each live class (docs/architecture.md, "Several nodes")."""

from ..config import Settings
from .base import (
    ClassCommand,
    ClassDirectory,
    DirectoryUnavailable,
    Host,
    Node,
    NodeLoad,
    NodeState,
    NoReadyNode,
    Placement,
)
from .local import LocalDirectory


def make_directory(settings: Settings, host: Host) -> ClassDirectory:
    """Redis when redis_url is set; otherwise this process is the only node."""
    if settings.redis_url:
        from .redis import RedisDirectory  # redis-py is only imported by nodes that use it

        return RedisDirectory(settings, host)
    return LocalDirectory(settings, host)


__all__ = [
    "ClassCommand",
    "ClassDirectory",
    "DirectoryUnavailable",
    "Host",
    "LocalDirectory",
    "NoReadyNode",
    "Node",
    "NodeLoad",
    "NodeState",
    "Placement",
    "make_directory",
]
