"""Prometheus metrics, read from the core's plain counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sfu.core import DropReason, MediaStats
from sfu.core.stats import FORWARDING_BUCKETS


class MediaCollector(Collector):
    def __init__(self, stats: MediaStats, census: Callable[[], tuple[int, int, int]]) -> None:
        self.stats = stats
        self.census = census  # classes, participants, published tracks

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, value, doc in (
            ("classe_rtp_received_packets", s.rtp_received, "RTP packets received from publishers"),
            ("classe_rtp_forwarded_packets", s.rtp_forwarded, "RTP packets forwarded to subscribers"),
            ("classe_rtp_received_bytes", s.bytes_received, "RTP bytes received"),
            ("classe_srtp_sent_bytes", s.bytes_forwarded, "SRTP bytes sent to subscribers"),
            ("classe_rtcp_received_packets", s.rtcp_received, "RTCP packets received"),
            ("classe_rtcp_sent_packets", s.rtcp_sent, "RTCP packets sent"),
            ("classe_nacks_received", s.nacks_received, "NACK messages received from subscribers"),
            ("classe_retransmitted_packets", s.retransmissions, "packets retransmitted from the cache"),
            ("classe_nacks_sent", s.nacks_sent, "NACK messages sent to publishers"),
            ("classe_keyframe_requests_sent", s.keyframe_requests_sent, "PLIs sent to publishers"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        drops = CounterMetricFamily("classe_dropped_packets", "packets dropped, by reason", labels=["reason"])
        for reason in DropReason:
            drops.add_metric([reason.name.lower()], s.drops[reason])
        yield drops
        cumulative = 0
        buckets = []
        for bound, count in zip(FORWARDING_BUCKETS, s.forwarding_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "classe_forwarding_seconds",
            "time from a media packet's arrival to its last copy sent",
            buckets=buckets,
            sum_value=s.forwarding_sum,
        )
        classes, participants, tracks = self.census()
        yield GaugeMetricFamily("classe_live_classes", "classes with participants", value=classes)
        yield GaugeMetricFamily("classe_participants", "connected participants", value=participants)
        yield GaugeMetricFamily("classe_published_tracks", "tracks being published", value=tracks)


def make_registry(stats: MediaStats, census: Callable[[], tuple[int, int, int]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MediaCollector(stats, census))
    return registry
