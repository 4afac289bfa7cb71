"""The media core driven with hand-made packets and a fake clock."""

from __future__ import annotations

import ast
import pathlib
import struct

import pytest

from sfu.core import Codec, DropReason, HeaderExtensions, MediaSession
from sfu.core.rtcp import (
    KeyframeRequest,
    Nack,
    ReceiverReport,
    Remb,
    build_nack,
    build_pli,
    build_remb,
    build_sender_report,
    parse_rtcp,
)
from sfu.core.rtp import RTP_HEADER, find_extension, header_length, read_mid

from .rtp_helpers import VP8_DELTA, VP8_KEY, rtp_packet

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97)
OPUS = Codec("audio/opus", 111, 48000)
PUB_EXT = HeaderExtensions(mid=4, audio_level=1, abs_send_time=2)
SUB_EXT = HeaderExtensions(mid=1, audio_level=2, abs_send_time=3)


def setup_session(codec: Codec = VP8, subscribers: int = 2):
    session = MediaSession()
    pub = session.create_transport("pub")
    producer = session.add_producer(pub, "p1", mid="0", codec=codec, extensions=PUB_EXT, ssrc=1111, rtx_ssrc=2222)
    subs = []
    for i in range(subscribers):
        t = session.create_transport(f"sub{i}")
        c = session.add_consumer(
            t,
            producer,
            ssrc=5000 + i,
            payload_type=100 + i,
            mid=str(i + 3),
            extensions=SUB_EXT,
            rtx_ssrc=6000 + i if codec.rtx_payload_type else None,
            rtx_payload_type=120 if codec.rtx_payload_type else None,
        )
        subs.append((t, c))
    return session, pub, producer, subs


def drain(session: MediaSession) -> None:
    for t in session.ready:
        t.outbox.clear()
        t.rtcp_outbox.clear()
    session.ready.clear()


def sent_rtcp(transport) -> list:  # type: ignore[no-untyped-def, type-arg]
    return [p for data in transport.rtcp_outbox for p in parse_rtcp(data)]


def fields(pkt: bytes) -> tuple[int, int, int, int]:
    _, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(pkt)
    return b1 & 0x7F, seq, ts, ssrc


def test_forwarding_rewrites_every_field_and_keeps_streams_continuous_across_wraparound() -> None:
    session, pub, producer, subs = setup_session()
    now = 0.0
    drain(session)
    seqs = [65533, 65534, 65535, 0, 1, 2]
    for i, seq in enumerate(seqs):
        payload = VP8_KEY if i == 0 else VP8_DELTA
        pub.receive_rtp(rtp_packet(seq, 4294967000 + i * 3000, 1111, extensions=[(4, b"0")], payload=payload), now)
        now += 0.033
    for index, (t, c) in enumerate(subs):
        assert len(t.outbox) == len(seqs)
        out = [fields(p) for p in t.outbox]
        assert {o[0] for o in out} == {100 + index}
        assert {o[3] for o in out} == {5000 + index}
        assert [(o[1] - out[0][1]) & 0xFFFF for o in out] == list(range(len(seqs)))
        assert [(o[2] - out[0][2]) & 0xFFFFFFFF for o in out] == [i * 3000 for i in range(len(seqs))]
        for p in t.outbox:
            assert read_mid(p, SUB_EXT.mid) == c.mid
            assert find_extension(p, SUB_EXT.abs_send_time) > 0
            assert p[header_length(p) :] in (VP8_KEY, VP8_DELTA)
    assert session.stats.rtp_forwarded == 2 * len(seqs)


def test_video_consumer_waits_for_a_keyframe_and_asks_for_one() -> None:
    session, pub, producer, subs = setup_session()
    # Creating the consumers sent one PLI (the second was rate limited and kept pending).
    assert [type(p) for p in sent_rtcp(pub)] == [KeyframeRequest]
    drain(session)
    pub.receive_rtp(rtp_packet(10, 0, 1111, payload=VP8_DELTA), 0.1)
    assert all(not t.outbox for t, _ in subs)
    assert session.stats.drops[DropReason.WAITING_FOR_KEYFRAME] == 2
    pub.receive_rtp(rtp_packet(11, 3000, 1111, payload=VP8_KEY), 0.2)
    assert all(len(t.outbox) == 1 for t, _ in subs)
    assert not any(c.forwarder.waiting for _, c in subs)


