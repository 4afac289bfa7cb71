"""A subscriber's NACKs cannot make the core send more than it could have lost (fake clock, no sockets)."""

from __future__ import annotations

import struct

from sfu.core import Codec, Consumer, DropReason, HeaderExtensions, MediaSession, Transport
from sfu.core.consumer import DEFAULT_RTT, MAX_RETRANSMISSIONS_PER_NACK, RETRANSMIT_SLACK
from sfu.core.rtcp import MAX_NACK_LOST, ReportBlock, build_nack, build_receiver_report, parse_rtcp

from .rtp_helpers import VP8_DELTA, VP8_KEY, rtp_packet

VP8 = Codec("video/VP8", 96, 90000, rtx_payload_type=97)
EXT = HeaderExtensions(mid=1, abs_send_time=2)
PAYLOAD = 1000  # bytes of VP8 payload per packet
RATE = 200_000  # bits per second of retransmission budget in these tests: 25,000 bytes


def setup(packets: int = 600, rate: int = RATE) -> tuple[MediaSession, Transport, Consumer, list[int]]:
    """One publisher, one subscriber, `packets` forwarded at t=0; returns the output sequence numbers."""
    session = MediaSession(retransmission_bitrate=rate)
    pub = session.create_transport("pub")
    producer = session.add_producer(pub, "p", mid="0", codec=VP8, extensions=EXT, ssrc=1111)
    sub = session.create_transport("sub")
    consumer = session.add_consumer(
        sub, producer, ssrc=5000, payload_type=96, mid="0", extensions=EXT, rtx_ssrc=6000, rtx_payload_type=97
    )
    for seq in range(packets):
        payload = (VP8_KEY if seq == 0 else VP8_DELTA) + bytes(PAYLOAD - 5)
        pub.receive_rtp(rtp_packet(seq, seq * 3000, 1111, payload=payload), 0.0)
    out = [struct.unpack_from("!H", p, 2)[0] for p in sub.outbox]
    assert len(out) == packets
    drain(session)
    return session, sub, consumer, out


def drain(session: MediaSession) -> int:
    """Empty the outboxes; the number of RTP packets that were queued."""
    queued = 0
    for t in session.ready:
        queued += len(t.outbox)
        t.outbox.clear()
        t.rtcp_outbox.clear()
    session.ready.clear()
    return queued


def nack(sub: Transport, consumer: Consumer, lost: list[int], now: float) -> int:
    sub.receive_rtcp(build_nack(9, consumer.ssrc, lost), now)
    return drain(sub.session)


def test_a_packet_is_sent_again_at_most_once_per_round_trip() -> None:
    session, sub, consumer, out = setup()
    drops = session.stats.drops
    assert nack(sub, consumer, [out[10], out[11]], 1.0) == 2
    assert nack(sub, consumer, [out[10]], 1.05) == 0  # within the default round trip
    assert drops[DropReason.NACK_REPEATED] == 1
    assert nack(sub, consumer, [out[10]], 1.0 + DEFAULT_RTT + RETRANSMIT_SLACK + 0.001) == 1
    assert consumer.retransmissions == 3


def test_a_sequence_repeated_in_one_nack_is_sent_once() -> None:
    session, sub, consumer, out = setup()
    lost = [out[20]] * 40 + [out[21]]
    consumer.on_nack(lost, 1.0)
    assert drain(session) == 2
    assert session.stats.drops[DropReason.NACK_REPEATED] == 39


def test_the_round_trip_comes_from_the_subscribers_receiver_reports() -> None:
    session, sub, consumer, out = setup()
    ntp = 0x0123456789ABCDEF
    consumer.on_sender_report(ntp, 1000, 2.0)
    report = ReportBlock(consumer.ssrc, 0, 0, 0, 0, (ntp >> 16) & 0xFFFFFFFF, int(0.010 * 65536))
    sub.receive_rtcp(build_receiver_report(9, [report]), 2.05)
    assert consumer.rtt is not None and abs(consumer.rtt - 0.04) < 0.001
    drain(session)
    assert nack(sub, consumer, [out[5]], 3.0) == 1
    assert nack(sub, consumer, [out[5]], 3.04) == 0
    assert nack(sub, consumer, [out[5]], 3.05) == 1  # 40 ms + 5 ms later: the first one may be lost too


def test_one_nack_causes_at_most_the_cap() -> None:
    session, sub, consumer, out = setup(rate=100_000_000)
    assert nack(sub, consumer, out[:300], 1.0) == MAX_RETRANSMISSIONS_PER_NACK
    assert session.stats.drops[DropReason.NACK_OVER_LIMIT] == 300 - MAX_RETRANSMISSIONS_PER_NACK


def test_a_huge_nack_is_read_only_up_to_the_limit() -> None:
    fci = struct.pack("!HH", 0, 0xFFFF) * 100  # 100 x 17 sequence numbers
    data = struct.pack("!BBHII", 0x81, 205, 2 + len(fci) // 4, 9, 5000) + fci
    (parsed,) = parse_rtcp(data)
    assert MAX_NACK_LOST <= len(parsed.lost) < MAX_NACK_LOST + 17  # type: ignore[union-attr]
    assert len(parsed.lost) + parsed.excess == 1700  # type: ignore[union-attr]


def test_retransmissions_stay_within_the_subscribers_bitrate_budget() -> None:
    session, sub, consumer, out = setup(packets=1000)
    budget = RATE // 8
    # All at once: one second of budget, no more.
    first = nack(sub, consumer, out[:100], 1.0)
    assert first == budget // (PAYLOAD + 12)
    assert session.stats.drops[DropReason.NACK_OVER_BUDGET] == 100 - first
    # Half a second later, what was left and half a second of budget more.
    left = budget - first * (PAYLOAD + 12)
    assert nack(sub, consumer, out[100:200], 1.5) == (left + budget // 2) // (PAYLOAD + 12)


def test_a_nack_storm_is_bounded_by_the_budget() -> None:
    """The attack: ~278 NACKs a second, each asking for the last 500 packets again."""
    session, sub, consumer, out = setup(packets=1000)
    sent = 0
    now = 1.0
    for _ in range(1000):  # 3.6 s
        now += 0.0036
        sent += nack(sub, consumer, out[-500:], now)
    sent_bytes = sent * (PAYLOAD + 12)
    assert sent_bytes <= RATE / 8 * (3.6 + 1)
    drops = session.stats.drops
    refused = drops[DropReason.NACK_REPEATED] + drops[DropReason.NACK_OVER_BUDGET] + drops[DropReason.NACK_OVER_LIMIT]
    assert refused + sent == 1000 * 500
