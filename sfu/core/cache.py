"""The last packets of a published track, kept to answer subscribers' NACKs."""

from __future__ import annotations


class PacketCache:
    """A ring indexed by extended sequence number; old entries are overwritten, not freed."""

    __slots__ = ("_mask", "_packets", "_seqs")

    def __init__(self, size: int = 1024) -> None:
        if size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._packets: list[bytes | None] = [None] * size
        self._seqs = [-1] * size

    def put(self, ext_seq: int, packet: bytes) -> None:
        index = ext_seq & self._mask
        self._packets[index] = packet
        self._seqs[index] = ext_seq

    def get(self, ext_seq: int) -> bytes | None:
        index = ext_seq & self._mask
        if self._seqs[index] != ext_seq:
            return None
        return self._packets[index]

    def __contains__(self, ext_seq: int) -> bool:
        return self._seqs[ext_seq & self._mask] == ext_seq
