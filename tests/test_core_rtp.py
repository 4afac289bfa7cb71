import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.core.rtcp import (
    KeyframeRequest,
    Nack,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    build_nack,
    build_pli,
    build_receiver_report,
    build_remb,
    build_sender_report,
    parse_rtcp,
)
from sfu.core.rtp import find_extension, header_length, is_h264_keyframe, is_vp8_keyframe, read_mid
from sfu.core.seq import SeqExtender, seq_diff

from .rtp_helpers import VP8_DELTA, VP8_KEY, rtp_packet


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(1, 0, 1), (0, 1, -1), (0, 65535, 1), (65535, 0, -1), (100, 65500, 136), (32767, 0, 32767), (32768, 0, -32768)],
)
def test_seq_diff(a: int, b: int, diff: int) -> None:
    assert seq_diff(a, b) == diff


def test_seq_extender_across_wraparound_and_reordering() -> None:
    ext = SeqExtender()
    values = [ext.extend(s) for s in (65533, 65534, 65535, 1, 0, 2)]
    assert values == [v + 65533 + 0x10000 for v in (0, 1, 2, 4, 3, 5)]
    assert ext.highest == values[-1]


def test_header_length_and_extensions() -> None:
    pkt = rtp_packet(1, 2, 3, extensions=[(1, b"0"), (3, b"\x01\x02\x03")], payload=b"abc")
    hdr = header_length(pkt)
    assert pkt[hdr:] == b"abc"
    assert read_mid(pkt, 1) == "0"
    assert pkt[find_extension(pkt, 3) : find_extension(pkt, 3) + 3] == b"\x01\x02\x03"
    assert find_extension(pkt, 2) == -1


@pytest.mark.parametrize(
    "pkt",
    [
        b"",
        b"\x80" * 11,
        b"\x40" + b"\x00" * 11,
        b"\x90" + b"\x00" * 11,
        b"\x8f" + b"\x00" * 20,
        b"\xa0" + b"\x00" * 11 + b"\x05",
    ],
)
def test_header_length_rejects_malformed(pkt: bytes) -> None:
    assert header_length(pkt) == -1


@given(st.binary(max_size=64))
def test_header_parsing_never_raises(data: bytes) -> None:
    hdr = header_length(data)
    if hdr >= 0:
        find_extension(data, 1)
        read_mid(data, 1)
        is_vp8_keyframe(data, hdr)
        is_h264_keyframe(data, hdr)


def test_keyframe_detection() -> None:
    assert is_vp8_keyframe(VP8_KEY, 0)
    assert not is_vp8_keyframe(VP8_DELTA, 0)
    assert not is_vp8_keyframe(b"\x00\x00", 0)  # not the start of a partition
    assert is_h264_keyframe(b"\x65\x88", 0)  # IDR
    assert is_h264_keyframe(b"\x67\x42", 0)  # SPS
    assert not is_h264_keyframe(b"\x41\x9a", 0)  # non-IDR slice
    assert is_h264_keyframe(b"\x7c\x85\x00", 0)  # FU-A start of IDR
    assert not is_h264_keyframe(b"\x7c\x05\x00", 0)  # FU-A continuation
    assert is_h264_keyframe(b"\x78\x00\x02\x67\x42\x00\x02\x68\xce", 0)  # STAP-A with SPS


def test_rtcp_roundtrip() -> None:
    block = ReportBlock(5, 12, -3, 70000, 40, 1234, 99)
    data = (
        build_sender_report(1, 0x1122334455667788, 9000, 10, 1000)
        + build_receiver_report(2, [block])
        + build_nack(3, 4, [100, 101, 116, 117, 65535, 0])
        + build_pli(3, 4)
        + build_remb(3, 1_234_567, [4, 5])
    )
    packets = parse_rtcp(data)
    assert packets[0] == SenderReport(1, 0x1122334455667788, 9000, 10, 1000, [])
    assert packets[1] == ReceiverReport(2, [block])
    assert isinstance(packets[2], Nack) and sorted(packets[2].lost) == [0, 100, 101, 116, 117, 65535]
    assert packets[3] == KeyframeRequest(3, 4)
    assert isinstance(packets[4], Remb) and packets[4].ssrcs == [4, 5]
    assert abs(packets[4].bitrate - 1_234_567) < 1_234_567 / 1000


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc8",
        b"\x80\xc8\x00\x06" + b"\x00" * 8,
        b"\x40\xc9\x00\x01\x00\x00\x00\x00",
        b"\x81\xc9\x00\x01\x00\x00\x00\x00",
    ],
)
def test_rtcp_rejects_malformed(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(data)


@given(st.binary(max_size=128))
def test_rtcp_parser_only_raises_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass
