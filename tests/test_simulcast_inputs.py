"""Simulcast offers and packets from a hostile client: refused clearly, bounded, counted."""

from __future__ import annotations

import itertools

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


def test_h264_simulcast_switches_on_the_target_streams_idr() -> None:
    # Where VP8 is not available a browser sends H.264 simulcast: no temporal layers, the switch
    # waits for an IDR (or SPS) of the target stream, and the subscriber's numbering stays whole.
    from sfu.core import Codec, HeaderExtensions
    from sfu.core.layered import LayeredConsumer

    h264 = Codec("video/H264", 102, 90000)
    session = MediaSession()
    pub = session.create_transport("pub")
    producer = session.add_producer(pub, "cam", mid="0", codec=h264, extensions=EXT, rids=("q", "f"))
    sub = session.create_transport("sub")
    ext = HeaderExtensions(mid=1)
    consumer = session.add_consumer(sub, producer, ssrc=9, payload_type=102, mid="0", extensions=ext)
    assert isinstance(consumer, LayeredConsumer)
    idr, delta = b"\x65\x88\x80", b"\x41\x9a\x00"  # NAL 5 (IDR slice), NAL 1 (non-IDR)
    sent: list[int] = []

    def packet(rid: str, ssrc: int, seq: int, payload: bytes) -> None:
        data = rtp_packet(seq, seq * 3000, ssrc, pt=102, payload=payload, extensions=[(4, b"0"), (5, rid.encode())])
        pub.receive_rtp(data, seq * 0.033)
        for _, rtp, _ in session.take_ready():
            sent.extend(int.from_bytes(p[2:4], "big") for p in rtp)

    consumer.set_layers(0, 0, 0.0)
    packet("q", 100, 1, idr)
    packet("f", 200, 1, idr)
    packet("q", 100, 2, delta)
    assert consumer.current_layers == (0, 0) and len(sent) == 2
    consumer.set_layers(1, 0, 0.1)
    packet("f", 200, 2, delta)  # not a keyframe: the switch waits, q goes on
    packet("q", 100, 3, delta)
    assert consumer.current_layers == (0, 0)
    packet("f", 200, 3, idr)
    assert consumer.current_layers == (1, 0)
    packet("q", 100, 4, delta)  # the former stream is no longer forwarded
    packet("f", 200, 4, delta)
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(sent)] == [1] * (len(sent) - 1), sent
