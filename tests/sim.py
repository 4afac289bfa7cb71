"""A deterministic simulation of a class around the sans-IO core: no socket, no wall clock.

Publishers replay the benchmark's pre-encoded VP8/Opus packets; subscribers behave like a browser
(they detect gaps, send NACKs and receiver reports); every datagram crosses a seeded `Link` with
loss, delay, jitter and a bandwidth cap. The clock jumps from one deadline to the next: the
earliest of the core's `get_timer()`, the next delivery, the next frame, a subscriber's retry.
"""

from __future__ import annotations

import functools
import heapq
import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.media import EncodedFrame, encode_audio, encode_video
from sfu.core import Codec, Event, HeaderExtensions, Kind, MediaSession, Transport
from sfu.core.rtcp import KeyframeRequest, Nack, ReportBlock, build_nack, build_pli, build_receiver_report, parse_rtcp
from sfu.core.rtp import RTP_HEADER, find_extension, header_length, is_vp8_keyframe
from sfu.core.twcc import build_feedback
from sfu.core.vp8 import Vp8Descriptor, parse

from .rtp_helpers import rtp_packet

VP8 = Codec("video/VP8", 96, 90000)
OPUS = Codec("audio/opus", 111, 48000)
EXT = HeaderExtensions(mid=4, audio_level=1, rid=5)
WIDE_ID = 3  # the transport-cc extension id on subscriptions that negotiate it
RTX_PT = 97
PACING = 2.5 * (150_000 + 500_000 + 1_500_000)  # Chrome paces at 2.5 times its encodings' target


@functools.cache
def video_frames() -> tuple[EncodedFrame, ...]:
    return tuple(encode_video(seconds=2.0, bitrate=300_000, width=160, height=120))


@functools.cache
def layer_recordings() -> tuple[tuple[EncodedFrame, ...], ...]:
    """Four seconds of VP8 at each simulcast layer's size and bitrate (q, h, f), one keyframe at
    the start: a browser's encoder sends keyframes when asked, not on a clock."""
    sizes = ((320, 180, 150_000), (640, 360, 500_000), (1280, 720, 1_500_000))
    return tuple(tuple(encode_video(4.0, bitrate, w, h, keyframe_seconds=4.0)) for w, h, bitrate in sizes)


@functools.cache
def audio_frames() -> tuple[EncodedFrame, ...]:
    return tuple(encode_audio(seconds=1.0))


@dataclass
class Link:
    """One direction of a network path, seeded: the same run gives the same losses and delays."""

    seed: int = 1
    loss: float = 0.0
    delay: float = 0.02
    jitter: float = 0.0
    bandwidth: float | None = None  # bits per second; packets queue behind each other
    queue: float | None = None  # seconds of queue; a packet that would wait longer is dropped (tail drop)
    lost: int = 0
    _free_at: float = 0.0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def arrival(self, size: int, now: float) -> float | None:
        """When a datagram sent now arrives, or None when it is lost."""
        start = now
        if self.bandwidth is not None:
            if self.queue is not None and self._free_at - now > self.queue:
                self.lost += 1
                return None
            start = max(now, self._free_at) + size * 8 / self.bandwidth
            self._free_at = start
        if self._rng.random() < self.loss:
            self.lost += 1
            return None
        return start + self.delay + self._rng.random() * self.jitter


