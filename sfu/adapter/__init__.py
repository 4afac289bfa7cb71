"""The asyncio/aiortc side of the SFU: thin adapters between sockets and the sans-IO core."""
