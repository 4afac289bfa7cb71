"""One received RTP packet, parsed once and shared by every consumer it is forwarded to."""

from __future__ import annotations


class RtpPacket:
    """What a consumer needs of an arrival, read once by the producer (slots: no per-field dict).

    `data` is the packet as received (kept in the cache for NACKs); `payload` is what follows its
    header; `level` the audio-level byte (0x7F when absent); `ast` the abs-send-time of arrival.
    Layers: `spatial` is the index of the stream it came on (its simulcast encoding); for VP8 the
    producer fills `temporal`, `sync`, `begins_frame` and the picture id / TL0PICIDX with their
    offsets in the payload (-1 when absent), which layered consumers rewrite."""

    __slots__ = (
        "ast",
        "begins_frame",
        "data",
        "ext_seq",
        "keyframe",
        "level",
        "marker",
        "padding",
        "payload",
        "picture_id",
        "picture_id_offset",
        "seq",
        "spatial",
        "sync",
        "temporal",
        "timestamp",
        "tl0",
        "tl0_offset",
    )

    spatial: int
    temporal: int
    sync: bool
    begins_frame: bool
    picture_id: int
    picture_id_offset: int
    tl0: int
    tl0_offset: int

    def __init__(
        self,
        data: bytes,
        payload: bytes,
        seq: int,
        ext_seq: int,
        timestamp: int,
        keyframe: bool,
        level: int,
        ast: bytes,
    ) -> None:
        self.data = data
        self.padding = data[0] & 0x20  # the bits a consumer copies into its own header
        self.marker = data[1] & 0x80
        self.payload = payload
        self.seq = seq
        self.ext_seq = ext_seq
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.level = level
        self.ast = ast
        # The layer fields are set by a producer with layered consumers only (never read otherwise):
        # an audio packet does not pay for them.
