"""A first look at a client's SDP offer, before aiortc builds anything from it.

aiortc creates a transceiver (and, once connected, the server a producer) for every media section
it is given, and its parser fails with assertion or index errors on malformed lines. The server
reads the media lines itself first, so that an offer it will refuse costs nothing and every
refusal is a clear `bad_sdp`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.core.rtp import URI_TRANSPORT_CC

MAX_PAYLOAD_TYPE = 127  # RTP payload types are 7 bits (RFC 3550)
# The simulcast encodings a camera may send, lowest first (quarter, half, full resolution):
# docs/protocol.md, "Simulcast and layers".
SIMULCAST_RIDS = ("q", "h", "f")


class SdpError(ValueError):
    """The offer is not one the server can use; the message says why, for the client's developer."""


@dataclass(frozen=True, slots=True)
class Section:
    kind: str  # the media of the m= line: audio, video, application, ...
    mid: str
    port: int
    rids: tuple[str, ...] = ()  # simulcast encodings offered, lowest first; () for one stream


def _is_payload_type(text: str) -> bool:
    return text.isdigit() and int(text) <= MAX_PAYLOAD_TYPE


def media_sections(sdp: str) -> list[Section]:
    """The offer's media sections in order; raises SdpError on a malformed media line or mid."""
    found: list[list[str]] = []  # [kind, port, mid]
    rids: list[list[str]] = []  # per section: the a=rid ids
    simulcast: list[str | None] = []  # per section: the a=simulcast send list
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
            rids.append([])
            simulcast.append(None)
        elif line.startswith("a=rtpmap:") or line.startswith("a=fmtp:") or line.startswith("a=rtcp-fb:"):
            payload_type = line.split(":", 1)[1].split(" ", 1)[0]
            if payload_type != "*" and not _is_payload_type(payload_type):
                raise SdpError(f"RTP payload types are numbers from 0 to {MAX_PAYLOAD_TYPE}")
        elif line.startswith("a=mid:") and found:
            if found[-1][2]:
                raise SdpError("a media section has two mids")
            found[-1][2] = line[6:].strip()
        elif line.startswith("a=rid:") and found:
            fields = line[6:].split()
            if len(fields) < 2 or fields[1] != "send":
                raise SdpError("a rid must be offered as 'a=rid:<id> send'")
            rids[-1].append(fields[0])
        elif line.startswith("a=simulcast:") and found:
            if simulcast[-1] is not None:
                raise SdpError("a media section has two simulcast lines")
            fields = line[12:].split()
            if len(fields) != 2 or fields[0] != "send":
                raise SdpError("simulcast must be offered as 'a=simulcast:send <rids>'")
            simulcast[-1] = fields[1]
    sections = [
        Section(kind, mid, int(port), _simulcast_rids(kind, offered, listed))
        for (kind, port, mid), offered, listed in zip(found, rids, simulcast, strict=True)
    ]
    if any(not s.mid for s in sections):
        raise SdpError("every media section needs a mid")
    if len({s.mid for s in sections}) != len(sections):
        raise SdpError("two media sections have the same mid")
    return sections


def _simulcast_rids(kind: str, offered: list[str], listed: str | None) -> tuple[str, ...]:
    """The rids of one section, lowest first; raises SdpError unless they are a subset of
    SIMULCAST_RIDS, each once, on video, named by both the rid lines and the simulcast line."""
    if not offered and listed is None:
        return ()
    if kind != "video":
        raise SdpError("only video may be sent in simulcast")
    # "q;h;f", alternatives "q,h" and paused "~q" are read as the rids they name.
    named = [rid.lstrip("~") for group in (listed or "").split(";") for rid in group.split(",") if rid]
    if sorted(named) != sorted(offered):
        raise SdpError("the simulcast line and the rid lines must name the same encodings")
    if len(set(offered)) != len(offered):
        raise SdpError("a rid is offered twice")
    unknown = set(offered) - set(SIMULCAST_RIDS)
    if unknown:
        raise SdpError(f"the simulcast encodings are named {', '.join(SIMULCAST_RIDS)}, lowest first")
    return tuple(rid for rid in SIMULCAST_RIDS if rid in offered)


def publisher_answer(answer: str, rids: dict[str, tuple[str, ...]]) -> str:
    """The answer to a publisher as it must reach the browser: each simulcast section with its
    receive lines (a=rid:<id> recv, a=simulcast:recv), which aiortc does not write (without them a
    browser sends one encoding only), and no transport-wide congestion control: the server sends a
    publisher REMB, not transport feedback, and a browser that negotiated it would wait for that
    feedback and never raise its bitrate."""
    answer = "".join(
        line
        for line in answer.splitlines(keepends=True)
        if not (line.startswith("a=extmap:") and URI_TRANSPORT_CC in line)
        and not (line.startswith("a=rtcp-fb:") and line.rstrip().endswith(" transport-cc"))
    )
    if not any(rids.values()):
        return answer
    out: list[str] = []
    section: tuple[str, ...] = ()
    for line in answer.split("\r\n"):
        if line.startswith("m=") and section:
            out += _receive_lines(section)
            section = ()
        if line.startswith("a=mid:"):
            section = rids.get(line[6:].strip(), ())
        if line == "" and section:
            out += _receive_lines(section)
            section = ()
        out.append(line)
    return "\r\n".join(out)


def _receive_lines(rids: tuple[str, ...]) -> list[str]:
    return [*(f"a=rid:{rid} recv" for rid in rids), "a=simulcast:recv " + ";".join(rids)]
