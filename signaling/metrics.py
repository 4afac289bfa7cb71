"""Prometheus metrics, read from the core's plain counters at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sfu.adapter.ice import ICE_CONNECT_BUCKETS, IceOutcomes
from sfu.core import DropReason, MediaStats
from sfu.core.stats import FORWARDING_BUCKETS

from .directory import ClassDirectory, NodeState
from .events import ClassEvents, JoinResult
from .exposition import Requests
from .tokens import Role

# Per live class: its id, the bitrate its subscribers are allocated and estimated to take, and
# the simulcast layers its publishers were told to stop (dynacast).
Bandwidth = Callable[[], Iterable[tuple[str, int, int, int]]]
# The shedding level, how often it was raised, the subscriptions it holds, kernel drops at the media port.
Load = Callable[[], tuple[int, int, int, int]]
# Whether the node drains (takes no new class) and whether it stops (SIGTERM).
NodeFlags = Callable[[], tuple[bool, bool]]
# Participants in this process's classes by role, and the people waiting (lobby, or for a teacher).
Headcount = Callable[[], tuple[Mapping[str, int], int]]


class MediaCollector(Collector):
    def __init__(
        self,
        stats: MediaStats,
        census: Callable[[], tuple[int, int, int]],
        bandwidth: Bandwidth | None = None,
        ice: IceOutcomes | None = None,
        load: Load | None = None,
        node: NodeFlags | None = None,
    ) -> None:
        self.stats = stats
        self.census = census  # classes, participants, published tracks
        self.bandwidth = bandwidth
        self.ice = ice
        self.load = load
        self.node = node

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
            ("classe_layer_switches", s.layer_switches, "simulcast or temporal layer switches of subscriptions"),
            ("classe_probe_packets", s.probe_packets, "padding packets sent to probe subscribers' links"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        drops = CounterMetricFamily("classe_dropped_packets", "packets dropped, by reason", labels=["reason"])
        for reason in DropReason:
            drops.add_metric([reason.name.lower()], s.drops[reason])
        yield drops
        yield _histogram(
            "classe_forwarding_seconds",
            "time from a media packet's arrival to its last copy sent",
            FORWARDING_BUCKETS,
            s.forwarding_counts,
            s.forwarding_sum,
        )
        if self.ice is not None:
            yield from _ice_metrics(self.ice)
        if self.load is not None:
            level, raised, shed, kernel_drops = self.load()
            yield GaugeMetricFamily(
                "classe_overload_level",
                "what the process sheds to keep up: 0 nothing, 1 thumbnails, 2 students' cameras, "
                "3 students' screens and microphones but the speaker's, 4-7 the teacher's camera "
                "to one more quarter of the subscribers each",
                value=level,
            )
            yield CounterMetricFamily("classe_overload_raises", "times the shedding level was raised", value=raised)
            yield GaugeMetricFamily(
                "classe_shed_subscriptions", "subscriptions held because the process is overloaded", value=shed
            )
            yield CounterMetricFamily(
                "classe_media_socket_drops",
                "datagrams the kernel dropped at the shared media port (its receive buffer was full)",
                value=kernel_drops,
            )
        if self.node is not None:
            draining, stopping = self.node()
            yield GaugeMetricFamily(
                "classe_node_draining",
                "1 while this node takes no new class (classe drain, or stopping)",
                value=draining,
            )
            yield GaugeMetricFamily(
                "classe_node_stopping",
                "1 once this node was told to stop (SIGTERM) and its participants to rejoin",
                value=stopping,
            )
        classes, participants, tracks = self.census()
        yield GaugeMetricFamily("classe_live_classes", "classes with participants", value=classes)
        yield GaugeMetricFamily("classe_participants", "connected participants", value=participants)
        yield GaugeMetricFamily("classe_published_tracks", "tracks being published", value=tracks)
        if self.bandwidth is not None:
            allocated = GaugeMetricFamily(
                "classe_allocated_bitrate", "bits/s the allocator gives a class's subscribers", labels=["class"]
            )
            estimated = GaugeMetricFamily(
                "classe_estimated_bitrate",
                "bits/s a class's subscribers' links are estimated to take",
                labels=["class"],
            )
            paused = GaugeMetricFamily(
                "classe_paused_layers", "simulcast layers stopped at the publisher (dynacast)", labels=["class"]
            )
            for class_id, used, estimate, stopped in self.bandwidth():
                allocated.add_metric([class_id], used)
                estimated.add_metric([class_id], estimate)
                paused.add_metric([class_id], stopped)
            yield allocated
            yield estimated
            yield paused


class DirectoryCollector(Collector):
    """This node's name, and the nodes the class directory knows, by state."""

    def __init__(self, directory: ClassDirectory) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        d = self.directory
        info = GaugeMetricFamily("classe_node_info", "this node: its id, its directory", labels=["node", "directory"])
        info.add_metric([d.node_id, d.kind], 1)
        yield info
        nodes = GaugeMetricFamily(
            "classe_directory_nodes", "nodes with a live lease in the class directory, by state", labels=["state"]
        )
        seen = [node.state.value for node in d.nodes()]
        for state in NodeState:
            nodes.add_metric([state.value], seen.count(state.value))
        yield nodes
        malformed = GaugeMetricFamily(
            "classe_directory_malformed_nodes", "node descriptions in the directory that did not parse (set aside)"
        )
        malformed.add_metric([], d.malformed_nodes)
        yield malformed
        dropped = CounterMetricFamily(
            "classe_directory_dropped_commands", "commands from other nodes dropped as malformed"
        )
        dropped.add_metric([], d.dropped_commands)
        yield dropped