class Publisher:
    """Sends one track's pre-encoded frames on time; answers NACKs from what it sent, PLIs with the
    next keyframe of the recording."""

    def __init__(
        self, ssrc: int, mid: str, video: bool, level: int = 0x7F, frames: tuple[EncodedFrame, ...] | None = None
    ) -> None:
        self.ssrc = ssrc
        self.mid = mid.encode()
        self.video = video
        self.level = level  # the audio-level byte each Opus packet carries
        self.frames = frames or (video_frames() if video else audio_frames())
        self.keyframes = [i for i, f in enumerate(self.frames) if video and is_vp8_keyframe(f.payloads[0], 0)]
        self.interval = 1 / 30 if video else 0.02
        self.next_time = 0.0
        self.index = 0
        self.seq = 1000
        self.ts = 0
        self.sent: dict[int, bytes] = {}
        self.resent = 0
        self.running = True

    def emit(self, now: float) -> list[bytes]:
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        self.next_time = now + self.interval
        packets = []
        ext = [(4, self.mid)] if self.video else [(4, self.mid), (1, bytes([self.level]))]
        for i, payload in enumerate(frame.payloads):
            last = i == len(frame.payloads) - 1
            pt = 96 if self.video else 111
            data = rtp_packet(self.seq, self.ts, self.ssrc, pt=pt, payload=payload, marker=last, extensions=ext)
            self.sent[self.seq & 0xFFFF] = data
            self.seq = (self.seq + 1) & 0xFFFF
            packets.append(data)
        self.ts = (self.ts + frame.timestamp_step) & 0xFFFFFFFF
        return packets

    def skip_to_keyframe(self) -> None:
        """The next frame sent is the recording's next keyframe (an encoder asked for one)."""
        length = len(self.frames)
        loop, position = divmod(self.index, length)
        later = [k for k in self.keyframes if k >= position]
        self.index = loop * length + later[0] if later else (loop + 1) * length + self.keyframes[0]

    def on_rtcp(self, data: bytes) -> list[bytes]:
        out = []
        for packet in parse_rtcp(data):
            if isinstance(packet, Nack) and packet.media_ssrc == self.ssrc:
                out += [self.sent[s] for s in packet.lost if s in self.sent]
            elif isinstance(packet, KeyframeRequest) and self.video and packet.media_ssrc == self.ssrc:
                self.skip_to_keyframe()
        self.resent += len(out)
        return out


TEMPORAL_PATTERN = (0, 2, 1, 2)  # L1T3: the TID of each frame after a keyframe, in turn
LAYER_SYNC = (True, True, True, False)  # frame 3 (TL2) refers to frame 2 (TL1): not a switch point


class LayerPublisher(Publisher):
    """One simulcast encoding: its own SSRC, a rid extension, and VP8 descriptors carrying a 15-bit
    picture id, TL0PICIDX and the L1T3 temporal pattern (written around the recorded frames: the
    simulation never decodes)."""

    def __init__(
        self, ssrc: int, mid: str, rid: str, picture_id: int, frames: tuple[EncodedFrame, ...] | None = None
    ) -> None:
        super().__init__(ssrc, mid, video=True, frames=frames)
        self.rid = rid.encode()
        self.picture_id = picture_id
        self.tl0 = 0
        self.since_key = 0

    def emit(self, now: float) -> list[bytes]:
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        self.next_time = now + self.interval
        key = is_vp8_keyframe(frame.payloads[0], 0)
        self.since_key = 0 if key else self.since_key + 1
        tid = TEMPORAL_PATTERN[self.since_key % 4]
        sync = LAYER_SYNC[self.since_key % 4] or key
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        descriptor = bytes(
            (0xE0, 0x80 | self.picture_id >> 8, self.picture_id & 0xFF, self.tl0, tid << 6 | (0x20 if sync else 0))
        )
        packets = []
        ext = [(4, self.mid), (5, self.rid)]
        for i, payload in enumerate(frame.payloads):
            last = i == len(frame.payloads) - 1
            body = bytes([payload[0]]) + descriptor + payload[4:]  # the recording's 4-byte descriptor replaced
            data = rtp_packet(self.seq, self.ts, self.ssrc, pt=96, payload=body, marker=last, extensions=ext)
            self.sent[self.seq & 0xFFFF] = data
            self.seq = (self.seq + 1) & 0xFFFF
            packets.append(data)
        self.ts = (self.ts + frame.timestamp_step) & 0xFFFFFFFF
        return packets


@dataclass
class Received:
    """What a subscriber got on one SSRC, as its jitter buffer sees it."""

    seqs: list[int] = field(default_factory=list)  # unwrapped, in arrival order
    first_is_keyframe: bool | None = None
    keyframes: list[int] = field(default_factory=list)  # sequence numbers starting a keyframe
    frames: list[tuple[float, int, int]] = field(default_factory=list)  # (time, picture id, TID) complete
    missing: dict[int, list[float]] = field(default_factory=dict)  # seq -> [first missing, last asked, tries]
    highest: int = -1
    duplicates: int = 0
    given_up: int = -1  # the highest sequence number no longer asked for: undecodable until a keyframe after it
    stuck_since: float | None = None  # a frame ended that the decoder cannot show (since then)
    last_pli: float = float("-inf")
    plis: int = 0

    def gaps(self) -> list[int]:
        """Sequence numbers never received between the first and the highest."""
        got = set(self.seqs)
        return [s for s in range(min(got), max(got) + 1) if s not in got] if got else []