def test_keyframe_requests_are_rate_limited_but_not_lost() -> None:
    session, pub, producer, subs = setup_session(subscribers=1)
    drain(session)
    sub_t, consumer = subs[0]
    sub_t.receive_rtcp(build_pli(1, consumer.ssrc), 0.1)
    sub_t.receive_rtcp(build_pli(1, consumer.ssrc), 0.2)
    assert not pub.rtcp_outbox  # inside the 0.5 s interval: pending
    session.handle_timer(0.3)
    assert not pub.rtcp_outbox
    session.handle_timer(0.5)
    assert [type(p) for p in sent_rtcp(pub)] == [KeyframeRequest]
    drain(session)
    session.handle_timer(1.5)
    assert not any(isinstance(p, KeyframeRequest) for p in sent_rtcp(pub))


def test_subscriber_nack_is_answered_from_the_cache_as_rtx() -> None:
    session, pub, producer, subs = setup_session(subscribers=1)
    sub_t, consumer = subs[0]
    for seq in range(100, 110):
        pub.receive_rtp(
            rtp_packet(seq, seq * 3000, 1111, payload=VP8_KEY if seq == 100 else VP8_DELTA + bytes([seq])), 0.0
        )
    sent = {fields(p)[1]: p for p in sub_t.outbox}
    drain(session)
    lost = sorted(sent)[3]
    sub_t.receive_rtcp(build_nack(1, consumer.ssrc, [lost, (lost + 5000) & 0xFFFF]), 0.1)
    assert len(sub_t.outbox) == 1
    rtx = sub_t.outbox[0]
    pt, _, ts, ssrc = fields(rtx)
    assert (pt, ssrc) == (120, 6000)
    hdr = header_length(rtx)
    assert struct.unpack_from("!H", rtx, hdr)[0] == lost
    assert rtx[hdr + 2 :] == sent[lost][header_length(sent[lost]) :]
    assert ts == fields(sent[lost])[2]
    assert session.stats.drops[DropReason.NACK_CACHE_MISS] == 1
    assert consumer.retransmissions == 1


def test_gap_from_publisher_is_nacked_until_it_arrives_via_rtx() -> None:
    session, pub, producer, subs = setup_session(subscribers=1)
    drain(session)
    sub_t, _ = subs[0]
    pub.receive_rtp(rtp_packet(1, 0, 1111, payload=VP8_KEY), 0.0)
    pub.receive_rtp(rtp_packet(4, 9000, 1111, payload=VP8_DELTA), 0.01)
    session.handle_timer(0.02)
    nacks = [p for p in sent_rtcp(pub) if isinstance(p, Nack)]
    assert nacks and sorted(nacks[0].lost) == [2, 3] and nacks[0].media_ssrc == 1111
    drain(session)
    # seq 2 and 3 arrive as RTX (original seq in the first two payload bytes)
    for seq in (2, 3):
        pub.receive_rtp(rtp_packet(50 + seq, seq * 3000, 2222, pt=97, payload=struct.pack("!H", seq) + VP8_DELTA), 0.03)
    assert len(sub_t.outbox) == 2
    assert [fields(p)[0] for p in sub_t.outbox] == [100, 100]
    session.handle_timer(0.2)
    assert not [p for p in sent_rtcp(pub) if isinstance(p, Nack)]
    # a duplicate of an already forwarded packet is dropped
    pub.receive_rtp(rtp_packet(52, 2 * 3000, 2222, pt=97, payload=struct.pack("!H", 2) + VP8_DELTA), 0.3)
    assert session.stats.drops[DropReason.DUPLICATE] == 1


def test_ssrc_learned_from_mid_when_sdp_did_not_announce_it() -> None:
    session = MediaSession()
    pub = session.create_transport("pub")
    producer = session.add_producer(pub, "a", mid="1", codec=OPUS, extensions=PUB_EXT)
    sub = session.create_transport("sub")
    session.add_consumer(sub, producer, ssrc=9, payload_type=109, mid="0", extensions=SUB_EXT)
    pub.receive_rtp(rtp_packet(7, 960, 4242, pt=111, extensions=[(4, b"1"), (1, b"\x85")], payload=b"opus"), 0.0)
    assert producer.ssrc == 4242
    assert len(sub.audio_outbox) == 1  # audio apart from video: never held by the pacer
    out = sub.audio_outbox[0]
    assert out[find_extension(out, SUB_EXT.audio_level)] == 0x85
    pub.receive_rtp(rtp_packet(8, 960, 999, pt=111, extensions=[(4, b"7")]), 0.0)
    assert session.stats.drops[DropReason.UNKNOWN_SSRC] == 1


