"""Loss recovery and keyframe timing, with a fake clock."""

from __future__ import annotations

from sfu.core.cache import PacketCache
from sfu.core.keyframe import KeyframeRequester
from sfu.core.nack import NackGenerator


def test_nack_retries_then_gives_up() -> None:
    nack = NackGenerator(retry_interval=0.05, max_tries=3, max_age=10.0)
    nack.on_packet(100, 0.0)
    nack.on_packet(103, 0.0)
    assert nack.missing == [101, 102]
    asked = [nack.poll(t / 100) for t in range(0, 30)]
    assert sum(1 for a in asked if a) == 3  # three tries, 50 ms apart
    assert asked[0] == [101, 102] and asked[5] == [101, 102]
    assert nack.missing == []  # given up after the third try


def test_nack_forgets_old_gaps_and_arrivals() -> None:
    nack = NackGenerator(max_age=0.5)
    nack.on_packet(1, 0.0)
    nack.on_packet(5, 0.0)
    nack.on_packet(3, 0.01)  # late arrival
    assert nack.missing == [2, 4]
    assert nack.poll(0.6) == [] and nack.missing == []


def test_nack_refuses_a_gap_too_large_to_chase() -> None:
    nack = NackGenerator(max_gap=100)
    nack.on_packet(1, 0.0)
    assert nack.on_packet(50, 0.0)
    assert not nack.on_packet(500, 0.0)
    assert nack.missing == []
    assert nack.on_packet(501, 0.0)


def test_keyframe_requests_pending_until_interval_ends() -> None:
    kf = KeyframeRequester(min_interval=0.5)
    assert kf.request(0.0)
    assert not kf.request(0.1)
    assert not kf.poll(0.4)
    assert kf.poll(0.5)
    assert not kf.poll(2.0)  # only once
    assert kf.request(2.0)


def test_packet_cache_is_a_ring() -> None:
    cache = PacketCache(4)
    for seq in range(10):
        cache.put(seq, bytes([seq]))
    assert cache.get(9) == b"\x09" and cache.get(6) == b"\x06"
    assert cache.get(5) is None and 5 not in cache
