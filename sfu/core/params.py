"""What negotiation decided for a track: codec, payload types, header extension ids."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class Codec:
    """One negotiated codec; `rtx_payload_type` is set when RTX (RFC 4588) was negotiated for it."""

    mime_type: str  # "video/VP8", "audio/opus", ...
    payload_type: int
    clock_rate: int
    rtx_payload_type: int | None = None

    @property
    def kind(self) -> Kind:
        return Kind(self.mime_type.split("/", 1)[0].lower())

    @property
    def name(self) -> str:
        return self.mime_type.split("/", 1)[1].upper()


@dataclass(frozen=True, slots=True)
class HeaderExtensions:
    """Negotiated one-byte header extension ids; 0 means not negotiated."""

    mid: int = 0
    audio_level: int = 0
    abs_send_time: int = 0
    rid: int = 0  # rtp-stream-id: which simulcast encoding a packet belongs to
    repaired_rid: int = 0  # repaired-rtp-stream-id: the same, on RTX packets
    transport_cc: int = 0  # transport-wide sequence number, for the subscriber's congestion feedback
