"""Simulcast offers and packets from a hostile client: refused clearly, bounded, counted."""

from __future__ import annotations

import pytest

from sfu.core import DropReason, MediaSession
from signaling.sdp import SdpError, media_sections, publisher_answer

from .rtp_helpers import rtp_packet
from .sim import EXT, VP8

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def section(kind: str, mid: str, *lines: str) -> str:
    return f"m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\n" + "".join(f"{line}\r\n" for line in lines)


SIMULCAST = ("a=rid:f send", "a=rid:q send", "a=rid:h send", "a=simulcast:send f;q;h")


@pytest.mark.parametrize(
    ("lines", "kind", "rids", "refused"),
    [
        (SIMULCAST, "video", ("q", "h", "f"), None),  # lowest first, whatever the offer's order
        (("a=rid:q send", "a=rid:f send", "a=simulcast:send q;~f"), "video", ("q", "f"), None),  # paused named too
        (("a=rid:q send", "a=rid:h send", "a=simulcast:send q,h"), "video", ("q", "h"), None),  # alternatives
        ((), "video", (), None),
        (SIMULCAST, "audio", None, "only video"),
        (("a=rid:x send", "a=simulcast:send x"), "video", None, "named q, h, f"),
        (("a=rid:q send", "a=rid:q send", "a=simulcast:send q;q"), "video", None, "twice"),
        (("a=rid:q send", "a=rid:h send", "a=simulcast:send q"), "video", None, "same encodings"),
        (("a=rid:q recv", "a=simulcast:send q"), "video", None, "a=rid:<id> send"),
        (("a=rid:q send",), "video", None, "same encodings"),
        (("a=simulcast:recv q",), "video", None, "a=simulcast:send"),
        (("a=rid:q send", "a=simulcast:send q", "a=simulcast:send q"), "video", None, "two simulcast"),
    ],
)
def test_offer_rows(lines: tuple[str, ...], kind: str, rids: tuple[str, ...] | None, refused: str | None) -> None:
    sdp = HEAD + section(kind, "0", *lines)
    if refused is None:
        assert media_sections(sdp)[0].rids == rids
    else:
        with pytest.raises(SdpError, match=refused):
            media_sections(sdp)


def test_the_answer_gets_the_receive_lines_of_its_simulcast_sections_only() -> None:
    answer = HEAD + section("video", "0", "a=sendrecv") + section("audio", "1")
    out = publisher_answer(answer, {"0": ("q", "h", "f")})
    video, audio = out.split("m=audio")
    assert video.endswith("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n")
    assert "rid" not in audio and out.endswith("\r\n")
    assert publisher_answer(answer, {}) == answer


def test_unknown_rids_and_extra_ssrcs_are_dropped_and_counted() -> None:
    session = MediaSession()
    pub = session.create_transport("pub")
    producer = session.add_producer(pub, "cam", mid="0", codec=VP8, extensions=EXT, rids=("q", "h"))
    good = rtp_packet(1, 0, 111, extensions=[(4, b"0"), (5, b"q")])
    pub.receive_rtp(good, 0.0)
    assert producer.streams[0].ssrc == 111
    pub.receive_rtp(rtp_packet(1, 0, 222, extensions=[(4, b"0"), (5, b"x")]), 0.0)  # a rid not offered
    pub.receive_rtp(rtp_packet(1, 0, 333, extensions=[(4, b"0")]), 0.0)  # no rid at all
    assert session.stats.drops[DropReason.UNKNOWN_RID] == 2
    # Another SSRC claiming a rid already bound gains nothing: one SSRC per encoding.
    for ssrc in range(1000, 1100):
        pub.receive_rtp(rtp_packet(1, 0, ssrc, extensions=[(4, b"0"), (5, b"q")]), 0.0)
    assert session.stats.drops[DropReason.UNKNOWN_SSRC] == 100
    assert set(pub.streams) == {111}
