"""One aiortc peer connection whose media skips aiortc's RTP stack and goes through the core.

aiortc negotiates SDP, runs ICE and the DTLS handshake. Once SRTP keys exist, each datagram is
taken from aioice's socket callback, decrypted and handed to the core; what the core queues is
encrypted and written straight to the nominated candidate pair's socket. aiortc's
`RTCRtpReceiver`/`RTCRtpSender` are only used to learn the negotiated parameters: their tasks,
jitter buffers and decoder threads are never started.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpTransceiver,
)
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.rtcrtpparameters import RTCRtcpFeedback

from ..core import Codec, Consumer, DropReason, HeaderExtensions, Kind, Producer
from ..core.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, URI_REPAIRED_RID, URI_RID, URI_TRANSPORT_CC
from .batch import BatchSender
from .ice import ice_path, offered
from .live import LiveSession
from .network import MediaNetwork, use_media_network
from .shared_port import SharedPortProtocol
from .srtp import SrtpProtector

log = logging.getLogger(__name__)

# What each announced source may carry: an audio track cannot pass for a camera or a screen.
SOURCE_KINDS = {"microphone": Kind.AUDIO, "screen_audio": Kind.AUDIO, "camera": Kind.VIDEO, "screen": Kind.VIDEO}
# The caps a browser puts on each simulcast encoding (web_client/static/js/class/encodings.js):
# a simulcast track's REMB is their sum, so that the browser never leaves out its top layer.
LAYER_BITRATES = {"q": 150_000, "h": 500_000, "f": 1_500_000}


def _register_extensions() -> None:
    """Make aiortc negotiate what it does not know (it answers and offers only the extensions and
    feedback it lists): the rid extensions, read by the core to tell simulcast encodings apart, and
    transport-wide congestion control, numbered on what the server sends a subscriber and reported
    back by its browser (the downlink estimate). Answers to publishers leave the latter out
    (signaling/sdp.py, `publisher_answer`): they get REMB."""
    wanted = {"video": (URI_RID, URI_REPAIRED_RID, URI_TRANSPORT_CC), "audio": (URI_TRANSPORT_CC,)}
    for kind, uris in wanted.items():
        extensions = HEADER_EXTENSIONS[kind]
        for uri in uris:
            if all(ext.uri != uri for ext in extensions):
                ids = {ext.id for e in HEADER_EXTENSIONS.values() for ext in e if ext.uri == uri}
                ident = ids.pop() if ids else max(ext.id for e in HEADER_EXTENSIONS.values() for ext in e) + 1
                extensions.append(RTCRtpHeaderExtensionParameters(id=ident, uri=uri))
    for codec in CODECS["video"]:
        if codec.mimeType.lower() != "video/rtx" and all(fb.type != "transport-cc" for fb in codec.rtcpFeedback):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


_register_extensions()


def negotiated_codec(parameters: Any) -> Codec:
    """The primary codec of aiortc's RTP parameters, with its RTX payload type if any."""
    codecs = [c for c in parameters.codecs if c.mimeType.lower() not in ("video/rtx", "audio/rtx")]
    primary = codecs[0]
    rtx = next(
        (
            c.payloadType
            for c in parameters.codecs
            if c.mimeType.lower() == "video/rtx" and str(c.parameters.get("apt")) == str(primary.payloadType)
        ),
        None,
    )
    return Codec(primary.mimeType, primary.payloadType, primary.clockRate, rtx)


def negotiated_extensions(parameters: Any) -> HeaderExtensions:
    ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
    return HeaderExtensions(
        mid=ids.get(URI_MID, 0),
        audio_level=ids.get(URI_AUDIO_LEVEL, 0),
        abs_send_time=ids.get(URI_ABS_SEND_TIME, 0),
        rid=ids.get(URI_RID, 0),
        repaired_rid=ids.get(URI_REPAIRED_RID, 0),
        transport_cc=ids.get(URI_TRANSPORT_CC, 0),
    )