def test_pause_and_resume_keep_the_output_continuous() -> None:
    session, pub, producer, subs = setup_session(OPUS, subscribers=1)
    sub_t, consumer = subs[0]
    pub.receive_rtp(rtp_packet(1, 0, 1111, pt=111), 0.0)
    pub.receive_rtp(rtp_packet(2, 960, 1111, pt=111), 0.02)
    consumer.pause()
    pub.receive_rtp(rtp_packet(3, 1920, 1111, pt=111), 0.04)
    assert session.stats.drops[DropReason.PAUSED] == 1
    consumer.resume(1.0)
    pub.receive_rtp(rtp_packet(500, 480000, 1111, pt=111), 1.0)
    out = [fields(p) for p in sub_t.audio_outbox]
    assert len(out) == 3
    assert (out[2][1] - out[1][1]) & 0xFFFF == 1
    assert abs(((out[2][2] - out[1][2]) & 0xFFFFFFFF) - 0.98 * 48000) < 10


def test_a_successor_on_the_same_ssrc_continues_the_numbering() -> None:
    session, pub, producer, subs = setup_session(OPUS, subscribers=1)
    sub_t, consumer = subs[0]
    pub.receive_rtp(rtp_packet(1, 0, 1111, pt=111), 0.0)
    last = fields(sub_t.audio_outbox[-1])
    session.remove_consumer(consumer)
    seq, ts = consumer.successor_start(0.5)
    successor = session.add_consumer(
        sub_t,
        producer,
        ssrc=consumer.ssrc,
        payload_type=100,
        mid="3",
        extensions=SUB_EXT,
        initial_seq=seq,
        initial_ts=ts,
    )
    pub.receive_rtp(rtp_packet(2, 960, 1111, pt=111), 0.5)
    first = fields(sub_t.audio_outbox[-1])
    assert successor.ssrc == first[3] == last[3]
    assert (first[1] - last[1]) & 0xFFFF == 1
    assert (first[2] - last[2]) & 0xFFFFFFFF == 24000


def test_receiver_reports_remb_and_translated_sender_reports() -> None:
    session, pub, producer, subs = setup_session(subscribers=1)
    sub_t, consumer = subs[0]
    drain(session)
    for seq in (1, 2, 4):  # seq 3 lost
        pub.receive_rtp(rtp_packet(seq, seq * 3000, 1111, payload=VP8_KEY), seq * 0.01)
    sub_t.receive_rtcp(build_remb(1, 800_000, [consumer.ssrc]), 0.1)
    assert sub_t.remb == 800_000
    session.handle_timer(1.0)
    packets = sent_rtcp(pub)
    report = next(p for p in packets if isinstance(p, ReceiverReport))
    assert report.reports[0].packets_lost == 1 and report.reports[0].ssrc == 1111
    remb = next(p for p in packets if isinstance(p, Remb))
    assert remb.bitrate == 1_500_000  # the publisher's cap: a subscriber's own estimate never lowers it
    pub.receive_rtcp(build_sender_report(1111, 1 << 40, 12000, 3, 30), 1.1)
    sr = parse_rtcp(sub_t.rtcp_outbox[-1])[0]
    assert sr.ssrc == consumer.ssrc  # type: ignore[union-attr]
    assert sr.rtp_timestamp == (12000 + consumer.ts_offset) & 0xFFFFFFFF  # type: ignore[union-attr]


def test_sessions_are_isolated_and_cleanup_leaves_nothing() -> None:
    session, pub, producer, subs = setup_session()
    other = MediaSession()
    stranger = other.create_transport("x")
    with pytest.raises(ValueError):
        other.add_consumer(stranger, producer, ssrc=1, payload_type=96, mid="0", extensions=SUB_EXT)
    with pytest.raises(ValueError):
        session.add_consumer(stranger, producer, ssrc=1, payload_type=96, mid="0", extensions=SUB_EXT)
    session.close_transport(pub)
    assert not session.producers and all(not t.consumers for t, _ in subs)
    for t, _ in subs:
        session.close_transport(t)
    assert not session.transports


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80",
        b"\x80\x60" + b"\x00" * 10,
        b"\x80" * 1600,
        rtp_packet(1, 1, 1111)[:11],
        b"\x90\x60" + b"\x00" * 10 + b"\xbe\xde\x00\x09",
    ],
)
def test_malformed_packets_are_dropped_and_counted(data: bytes) -> None:
    session, pub, _, subs = setup_session()
    drain(session)
    pub.receive_rtp(data, 0.0)
    pub.receive_rtcp(data, 0.0)
    assert not session.ready
    assert sum(session.stats.drops) >= 2


CORE = pathlib.Path(__file__).parent.parent / "sfu" / "core"


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_is_sans_io(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {
        "asyncio",
        "socket",
        "time",
        "aiortc",
        "aioice",
        "aiohttp",
        "uvloop",
        "selectors",
        "threading",
    }