class Subscriber:
    """A browser's receiving side: NACK on gap (then every 50 ms, 10 tries), a keyframe request
    (PLI) when frames end that it cannot show for KEYFRAME_WAIT, a report a second, and with
    `wide_id` (the transport-cc extension) a transport feedback every 50 ms, as Chrome."""

    NACK_RETRY = 0.05
    NACK_TRIES = 10
    FEEDBACK_EVERY = 0.05
    KEYFRAME_WAIT = 0.2
    PLI_AGAIN = 0.3

    def __init__(self, ssrc: int = 7, wide_id: int = 0) -> None:
        self.ssrc = ssrc
        self.streams: dict[int, Received] = {}
        self.next_report = 1.0
        self.wide_id = wide_id
        self.arrivals: dict[int, float] = {}  # unwrapped transport-wide number -> arrival, not yet reported
        self.wide_base = -1  # the first number the next feedback reports
        self.wide_highest = -1
        self.next_feedback = 0.0
        self.feedbacks = 0
        self.rtx: dict[int, int] = {}  # RTX SSRC -> media SSRC
        self.rtx_received = 0

    def on_rtp(self, data: bytes, now: float) -> None:
        if self.wide_id:
            self._arrived(data, now)
        _, _, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        media = self.rtx.get(ssrc)
        if media is not None:  # RTX: the original packet is restored (a copy already held changes nothing)
            self.rtx_received += 1
            hdr_len = header_length(data)
            seq = (data[hdr_len] << 8) | data[hdr_len + 1]
            header = bytearray(data[:hdr_len])
            RTP_HEADER.pack_into(header, 0, data[0], (data[1] & 0x80) | VP8.payload_type, seq, ts, media)
            data = bytes(header) + data[hdr_len + 2 :]
            ssrc = media
        stream = self.streams.setdefault(ssrc, Received())
        keyframe = data[1] & 0x7F != 111 and is_vp8_keyframe(data, header_length(data))
        if stream.first_is_keyframe is None:
            stream.first_is_keyframe = keyframe
        if stream.highest < 0:
            ext = seq
        else:
            ext = stream.highest + ((seq - stream.highest + 0x8000) & 0xFFFF) - 0x8000
            if ext <= stream.highest and ext not in stream.missing:
                stream.duplicates += 1  # already held (or given up): the jitter buffer drops it
                return
        if keyframe:
            stream.keyframes.append(ext)
        stream.seqs.append(ext)
        stream.missing.pop(ext, None)
        if stream.highest >= 0 and ext > stream.highest + 1:
            for lost in range(stream.highest + 1, ext):
                stream.missing[lost] = [now, float("-inf"), 0]
        stream.highest = max(stream.highest, ext)
        if data[1] & 0x80:
            # A frame the decoder can show: nothing missing since the last keyframe (what is older
            # is no longer needed to decode; it is still asked for, as the NACK tests expect).
            start = stream.keyframes[-1] if stream.keyframes else None
            if start is not None and start > stream.given_up and all(seq < start for seq in stream.missing):
                self._frame_done(stream, data, now)
                stream.stuck_since = None
            elif stream.stuck_since is None:
                stream.stuck_since = now

    def _arrived(self, data: bytes, now: float) -> None:
        offset = find_extension(data, self.wide_id)
        if offset < 0:
            return
        seq = (data[offset] << 8) | data[offset + 1]
        if self.wide_highest < 0:
            wide = seq
            self.wide_base = seq
            self.next_feedback = now + self.FEEDBACK_EVERY
        else:
            wide = self.wide_highest + ((seq - self.wide_highest + 0x8000) & 0xFFFF) - 0x8000
        if wide >= self.wide_base:
            self.arrivals[wide] = now
            self.wide_highest = max(self.wide_highest, wide)

    def _feedback(self) -> bytes:
        base, highest = self.wide_base, self.wide_highest
        arrivals = [self.arrivals.get(n) for n in range(base, highest + 1)]
        self.arrivals.clear()
        self.wide_base = highest + 1
        self.feedbacks += 1
        return build_feedback(self.ssrc, 0, base & 0xFFFF, arrivals, self.feedbacks)

    @staticmethod
    def _frame_done(stream: Received, data: bytes, now: float) -> None:
        descriptor = Vp8Descriptor()
        parse(data[header_length(data) :], descriptor)
        stream.frames.append((now, descriptor.picture_id, descriptor.temporal))

    def due(self) -> float:
        retries = [max(m[1] + self.NACK_RETRY, m[0]) for s in self.streams.values() for m in s.missing.values()]
        feedback = [self.next_feedback] if self.arrivals else []
        plis = [
            max(s.stuck_since + self.KEYFRAME_WAIT, s.last_pli + self.PLI_AGAIN)
            for s in self.streams.values()
            if s.stuck_since is not None
        ]
        return min([self.next_report, *retries, *feedback, *plis])

    def on_timer(self, now: float) -> list[bytes]:
        out = []
        for ssrc, stream in self.streams.items():
            ask = []
            for seq, entry in list(stream.missing.items()):
                if entry[2] >= self.NACK_TRIES:
                    del stream.missing[seq]
                    stream.given_up = max(stream.given_up, seq)
                elif now >= entry[1] + self.NACK_RETRY:
                    entry[1], entry[2] = now, entry[2] + 1
                    ask.append(seq & 0xFFFF)
            if ask:
                out.append(build_nack(self.ssrc, ssrc, ask))
            stuck = stream.stuck_since
            if stuck is not None and now >= max(stuck + self.KEYFRAME_WAIT, stream.last_pli + self.PLI_AGAIN):
                stream.last_pli = now
                stream.plis += 1
                out.append(build_pli(self.ssrc, ssrc))
        if self.arrivals and now >= self.next_feedback:
            self.next_feedback = now + self.FEEDBACK_EVERY
            out.append(self._feedback())
        if now >= self.next_report and self.streams:
            self.next_report = now + 1.0
            blocks = [ReportBlock(ssrc, 0, 0, s.highest, 0, 0, 0) for ssrc, s in self.streams.items()]
            out.append(build_receiver_report(self.ssrc, blocks[:31]))
        return out