class PeerTransport:
    """Binds an `RTCPeerConnection` to a core `Transport` of one live session."""

    def __init__(
        self,
        live: LiveSession,
        transport_id: str,
        *,
        ice_servers: list[RTCIceServer],
        network: MediaNetwork,
        on_producer: Callable[[Producer], Awaitable[None]] | None = None,
        max_bitrates: dict[str, int] | None = None,
        owner: str = "",
        role: str = "",
    ) -> None:
        # An explicit list, even empty: given None, aiortc would contact a public STUN server.
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=list(ice_servers), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.live = live
        self.transport = live.session.create_transport(transport_id)
        self.network = network
        self.on_producer = on_producer
        self.owner = owner  # the participant publishing here, and its role: given to its producers
        self.role = role
        self.max_bitrates = max_bitrates or {}  # video cap by source, sent to the publisher as REMB
        self.sources: dict[str, str] = {}  # announced mid -> camera / microphone / screen / screen_audio
        self.rids: dict[str, tuple[str, ...]] = {}  # mid -> its simulcast encodings, lowest first
        self.pending: dict[RTCRtpTransceiver, Producer] = {}  # consumers to create once negotiated
        self.continue_from: dict[RTCRtpTransceiver, Consumer] = {}  # a reused section's last consumer
        self.consumers: dict[str, Consumer] = {}  # by mid
        self.on_consumer: Callable[[Consumer], None] | None = None  # told before the first packet
        self.retired: set[str] = set()  # unpublished mids, never registered again on renegotiation
        self._hooked: set[int] = set()
        self._protector: SrtpProtector | None = None
        # The nominated pair last sent on and, when it is on a shared socket, that socket's sender
        # and the pair's remote address in C: found once per pair, not per packet.
        self._route: tuple[Any, BatchSender | None, Any] = (None, None, None)
        self._dtls: Any = None
        self._ice: Any = None
        self.closed = False
        self.relay_reported = False  # the browser said how it reaches the TURN server (metrics)
        live.peers[transport_id] = self

    def prepare(self) -> None:
        """Hook what aiortc created since the last call: call before each setLocalDescription."""
        for transceiver in self.pc.getTransceivers():
            if id(transceiver) in self._hooked:
                continue
            self._hooked.add(id(transceiver))
            self._hook_receiver(transceiver)
            self._hook_sender(transceiver)
            dtls = transceiver.receiver.transport
            if dtls is not None and self._dtls is None:
                self._install(dtls)

    def _hook_receiver(self, transceiver: RTCRtpTransceiver) -> None:
        async def receive(parameters: Any) -> None:
            mid = transceiver.mid
            if self.closed or mid is None or mid in self.transport.producers_by_mid or mid in self.retired:
                return
            codec = negotiated_codec(parameters)
            source = self.sources.get(mid)
            if source is None or SOURCE_KINDS.get(source) is not codec.kind:
                # Only an announced track of the announced kind becomes a producer, whatever the SDP holds.
                log.warning("%s: section %s is no announced %s track", self.transport.id, mid, codec.kind)
                return
            encoding = parameters.encodings[0] if parameters.encodings else None
            rids = self.rids.get(mid, ())
            cap = sum(LAYER_BITRATES[rid] for rid in rids) if rids else self.max_bitrates.get(source, 1_500_000)
            producer = self.live.session.add_producer(
                self.transport,
                f"{self.transport.id}:{mid}",
                mid=mid,
                codec=codec,
                extensions=negotiated_extensions(parameters),
                ssrc=encoding.ssrc if encoding else None,
                rtx_ssrc=encoding.rtx.ssrc if encoding and encoding.rtx else None,
                rids=rids,
                source=source,
                owner=self.owner,
                role=self.role,
                max_bitrate=cap,
            )
            self.live.arm_timer()
            if self.on_producer is not None:
                await self.on_producer(producer)

        transceiver.receiver.receive = receive  # type: ignore[method-assign]

    def _hook_sender(self, transceiver: RTCRtpTransceiver) -> None:
        sender = transceiver.sender

        async def send(parameters: Any) -> None:
            producer = self.pending.pop(transceiver, None)
            if producer is None or producer.closed or self.closed or transceiver.mid is None:
                return
            codec = negotiated_codec(parameters)
            now = self.live.now()
            previous = self.continue_from.pop(transceiver, None)
            initial_seq, initial_ts = previous.successor_start(now) if previous is not None else (None, None)
            consumer = self.live.session.add_consumer(
                self.transport,
                producer,
                ssrc=sender._ssrc,
                rtx_ssrc=sender._rtx_ssrc,
                payload_type=codec.payload_type,
                rtx_payload_type=codec.rtx_payload_type,
                mid=transceiver.mid,
                extensions=negotiated_extensions(parameters),
                initial_seq=initial_seq,
                initial_ts=initial_ts,
                now=now,
            )
            self.consumers[transceiver.mid] = consumer
            if self.on_consumer is not None:
                self.on_consumer(consumer)
            self.live.flush()

        sender.send = send  # type: ignore[method-assign]

    def _install(self, dtls: Any) -> None:
        """Take SRTP datagrams off aioice's receive callback, leaving DTLS to aiortc."""
        self._dtls = dtls
        connection = dtls.transport._connection
        self._ice = connection
        use_media_network(connection, self.network, self.live.session.stats)
        put = connection._queue.put_nowait
        transport = self.transport
        live = self.live
        stats = live.session.stats
        drops = stats.drops
        loop_time = live.loop.time
        clock = time.perf_counter

        def data_received(data: bytes, component: int) -> None:
            # Only DTLS records (RFC 7983: first byte 20-63) and, before keys exist, nothing else
            # reaches aiortc: its receive loop dies on an empty datagram, taking the connection with it.
            if len(data) < 2:
                drops[DropReason.MALFORMED_RTP] += 1
                return
            rx = dtls._rx_srtp
            if rx is None or 19 < data[0] < 64:
                put((data, component))
                return
            if not 127 < data[0] < 192:
                drops[DropReason.MALFORMED_RTP] += 1
                return
            arrival = clock()
            try:
                if 191 < data[1] < 224:
                    transport.receive_rtcp(rx.unprotect_rtcp(data), loop_time())
                    live.flush()
                    return
                transport.receive_rtp(rx.unprotect(data), loop_time())
            except pylibsrtp.Error:
                drops[DropReason.SRTP_ERROR] += 1
                return
            live.flush()
            stats.observe_forwarding(clock() - arrival)

        connection.data_received = data_received

    def ice_report(self) -> tuple[str, Counter[str]]:
        """The kind of path in use ("none" yet) and the kinds of candidates the client offered."""
        if self._ice is None:
            return "none", Counter()
        return ice_path(self._ice), offered(self._ice)

    def send(self, rtp: list[bytes], rtcp: list[bytes]) -> None:
        dtls = self._dtls
        tx = dtls._tx_srtp if dtls is not None else None
        pair = self._ice._nominated.get(1) if self._ice is not None else None
        if tx is None or pair is None or pair.protocol.transport is None:
            self.live.session.stats.drop(DropReason.NOT_CONNECTED, len(rtp) + len(rtcp))
            return
        protector = self._protector
        if protector is None or protector.session is not tx:
            protector = self._protector = SrtpProtector(tx)
        route = self._route
        if route[0] is not pair:
            route = self._route = self._find_route(pair)
        sender = route[1]
        if sender is not None:
            # Queued in the shared socket's slots; LiveSession.flush sends them all at its end.
            sender.queue(protector, rtp, False, route[2])
            if rtcp:
                sender.queue(protector, rtcp, True, route[2])
            self.live.senders[sender] = None
            return
        sendto = pair.protocol.transport.sendto
        addr = pair.remote_addr
        protect = protector.protect
        sent = 0
        for packet in rtp:
            protected = protect(packet)
            sent += len(protected)
            sendto(protected, addr)
        self.live.session.stats.bytes_forwarded += sent
        for packet in rtcp:
            sendto(protector.protect_rtcp(packet), addr)

    @staticmethod
    def _find_route(pair: Any) -> tuple[Any, BatchSender | None, Any]:
        """A pair on a shared socket sends in batches; one on a socket of its own (the range),
        through a TURN relay, or to an address the socket's family cannot hold sends each datagram
        with the transport's sendto."""
        protocol = pair.protocol
        if isinstance(protocol, SharedPortProtocol):
            sender = protocol.shared.sender
            if sender is not None:
                try:
                    return pair, sender, sender.sockaddr(pair.remote_addr)
                except OSError:
                    # No address in the log: participants' IP addresses stay out of it.
                    log.debug("a remote address the shared socket's family cannot hold: sent one by one")
        return pair, None, None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.pending.clear()
        self.continue_from.clear()
        if not self.transport.closed:
            self.live.session.close_transport(self.transport)
        self.live.peers.pop(self.transport.id, None)
        try:
            await self.pc.close()
        except Exception:  # aiortc may fail closing a half-negotiated connection; the sockets go anyway
            log.debug("peer connection close failed", exc_info=True)
