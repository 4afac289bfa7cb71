"""The embedded default: this process is the only node, and every class is placed here."""

from __future__ import annotations

from collections.abc import Iterable

from .base import ClassCommand, ClassDirectory, Node, NodeLoad, NodeState, NoReadyNode, Placement, ws_address, ws_origin


class LocalDirectory(ClassDirectory):
    kind = "local"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _here(self) -> Placement:
        # Without node_url the page connects to its own origin, as it always did.
        url = self.settings.node_url
        return Placement(self.node_id, True, ws_address(url) if url else None)

    async def place(self, class_id: str) -> Placement:
        if self.state is not NodeState.READY and class_id not in self.host.hosted():
            raise NoReadyNode()
        return self._here()

    async def hold(self, class_id: str) -> Placement:
        return self._here()

    async def participants(self, class_ids: Iterable[str]) -> dict[str, int]:
        hosted = self.host.hosted()
        return {class_id: hosted[class_id] for class_id in class_ids if class_id in hosted}

    async def live_classes(self) -> dict[str, tuple[str, int]]:
        return {class_id: (self.node_id, count) for class_id, count in self.host.hosted().items()}

    async def forward(self, class_id: str, command: ClassCommand, identity: str | None = None) -> None:
        return None  # no other node

    def nodes(self) -> list[Node]:
        hosted = self.host.hosted()
        load = NodeLoad(participants=sum(hosted.values()))
        return [Node(self.node_id, self.settings.node_address, self.state, load, len(hosted))]

    def connect_origins(self) -> list[str]:
        return [ws_origin(self.settings.node_url)] if self.settings.node_url else []

    async def health(self) -> str | None:
        return None
