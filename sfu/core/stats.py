"""Counters the core keeps as plain integers; the metrics exporter reads them on scrape.

Incrementing a prometheus counter takes a lock; a per-packet path cannot afford that.
"""

from __future__ import annotations

import bisect
import enum

# Upper bounds, in seconds, of the forwarding-time histogram: one received packet, all its copies sent.
FORWARDING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, float("inf"))


class DropReason(enum.IntEnum):
    """Why a packet was not forwarded: every drop is counted under one of these."""

    MALFORMED_RTP = 0
    MALFORMED_RTCP = 1
    OVERSIZED = 2
    UNKNOWN_SSRC = 3
    UNEXPECTED_PAYLOAD_TYPE = 4
    SRTP_ERROR = 5
    NOT_CONNECTED = 6
    WAITING_FOR_KEYFRAME = 7
    BEFORE_STREAM_START = 8
    DUPLICATE = 9
    PADDING_ONLY = 10
    NACK_CACHE_MISS = 11
    PAUSED = 12
    MUTED = 13
    NACK_REPEATED = 14  # a retransmission asked again within a round trip (or twice in one NACK)
    NACK_OVER_LIMIT = 15  # beyond the retransmissions one NACK may cause
    NACK_OVER_BUDGET = 16  # beyond the subscriber's retransmission bitrate
    UNVALIDATED_ADDRESS = 17  # DTLS or SRTP from an address no ICE check validated
    TEMPORAL_LAYER = 18  # a frame of a temporal layer above the one a subscriber is given
    UNKNOWN_RID = 19  # a simulcast packet whose rid the offer did not announce
    SWITCHED_AWAY = 20  # held by a subscriber's pacer when a switch down made it useless
    UNROUTABLE_STUN = 21  # STUN on the shared media port for no connection (username, transaction)
    SEND_BUFFER_FULL = 22  # the media socket's send buffer was full (EAGAIN, ENOBUFS): the rest of a batch
    SEND_FAILED = 23  # the kernel refused one datagram (a firewall's EPERM, an unreachable network)


class MediaStats:
    """Totals for one server process, shared by every class's media session."""

    __slots__ = (
        "bytes_forwarded",
        "bytes_received",
        "drops",
        "forwarding_counts",
        "forwarding_sum",
        "keyframe_requests_sent",
        "layer_switches",
        "nacks_received",
        "nacks_sent",
        "probe_packets",
        "retransmissions",
        "rtcp_received",
        "rtcp_sent",
        "rtp_forwarded",
        "rtp_received",
    )

    def __init__(self) -> None:
        self.rtp_received = 0
        self.rtp_forwarded = 0
        self.bytes_received = 0
        self.bytes_forwarded = 0
        self.rtcp_received = 0
        self.rtcp_sent = 0
        self.nacks_received = 0
        self.retransmissions = 0
        self.nacks_sent = 0
        self.keyframe_requests_sent = 0
        self.layer_switches = 0  # a layered consumer started forwarding another layer
        self.probe_packets = 0  # padding sent to find out whether a subscriber's link has room
        self.drops = [0] * len(DropReason)
        self.forwarding_counts = [0] * len(FORWARDING_BUCKETS)
        self.forwarding_sum = 0.0

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.drops[reason] += count

    def observe_forwarding(self, seconds: float) -> None:
        """Time from a packet's arrival to its last copy sent: the latency the server adds."""
        self.forwarding_counts[bisect.bisect_left(FORWARDING_BUCKETS, seconds)] += 1
        self.forwarding_sum += seconds
