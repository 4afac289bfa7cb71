"""A first look at a client's SDP offer, before aiortc builds anything from it.

aiortc creates a transceiver (and, once connected, the server a producer) for every media section
it is given, and its parser fails with assertion or index errors on malformed lines. The server
reads the media lines itself first, so that an offer it will refuse costs nothing and every
refusal is a clear `bad_sdp`.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAYLOAD_TYPE = 127  # RTP payload types are 7 bits (RFC 3550)


class SdpError(ValueError):
    """The offer is not one the server can use; the message says why, for the client's developer."""


@dataclass(frozen=True, slots=True)
class Section:
    kind: str  # the media of the m= line: audio, video, application, ...
    mid: str
    port: int


def _is_payload_type(text: str) -> bool:
    return text.isdigit() and int(text) <= MAX_PAYLOAD_TYPE


def media_sections(sdp: str) -> list[Section]:
    """The offer's media sections in order; raises SdpError on a malformed media line or mid."""
    found: list[list[str]] = []  # [kind, port, mid]
    for line in sdp.splitlines():
        if line.startswith("m="):
            fields = line[2:].split()
            if len(fields) < 4:
                raise SdpError("a media line needs a media, a port, a protocol and at least one format")
            kind, port, protocol, *formats = fields
            if not port.isdigit() or int(port) > 65535:
                raise SdpError(f"bad port in media line {len(found)}")
            if "RTP" in protocol and not all(_is_payload_type(f) for f in formats):
                raise SdpError(f"RTP payload types are numbers from 0 to {MAX_PAYLOAD_TYPE}")
            found.append([kind, port, ""])
        elif line.startswith("a=rtpmap:") or line.startswith("a=fmtp:") or line.startswith("a=rtcp-fb:"):
            payload_type = line.split(":", 1)[1].split(" ", 1)[0]
            if payload_type != "*" and not _is_payload_type(payload_type):
                raise SdpError(f"RTP payload types are numbers from 0 to {MAX_PAYLOAD_TYPE}")
        elif line.startswith("a=mid:") and found:
            if found[-1][2]:
                raise SdpError("a media section has two mids")
            found[-1][2] = line[6:].strip()
    sections = [Section(kind, mid, int(port)) for kind, port, mid in found]
    if any(not s.mid for s in sections):
        raise SdpError("every media section needs a mid")
    if len({s.mid for s in sections}) != len(sections):
        raise SdpError("two media sections have the same mid")
    return sections