class Sim:
    """The core and its endpoints on one simulated clock."""

    def __init__(self, seed: int = 1, **link: float) -> None:
        self.session = MediaSession()
        self.now = 0.0
        self.seed = seed
        self.link: dict[str, Any] = dict(link)
        self.publishers: dict[str, tuple[Transport, Publisher, Link]] = {}
        self.subscribers: dict[str, tuple[Transport, Subscriber, Link, Link]] = {}
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._order = 0
        self.core_wakeups = 0
        self.events: list[Event] = []
        self.layers: dict[str, list[LayerPublisher]] = {}  # simulcast track -> its encodings

    def publish(self, name: str, video: bool, frames: tuple[EncodedFrame, ...] | None = None, **kw: int) -> Publisher:
        transport = self.session.create_transport(f"{name}:pub")
        publisher = Publisher(ssrc=len(self.publishers) + 100, mid="0", video=video, frames=frames, **kw)
        self.session.add_producer(transport, name, mid="0", codec=VP8 if video else OPUS, extensions=EXT)
        self.publishers[name] = (transport, publisher, Link(seed=self.seed + len(self.publishers), **self.link))
        publisher.next_time = self.now
        return publisher

    def publish_simulcast(
        self,
        name: str,
        rids: tuple[str, ...] = ("q", "h", "f"),
        frames: tuple[tuple[EncodedFrame, ...], ...] | None = None,
        pacing: float = PACING,
    ) -> list[LayerPublisher]:
        """A camera in three encodings, each on its own (unannounced) SSRC: the core learns them by rid.
        `frames`: each layer's recording (the same small one for all by default). The encodings
        leave through one pacer, as a browser's: a frame's packets are spread at `pacing` bits
        per second instead of arriving together (which would hide a queue from the delay signal)."""
        transport = self.session.create_transport(f"{name}:pub")
        self.session.add_producer(transport, name, mid="0", codec=VP8, extensions=EXT, rids=rids)
        uplink = Link(seed=self.seed + len(self.publishers), **self.link)
        uplink.bandwidth = pacing
        layers = []
        for spatial, rid in enumerate(rids):
            layer = LayerPublisher(
                ssrc=300 + 10 * len(self.publishers),
                mid="0",
                rid=rid,
                picture_id=1000 * spatial,
                frames=frames[spatial] if frames is not None else None,
            )
            layer.next_time = self.now
            self.publishers[f"{name}/{rid}"] = (transport, layer, uplink)
            layers.append(layer)
        self.layers[name] = layers
        return layers

    def dynacast(self, changed: Mapping[str, tuple[str, ...]]) -> None:
        """What the room tells simulcast publishers (RoomBandwidth.run): the encodings to send. A
        browser resumes an encoding with a keyframe."""
        for track, active in changed.items():
            for layer in self.layers.get(track, ()):
                on = layer.rid.decode() in active
                if on and not layer.running:
                    layer.skip_to_keyframe()
                    layer.next_time = self.now
                layer.running = on

    def subscribe(self, name: str, producer: str, wide: bool = False) -> Subscriber:
        """Subscribe `name` to a producer; `wide`: the transport-cc extension is negotiated (the
        subscriber sends transport feedback)."""
        if name not in self.subscribers:
            seed = self.seed + 100 + len(self.subscribers)
            down, up = Link(seed=seed, **self.link), Link(seed=seed + 50)
            subscriber = Subscriber(wide_id=WIDE_ID if wide else 0)
            self.subscribers[name] = (self.session.create_transport(f"{name}:sub"), subscriber, down, up)
        transport, subscriber, _, _ = self.subscribers[name]
        index = len({id(c) for c in transport.consumers.values()})
        source = self.session.producers[producer]
        # With transport-cc, video goes with RTX too, as browsers negotiate both: retransmissions and
        # probe padding arrive on their own SSRC.
        rtx = wide and source.kind is Kind.VIDEO
        self.session.add_consumer(
            transport,
            source,
            ssrc=5000 + index,
            payload_type=96,
            mid=str(index),
            extensions=HeaderExtensions(mid=1, transport_cc=WIDE_ID if subscriber.wide_id else 0),
            rtx_ssrc=6000 + index if rtx else None,
            rtx_payload_type=RTX_PT if rtx else None,
            now=self.now,
        )
        if rtx:
            subscriber.rtx[6000 + index] = 5000 + index
        self.flush()
        return subscriber

    def _at(self, when: float, action: Callable[[float], None]) -> None:
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, action))

    def _send(self, link: Link, data: bytes, deliver: Callable[[bytes, float], None]) -> None:
        when = link.arrival(len(data), self.now)
        if when is not None:
            self._at(when, lambda now: deliver(data, now))

    def flush(self) -> None:
        for transport, rtp, rtcp in self.session.take_ready(self.now):
            if transport.id.endswith(":pub"):
                for pub_transport, publisher, link in self.publishers.values():
                    if pub_transport is transport:
                        for data in rtcp:
                            self._send(link, data, self._to_publisher(publisher, transport, link))
            else:
                _, subscriber, down, _ = self.subscribers[transport.id[:-4]]
                for data in rtp:
                    self._send(down, data, subscriber.on_rtp)
        while (event := self.session.next_event()) is not None:
            self.events.append(event)

    def _to_publisher(self, publisher: Publisher, transport: Transport, link: Link) -> Callable[[bytes, float], None]:
        def deliver(data: bytes, now: float) -> None:
            for resent in publisher.on_rtcp(data):
                self._send(link, resent, transport.receive_rtp)

        return deliver

    def run(self, until: float) -> None:
        """Advance the clock deadline by deadline up to `until`."""
        stuck = 0
        while True:
            core = self.session.get_timer()
            candidates = [self._queue[0][0]] if self._queue else []
            candidates += [p.next_time for _, p, _ in self.publishers.values() if p.running]
            candidates += [s.due() for _, s, _, _ in self.subscribers.values()]
            if core is not None:
                candidates.append(core)
            when = min(candidates, default=until + 1)
            if when > until:
                self.now = until
                return
            stuck = stuck + 1 if when <= self.now else 0
            if stuck > 10_000:
                raise RuntimeError(f"no progress at {self.now}: a deadline that handling does not move")
            self.now = now = max(self.now, when)
            if core is not None and core <= now:
                self.core_wakeups += 1
                self.session.handle_timer(now)
            while self._queue and self._queue[0][0] <= now:
                heapq.heappop(self._queue)[2](now)
            for transport, publisher, link in self.publishers.values():
                if publisher.running and publisher.next_time <= now:
                    for data in publisher.emit(now):
                        self._send(link, data, transport.receive_rtp)
            for transport, subscriber, _, up in self.subscribers.values():
                if subscriber.due() <= now:
                    for data in subscriber.on_timer(now):
                        self._send(up, data, transport.receive_rtcp)
            self.flush()


def seq_of(data: bytes) -> int:
    return int(struct.unpack_from("!H", data, 2)[0])
