"""A subscription with layers: a simulcast stream and a VP8 temporal layer chosen per subscriber.

The allocator sets the target (`set_layers`); the `LayeredForwarder` decides packet by packet;
this consumer carries the decision out so that the subscriber sees one continuous stream: sequence
numbers without holes (dropped frames are numbered as dropped), timestamps that continue across a
switch of stream, and picture ids / TL0PICIDX made continuous too, since the decoder tracks
references by them.
"""

from __future__ import annotations

from .consumer import HISTORY_SIZE, Consumer
from .events import ConsumerLayerChanged
from .forwarding import FORWARD, SKIP, SWITCH, LayeredForwarder
from .packet import RtpPacket
from .stats import DropReason
from .vp8 import IdRewriter, Vp8Descriptor, parse, rewrite

MAX_TEMPORAL = 2  # L1T3: temporal layers 0, 1, 2


class LayeredConsumer(Consumer):
    """A consumer of a simulcast or VP8 track: every packet goes through its forwarder."""

    __slots__ = (
        "_descriptor",
        "_last_picture_id",
        "_last_tl0",
        "_picture_ids",
        "_rewriting",
        "_tl0s",
        "_told_spatial",
        "_told_temporal",
        "layered_forwarder",
    )

    def _prepare(self) -> None:
        self.layered_forwarder = self.forwarder = LayeredForwarder()
        # Until a frame is dropped or the stream switched, ids go out as they came: only the last
        # ones are kept (two stores a packet); from then on the rewriters map every packet.
        self._rewriting = False
        self._last_picture_id = -1
        self._last_tl0 = -1
        self._picture_ids = IdRewriter(15)
        self._tl0s = IdRewriter(8)
        self._descriptor = Vp8Descriptor()  # for retransmissions: read again from the cache
        self._told_spatial = self._told_temporal = -1  # the layers last announced (ConsumerLayerChanged)

    @property
    def target_layers(self) -> tuple[int, int]:
        forwarder = self.layered_forwarder
        return forwarder.target, forwarder.target_temporal

    @property
    def current_layers(self) -> tuple[int, int] | None:
        """The layers forwarded now; None before the first keyframe and while paused."""
        forwarder = self.layered_forwarder
        return None if forwarder.current < 0 else (forwarder.current, forwarder.temporal)

    def set_layers(self, spatial: int, temporal: int, now: float, at_once: bool = False) -> None:
        """The allocator's target: a spatial switch waits for a keyframe of the target stream
        (asked for now), a temporal one for the next frame that allows it. `at_once`, going down:
        the current stream stops now (the link cannot carry it; what it would send until the
        keyframe would only be lost, and delay the keyframe)."""
        forwarder = self.layered_forwarder
        spatial = min(max(spatial, 0), len(self.producer.streams) - 1)
        forwarder.target_temporal = min(max(temporal, 0), MAX_TEMPORAL)
        if spatial == forwarder.target and not (at_once and forwarder.current > spatial):
            return
        forwarder.target = spatial
        if at_once and forwarder.current > spatial:
            forwarder.current = -1
            forwarder.waiting = True
            self.drop_queued()
        self.route()
        if not forwarder.paused and forwarder.current != spatial:
            self.producer.request_keyframe(now, spatial)

    def drop_queued(self) -> None:
        """What was forwarded is of no use now (the link cannot carry it): not resent, and what the
        subscriber's pacer still holds of it is dropped."""
        self._history = [-1] * HISTORY_SIZE
        self.transport.discard(self._ssrcs)

    @property
    def _ssrcs(self) -> tuple[int, ...]:
        return (self.ssrc,) if self.rtx_ssrc is None else (self.ssrc, self.rtx_ssrc)

    def request_keyframe(self, now: float) -> None:
        forwarder = self.layered_forwarder
        self.producer.request_keyframe(now, forwarder.current if forwarder.current >= 0 else forwarder.target)

    def route(self) -> None:
        self.producer.route(self, self.layered_forwarder.listens_to())

    def forward(self, packet: RtpPacket, now: float) -> None:
        forwarder = self.layered_forwarder
        if (
            packet.spatial == forwarder.current
            and packet.temporal <= forwarder.temporal
            and (not packet.begins_frame or forwarder.target_temporal == forwarder.temporal)
        ):
            decision = FORWARD  # LayeredForwarder.decide's common case, inlined (nothing changes)
        else:
            decision = forwarder.decide(packet)
        if decision == SWITCH:
            self.stream = self.producer.streams[packet.spatial]
            if self.has_sent:
                # What the subscriber's pacer still holds of the former layer would only delay
                # this keyframe (and is no longer resent: `_start` forgets what was sent).
                self.transport.discard(self._ssrcs)
                self._start_rewriting()
                self._picture_ids.sync()
                self._tl0s.sync()
            self._start(packet, now)
            self.route()
        elif decision != FORWARD:
            stats = self._stats
            stats.rtp_forwarded -= 1
            if decision == SKIP:
                self._rewriter.drop(packet.ext_seq)
                if packet.picture_id_offset >= 0:
                    self._start_rewriting()
                    self._picture_ids.skip(packet.picture_id)
                stats.drops[DropReason.TEMPORAL_LAYER] += 1
            elif forwarder.current < 0 and packet.spatial == forwarder.target:
                stats.drops[DropReason.WAITING_FOR_KEYFRAME] += 1
            return
        if forwarder.current != self._told_spatial or forwarder.temporal != self._told_temporal:
            self._told_spatial = forwarder.current
            self._told_temporal = forwarder.temporal
            self._stats.layer_switches += 1
            self.transport.session.events.append(
                ConsumerLayerChanged(self.transport.id, self.producer.id, forwarder.current, forwarder.temporal)
            )
        payload = packet.payload
        pid_offset = packet.picture_id_offset
        tl0_offset = packet.tl0_offset
        if not self._rewriting:
            self._last_picture_id = packet.picture_id
            self._last_tl0 = packet.tl0
        elif pid_offset >= 0 or tl0_offset >= 0:
            picture_ids = self._picture_ids
            tl0s = self._tl0s
            picture_id = picture_ids.map(packet.picture_id) if pid_offset >= 0 else 0
            tl0 = tl0s.map(packet.tl0) if tl0_offset >= 0 else 0
            if not (picture_ids.identity and tl0s.identity):
                payload = rewrite(payload, pid_offset, picture_id, tl0_offset, tl0)
        self._send(packet, payload, now)

    def _resent_payload(self, payload: bytes) -> bytes:
        """A retransmission carries the ids its first copy had: mapped again (an older id keeps
        its distance from the newest), never the publisher's own."""
        if not self._rewriting:
            return payload
        descriptor = self._descriptor
        parse(payload, descriptor)
        if not descriptor.valid or (descriptor.picture_id_offset < 0 and descriptor.tl0_offset < 0):
            return payload
        picture_id = self._picture_ids.map(descriptor.picture_id) if descriptor.picture_id_offset >= 0 else 0
        tl0 = self._tl0s.map(descriptor.tl0) if descriptor.tl0_offset >= 0 else 0
        return rewrite(payload, descriptor.picture_id_offset, picture_id, descriptor.tl0_offset, tl0)

    def _start_rewriting(self) -> None:
        if not self._rewriting:
            self._rewriting = True
            if self._last_picture_id >= 0:
                self._picture_ids.continue_from(self._last_picture_id)
            if self._last_tl0 >= 0:
                self._tl0s.continue_from(self._last_tl0)

    def _pause(self) -> None:
        super()._pause()
        self.route()

    def _resume(self, now: float) -> None:
        super()._resume(now)
        self.route()
