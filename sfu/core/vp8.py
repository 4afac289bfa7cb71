"""The VP8 payload descriptor (RFC 7741): the layer ids the forwarder reads, the ids it rewrites.

A forwarder that drops temporal layers or switches between simulcast streams must hand the
subscriber's decoder one continuous stream: the picture ids and TL0PICIDX it sees have no holes
and never go back, whichever encoding they came from (mediasoup's PictureIdManager does the same).
"""

from __future__ import annotations

PICTURE_ID_MASK = 0x7FFF


class Vp8Descriptor:
    """What one packet's descriptor says. Offsets are into the payload; -1 when absent.

    Malformed or truncated descriptors parse as "no layer information" (`valid` False): such a
    packet is still forwarded whole, never the cause of an exception."""

    __slots__ = ("begins_frame", "picture_id", "picture_id_offset", "sync", "temporal", "tl0", "tl0_offset", "valid")

    def __init__(self) -> None:
        self.valid = False
        self.begins_frame = False
        self.picture_id = -1
        self.picture_id_offset = -1  # a two-byte (15-bit) picture id; one-byte ids are not rewritten
        self.tl0 = -1
        self.tl0_offset = -1
        self.temporal = 0
        self.sync = True  # Y bit: the frame depends only on TL0 frames (a point to switch up)


def parse(payload: bytes, into: Vp8Descriptor) -> None:
    """Fill `into` from the start of `payload` (reused between packets: no allocation)."""
    into.valid = False
    into.picture_id = into.picture_id_offset = into.tl0 = into.tl0_offset = -1
    into.temporal = 0
    into.sync = True
    size = len(payload)
    if size < 1:
        return
    first = payload[0]
    into.begins_frame = bool(first & 0x10) and not first & 0x07
    pos = 1
    if first & 0x80:
        if size < 2:
            return
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if pos >= size:
                return
            if payload[pos] & 0x80:
                if pos + 1 >= size:
                    return
                into.picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                into.picture_id_offset = pos
                pos += 2
            else:
                into.picture_id = payload[pos]
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            if pos >= size:
                return
            into.tl0 = payload[pos]
            into.tl0_offset = pos
            pos += 1
        if ext & 0x30:  # T or K: TID / Y / KEYIDX
            if pos >= size:
                return
            if ext & 0x20:
                into.temporal = payload[pos] >> 6
                into.sync = bool(payload[pos] & 0x20)
            pos += 1
    if pos >= size:
        return
    into.valid = True


def rewrite(payload: bytes, picture_id_offset: int, picture_id: int, tl0_offset: int, tl0: int) -> bytes:
    """The payload with its 15-bit picture id and TL0PICIDX replaced (offsets -1: left as is)."""
    end = max(picture_id_offset + 2, tl0_offset + 1)
    head = bytearray(payload[:end])
    if picture_id_offset >= 0:
        head[picture_id_offset] = 0x80 | (picture_id >> 8) & 0x7F
        head[picture_id_offset + 1] = picture_id & 0xFF
    if tl0_offset >= 0:
        head[tl0_offset] = tl0 & 0xFF
    return bytes(head) + payload[end:]


class IdRewriter:
    """One wrapping id (picture id: 15 bits, TL0PICIDX: 8 bits) made continuous for a subscriber.

    The first id after a sync gets the successor of the last one sent; later ids keep their
    distance from it, so an id the forwarder skipped (a dropped frame) leaves no hole only when
    `skip` is told of it."""

    __slots__ = ("_base", "_last_in", "_last_out", "_mask", "_started")

    def __init__(self, bits: int) -> None:
        self._mask = (1 << bits) - 1
        self._base = 0  # out = in + base: 0 (ids passed as they are) until a drop or a switch
        self._last_in = -1
        self._last_out: int | None = None
        self._started = False

    @property
    def identity(self) -> bool:
        """True while ids go out as they came in: the payload need not be rewritten."""
        return self._base == 0

    def continue_from(self, value: int) -> None:
        """Take over after ids that went out unchanged, the last being `value`."""
        self._started = True
        self._base = 0
        self._last_in = self._last_out = value & self._mask

    def sync(self) -> None:
        """The next id seen starts right after the last one sent (a switch of stream)."""
        self._started = False

    def skip(self, value: int) -> None:
        """`value` will never be sent (its whole frame is dropped): newer ids close the gap."""
        if self._started and value == (self._last_in + 1) & self._mask:
            self._last_in = value
            self._base = (self._base - 1) & self._mask

    def map(self, value: int) -> int:
        mask = self._mask
        if not self._started:
            self._started = True
            self._last_in = (value - 1) & mask
            if self._last_out is not None:
                self._base = (self._last_out + 1 - value) & mask
        if ((value - self._last_in) & mask) < (mask >> 1):  # newer (modulo the id space)
            self._last_in = value
            out = (value + self._base) & mask
            self._last_out = out
            return out
        return (value + self._base) & mask