class ClassCollector(Collector):
    """The class events (signaling/events.py) as counters, and who is in the classes by role."""

    def __init__(self, events: ClassEvents, headcount: Headcount) -> None:
        self.events = events
        self.headcount = headcount

    def collect(self) -> Iterator[Metric]:
        e = self.events
        joins = CounterMetricFamily(
            "classe_joins", "join messages by what they got first: joined, waiting, refused", labels=["result"]
        )
        for result in JoinResult:
            joins.add_metric([result.value], e.joins[result])
        yield joins
        yield _by_label(
            "classe_join_refusals", "joins refused, and people waiting turned away, by reason", "reason", e.refusals
        )
        yield CounterMetricFamily(
            "classe_refusal_lines_unlogged",
            "join refusals counted but not logged: over the budget of 60 lines per reason, then one a second",
            value=e.unlogged,
        )
        yield _by_label("classe_departures", "participants who left a class, by reason", "reason", e.departures)
        yield CounterMetricFamily("classe_classes_opened", "classes opened on this node", value=e.opened)
        yield _by_label("classe_classes_ended", "classes ended on this node, by reason", "reason", e.ended)
        roles, waiting = self.headcount()
        by_role = GaugeMetricFamily("classe_participants_by_role", "connected participants by role", labels=["role"])
        for role in Role:
            by_role.add_metric([role.value], roles.get(role.value, 0))
        yield by_role
        yield GaugeMetricFamily(
            "classe_waiting_participants",
            "people waiting in a lobby, or for a teacher to open the class",
            value=waiting,
        )


@dataclass
class ServiceCounts:
    """What the web side counts: HTTP answers, and what the retention purges deleted."""

    requests: Requests = field(default_factory=Counter)
    purged: Counter[str] = field(default_factory=Counter)  # by rule (signaling/retention.py)
    purge_failures: int = 0


class ServiceCollector(Collector):
    def __init__(self, counts: ServiceCounts, mails: Counter[str]) -> None:
        self.counts = counts
        self.mails = mails

    def collect(self) -> Iterator[Metric]:
        c = self.counts
        requests = CounterMetricFamily(
            "classe_http_requests",
            "HTTP answers by route pattern, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(c.requests.items()):
            requests.add_metric([route, method, status], count)
        yield requests
        mails = CounterMetricFamily("classe_mails", "mails handed to the SMTP server or the outbox", labels=["result"])
        for result in ("sent", "failed"):
            mails.add_metric([result], self.mails[result])
        yield mails
        yield _by_label("classe_purged", "rows and files the retention purges deleted, by rule", "rule", c.purged)
        yield CounterMetricFamily(
            "classe_purge_failures",
            "retention purges that failed (retried at the next interval)",
            value=c.purge_failures,
        )


def _by_label(name: str, doc: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _ice_metrics(ice: IceOutcomes) -> Iterator[Metric]:
    outcomes = CounterMetricFamily(
        "classe_ice_connections",
        "peer connections whose ICE connected (by the kind of path: host, srflx, prflx, relay) or failed "
        "(by the best kind of candidate the client offered)",
        labels=["outcome", "candidate"],
    )
    for kind, count in sorted(ice.connected.items()):
        outcomes.add_metric(["connected", kind], count)
    for kind, count in sorted(ice.failed.items()):
        outcomes.add_metric(["failed", kind], count)
    yield outcomes
    relayed = CounterMetricFamily(
        "classe_ice_relay_connections",
        "relayed peer connections by how the browser reaches the TURN server (udp, tcp, tls), as it reports",
        labels=["protocol"],
    )
    for protocol, count in sorted(ice.relayed.items()):
        relayed.add_metric([protocol], count)
    yield relayed
    yield _histogram(
        "classe_ice_connect_seconds",
        "time from a peer connection's start to ICE connected",
        ICE_CONNECT_BUCKETS,
        ice.connect_counts,
        ice.connect_sum,
    )


def _histogram(name: str, doc: str, bounds: Sequence[float], counts: Sequence[int], total: float) -> Metric:
    """A histogram from plain per-bucket counts (the hot paths keep no prometheus objects)."""
    cumulative = 0
    buckets = []
    for bound, count in zip(bounds, counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def make_registry(
    stats: MediaStats,
    census: Callable[[], tuple[int, int, int]],
    bandwidth: Bandwidth | None = None,
    ice: IceOutcomes | None = None,
    load: Load | None = None,
    directory: ClassDirectory | None = None,
    node: NodeFlags | None = None,
    events: ClassEvents | None = None,
    headcount: Headcount | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MediaCollector(stats, census, bandwidth, ice, load, node))
    if events is not None and headcount is not None:
        registry.register(ClassCollector(events, headcount))
    if directory is not None:
        registry.register(DirectoryCollector(directory))
    return registry
