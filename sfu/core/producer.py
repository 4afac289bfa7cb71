"""A published track: its incoming RTP stream(s) — one, or one per simulcast encoding — fanned
out to its consumers."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .cache import PacketCache
from .consumer import Consumer, abs_send_time
from .events import KeyframeReceived
from .nack import NackGenerator
from .packet import RtpPacket
from .params import Codec, HeaderExtensions, Kind
from .rtcp import ReportBlock, build_nack, build_pli
from .rtp import find_extension, is_h264_keyframe, is_vp8_keyframe
from .stats import DropReason
from .stream import ReceiveStream
from .vp8 import Vp8Descriptor, parse

if TYPE_CHECKING:
    from .transport import Transport

_SEQ_SSRC = struct.Struct("!HII")  # seq, timestamp, ssrc at offset 2


class Producer:
    """One published track: its receive streams by spatial layer, its consumers, the room's metadata."""

    __slots__ = (
        "_descriptor",
        "_is_keyframe",
        "closed",
        "codec",
        "consumers",
        "extensions",
        "id",
        "kind",
        "layered",
        "max_bitrate",
        "mid",
        "muted",
        "owner",
        "rids",
        "role",
        "session",
        "source",
        "stats",
        "stream",
        "streams",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        producer_id: str,
        *,
        mid: str,
        codec: Codec,
        extensions: HeaderExtensions,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        rids: tuple[str, ...] = (),
        source: str = "",
        owner: str = "",
        role: str = "",
        max_bitrate: int = 1_500_000,
    ) -> None:
        self.id = producer_id
        self.transport = transport
        self.kind = codec.kind
        self.mid = mid
        self.source = source  # camera / microphone / screen / screen_audio
        self.owner = owner  # the publishing participant's id
        self.role = role  # "teacher" / "student"
        self.codec = codec
        self.extensions = extensions
        self.rids = rids  # the simulcast encodings, lowest first; () for one stream
        video = self.kind is Kind.VIDEO
        self.streams = [
            ReceiveStream(self, ssrc if not rids else None, codec.clock_rate, video, spatial, rid)
            for spatial, rid in enumerate(rids or ("",))
        ]
        self.stream = self.streams[0]
        if not rids:
            self.stream.rtx_ssrc = rtx_ssrc
        self.max_bitrate = max_bitrate
        self.consumers: list[Consumer] = []
        self.closed = False
        self.muted = False
        name = codec.name
        self._is_keyframe = is_vp8_keyframe if name == "VP8" else is_h264_keyframe if name == "H264" else None
        # Layered consumers (a spatial and a temporal layer per subscriber) for simulcast and for
        # VP8, whose temporal layers can be dropped; the descriptor is parsed once per packet.
        self.layered = video and (bool(rids) or name == "VP8")
        self._descriptor = Vp8Descriptor() if name == "VP8" else None
        self.session = transport.session
        self.stats = transport.session.stats

    @property
    def simulcast(self) -> bool:
        return len(self.streams) > 1

    @property
    def ssrc(self) -> int | None:
        return self.stream.ssrc

    @property
    def rtx_ssrc(self) -> int | None:
        return self.stream.rtx_ssrc

    @property
    def cache(self) -> PacketCache:
        return self.stream.cache

    @property
    def nack(self) -> NackGenerator | None:
        return self.stream.nack

    def receive(self, stream: ReceiveStream, data: bytes, hdr_len: int, seq: int, ts: int, now: float) -> None:
        """One media packet from the publisher (already routed to its stream by SSRC)."""
        if data[1] & 0x7F != self.codec.payload_type:
            self.stats.drops[DropReason.MUTED if self.muted else DropReason.UNEXPECTED_PAYLOAD_TYPE] += 1
            return
        if self.muted:
            # Not even cached: a NACK must not be able to fetch what a muted participant said,
            # and after the unmute nothing up to here is asked for again or accepted late.
            stream.skip_muted(seq)
            self.stats.drops[DropReason.MUTED] += 1
            return
        ext_seq = stream.receive(data, seq, ts, now)
        if ext_seq < 0:
            return
        level = 0x7F
        level_id = self.extensions.audio_level
        if level_id:
            offset = find_extension(data, level_id)
            if offset > 0:
                level = data[offset]
                if self.session.detector is not None:
                    self.session.observe_level(self.id, level & 0x7F, now)
        self._fan_out(stream, data, hdr_len, seq, ext_seq, ts, level, now)

    def receive_rtx(self, stream: ReceiveStream, data: bytes, hdr_len: int, now: float) -> None:
        """An RTX packet: restore the original packet (RFC 4588) and handle it as late media."""
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        if end - hdr_len < 2:
            self.stats.drops[DropReason.PADDING_ONLY] += 1
            return
        original = bytearray(data[:hdr_len])
        original[0] &= 0xDF  # the RTX padding is not the original's
        original[1] = (data[1] & 0x80) | self.codec.payload_type
        seq = (data[hdr_len] << 8) | data[hdr_len + 1]
        ts = (data[4] << 24) | (data[5] << 16) | (data[6] << 8) | data[7]
        _SEQ_SSRC.pack_into(original, 2, seq, ts, stream.ssrc or 0)
        original += data[hdr_len + 2 : end]
        self.receive(stream, bytes(original), hdr_len, seq, ts, now)

    def _fan_out(
        self, stream: ReceiveStream, data: bytes, hdr_len: int, seq: int, ext_seq: int, ts: int, level: int, now: float
    ) -> None:
        """Parse once, hand the same packet to the consumers of this stream (each rewrites its own
        header; a layered one may leave the packet out)."""
        descriptor = self._descriptor
        if descriptor is not None:
            parse(data[hdr_len:], descriptor)
            if descriptor.valid:
                stream.temporal_bytes[descriptor.temporal] += len(data)
        consumers = stream.consumers
        if not consumers:
            return
        keyframe = False
        if self._is_keyframe is not None:
            keyframe = self._is_keyframe(data, hdr_len)
            if keyframe:
                self.session.events.append(KeyframeReceived(self.id))
        packet = RtpPacket(data, data[hdr_len:], seq, ext_seq, ts, keyframe, level, abs_send_time(now))
        if self.layered:
            packet.spatial = stream.spatial
            if descriptor is not None and descriptor.valid:
                packet.temporal = descriptor.temporal
                packet.sync = descriptor.sync
                packet.begins_frame = descriptor.begins_frame
                packet.picture_id = descriptor.picture_id
                packet.picture_id_offset = descriptor.picture_id_offset
                packet.tl0 = descriptor.tl0
                packet.tl0_offset = descriptor.tl0_offset
            else:
                packet.temporal = 0
                packet.sync = True
                packet.begins_frame = True
                packet.picture_id = packet.picture_id_offset = packet.tl0 = packet.tl0_offset = -1
        self.stats.rtp_forwarded += len(consumers)  # a consumer that drops the packet takes its one back
        for consumer in consumers:
            consumer.forward(packet, now)

    def route(self, consumer: Consumer, streams: tuple[int, ...]) -> None:
        """Make `consumer` see the packets of these streams only (a layered one: the stream it
        forwards and the one it switches to; none while paused)."""
        for stream in self.streams:
            wanted = stream.spatial in streams
            if wanted != (consumer in stream.consumers):
                if wanted:
                    stream.consumers.append(consumer)
                else:
                    stream.consumers.remove(consumer)

    def mute(self, now: float = 0.0) -> None:
        """Stop forwarding this track at all (a muted or blocked participant)."""
        if not self.muted:
            self.muted = True
            for consumer in self.consumers:
                consumer.set_paused("muted", True, now)

    def unmute(self, now: float) -> None:
        """Forward again: audio continues without a jump, video restarts at a keyframe."""
        if self.muted:
            self.muted = False
            for consumer in self.consumers:
                consumer.set_paused("muted", False, now)

    def request_keyframe(self, now: float, spatial: int | None = None) -> None:
        """Ask the publisher for a keyframe on one stream (None: the first, for a single stream)."""
        if self.kind is not Kind.VIDEO:
            return
        stream = self.streams[spatial or 0] if spatial is None or spatial < len(self.streams) else None
        if stream is None:
            return
        if stream.ssrc is None:
            stream.keyframes.defer()  # sent once the SSRC is bound (Transport._bind)
        elif stream.keyframes.request(now):
            self._send_pli(stream)
        else:
            self.session.attend(self, stream.keyframes.deadline() or now)

    def _send_pli(self, stream: ReceiveStream) -> None:
        self.stats.keyframe_requests_sent += 1
        self.transport.send_rtcp(build_pli(self.transport.rtcp_ssrc, stream.ssrc or 0))

    def on_sender_report(self, stream: ReceiveStream, ntp: int, rtp_timestamp: int, now: float) -> None:
        stream.on_sender_report(ntp, now)
        for consumer in stream.consumers:
            if consumer.stream is stream:  # not one still switching to it: its timestamps differ
                consumer.on_sender_report(ntp, rtp_timestamp, now)

    def on_timer(self, now: float) -> None:
        """Upstream NACKs and pending keyframe requests, when deadline() says so."""
        for stream in self.streams:
            if stream.ssrc is None:
                continue
            if stream.nack is not None:
                lost = stream.nack.poll(now)
                if lost:
                    self.stats.nacks_sent += 1
                    rtcp_ssrc = self.transport.rtcp_ssrc
                    self.transport.send_rtcp(build_nack(rtcp_ssrc, stream.ssrc, [s & 0xFFFF for s in lost]))
            if stream.keyframes.poll(now):
                self._send_pli(stream)

    def deadline(self) -> float | None:
        """The earliest NACK retry (while gaps are open) or pending keyframe request of any stream."""
        deadline: float | None = None
        for stream in self.streams:
            if stream.ssrc is None:
                continue
            for at in (stream.nack.deadline() if stream.nack is not None else None, stream.keyframes.deadline()):
                if at is not None and (deadline is None or at < deadline):
                    deadline = at
        return deadline

    def has_received(self) -> bool:
        return any(stream.received for stream in self.streams)

    def report_blocks(self, now: float) -> list[ReportBlock]:
        """A receiver-report block for each stream that received something since the last one."""
        return [block for stream in self.streams if (block := stream.report_block(now)) is not None]

    def bitrate(self, now: float) -> int:
        """What the publisher sends now on all its streams, in bits per second (over the last second)."""
        return sum(stream.bitrate(now) for stream in self.streams)

    def layer_bitrates(self, now: float) -> tuple[tuple[int, ...], ...]:
        """Per spatial layer, the bitrate with temporal layers up to each one included (bits/s);
        a layer not flowing measures 0. The allocator prices its choices with these."""
        return tuple(stream.layer_bitrates(now) for stream in self.streams)
