"""A participant's media: its publishing and subscribing peer connections and what they carry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCIceCandidate, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription

from sfu.adapter.ice import best_offered
from sfu.adapter.peer import SOURCE_KINDS, PeerTransport
from sfu.core import Consumer, Producer
from sfu.core.selection import View

from .candidates import MAX_REMOTE_CANDIDATES, RemoteCandidates, address, parse
from .events import Event
from .protocol import ProtocolError, encode
from .ratelimit import RateLimiter
from .sdp import SdpError, media_sections, publisher_answer
from .tokens import JoinGrant, Role

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)
Send = Callable[[str], Awaitable[None]]
# Sections a client may keep on its publishing connection for tracks it unpublished (a screen share
# stopped and started again adds one each time, unless the client stops the transceiver).
MAX_UNPUBLISHED_SECTIONS = 32


def track_info(producer: Producer) -> dict[str, str]:
    return {
        "track_id": producer.id,
        "participant_id": producer.owner,
        "kind": producer.kind.value,
        "source": producer.source,
    }


class Participant:
    """One person in a live class, with a publishing and a subscribing peer connection."""

    def __init__(self, room: Room, grant: JoinGrant, send: Send) -> None:
        self.room = room
        self.grant = grant
        self.id = grant.participant_id
        self.name = grant.name
        self.role = grant.role
        self.token_id = grant.token_id
        self.send = send
        # Whether the SFU forwards this participant's microphone and camera: the participant's own
        # choice, or a teacher's (mute, camera off); locks and holds keep a student from turning them back on.
        self.enabled = {
            source: room.state.may_enable(grant.role, source, grant.participant_id)
            for source in ("microphone", "camera")
        }
        self.hand = False
        self.limits = RateLimiter(burst=5, window=10.0)  # chat, hand, media, (un)publish: one bucket each
        # `view` follows scrolling and resizing (debounced by the page): a budget of its own, larger.
        self.view_limits = RateLimiter(burst=10, window=5.0)
        self.view: View | None = None  # the tiles the page draws; None until its first `view`
        # Trickled candidates: enough for both connections' whole share at once, then as many again over 10 s.
        self.candidate_limits = RateLimiter(burst=2 * (MAX_REMOTE_CANDIDATES + 1), window=10.0)
        # The addresses each connection was given (in its SDP or trickled), within MAX_REMOTE_CANDIDATES.
        self._remote = {"publish": RemoteCandidates(), "subscribe": RemoteCandidates()}
        # Candidates for the subscribing connection that came before its answer was applied.
        self._early: list[RTCIceCandidate | None] = []
        self.publisher: PeerTransport | None = None
        self.subscriber = room.new_peer(f"{self.id}:sub", None)
        self.subscriber.on_consumer = lambda consumer: room.forwarding.consumer_added(self, consumer)
        self.tracks: dict[str, str] = {}  # subscriber mid -> track id
        self._codecs: dict[str, str] = {}  # subscriber mid -> codec of its track
        self._free: dict[str, list[tuple[RTCRtpTransceiver, Consumer | None]]] = {}  # inactive sections by codec
        self._answer: asyncio.Future[str] | None = None
        self._dirty = False
        self._negotiation: asyncio.Task[None] | None = None
        self._watchdogs: set[asyncio.Task[None]] = set()
        self._subscriber_watched = False
        self.closed = False
        self.media: bool | None = None  # its media connection is up (`media_up`); None while it has none

    def describe(self) -> dict[str, object]:
        held = sorted(self.room.state.held.get(self.id, ()))
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "hand": self.hand,
            **self.enabled,
            "held": held,
            "screen_allowed": self.role is Role.TEACHER or self.id in self.room.state.screen_allowed,
            "media": self.media,
        }

    def media_up(self) -> bool | None:
        """Whether the participant's media connection is up, for the teachers' list: the one it
        receives on, or while that one is coming up or not needed (nobody publishes) the one it
        sends on; False while the first is coming up and the second says nothing; None while
        it has no media connection, or only one still coming up (docs/protocol.md)."""
        receiving = self.subscriber.pc.connectionState if self._subscriber_watched else None
        sending = self.publisher.pc.connectionState if self.publisher is not None else None
        for state in (receiving, sending):
            if state in ("connected", "failed", "disconnected"):
                return state == "connected"
        return False if receiving is not None else None

    def producers(self, *sources: str) -> list[Producer]:
        if self.publisher is None:
            return []
        return [p for p in self.publisher.transport.producers_by_mid.values() if p.source in sources]

    def switched_by(self, switch: str) -> tuple[str, ...]:
        """The sources that the microphone or camera switch turns off: a student's microphone
        switch (their own, a teacher's mute, a hold) covers all their audio, screen audio included."""
        if switch == "microphone" and self.role is Role.STUDENT:
            return ("microphone", "screen_audio")
        return (switch,)

    def forwards(self, source: str) -> bool:
        """Whether the SFU may forward a track of this source now."""
        return all(self.enabled[switch] for switch in self.enabled if source in self.switched_by(switch))

    async def publish(self, sdp: str, tracks: list[dict[str, str]], ref: Any) -> None:
        """Answer a publishing offer, after checking that it holds only what it announces."""
        announced = {t["mid"]: t["source"] for t in tracks}
        if any(source.startswith("screen") for source in announced.values()) and not self.room.state.may_enable(
            self.role, "screen", self.id
        ):
            raise ProtocolError("locked", "a teacher has locked screen sharing", ref)
        rids = self._check_offer(sdp, announced, ref)
        created = self.publisher is None
        remote = RemoteCandidates() if created else self._remote["publish"]
        usable = remote.from_sdp(sdp)
        if usable is None:
            raise ProtocolError("too_many_candidates", f"at most {remote.limit} candidates per connection", ref)
        sdp = usable
        earlier = set(self.publisher.sources) if self.publisher else set()
        if self.publisher is None:
            self._remote["publish"] = remote
            self.publisher = self.room.new_peer(f"{self.id}:pub", self.room.on_producer, self.id, self.role.value)
        peer = self.publisher
        peer.sources.update(announced)
        peer.rids.update(rids)
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            peer.prepare()
            answer = await peer.pc.createAnswer()
            await peer.pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc's SDP parser fails with any kind of error on input it cannot use
            if created:
                self.publisher = None
                await peer.close()
            else:
                for mid in announced.keys() - earlier:
                    peer.sources.pop(mid, None)
            detail = str(exc) or type(exc).__name__
            raise ProtocolError("bad_sdp", f"the offer could not be used: {detail}", ref) from None
        if created:
            self._watch_ice(peer)
        answer_sdp = publisher_answer(peer.pc.localDescription.sdp, peer.rids)
        await self.send(encode("publish_answer", sdp=answer_sdp, ref=ref))

    def _check_offer(self, sdp: str, announced: dict[str, str], ref: Any) -> dict[str, tuple[str, ...]]:
        """Refuse, before anything is created, an offer with sections beyond its tracks or mislabelled;
        returns the simulcast encodings of each section (only a camera may have them).

        Every section must be an announced track, one announced before, or one unpublished earlier
        on this connection (a client keeps its section); the announced and earlier tracks together
        stay within `max_tracks_per_participant`, and unpublished sections within
        MAX_UNPUBLISHED_SECTIONS, so that one participant cannot make the server build, and offer
        everyone else, hundreds of tracks.
        """
        limit = self.room.settings.max_tracks_per_participant
        retired = self.publisher.retired if self.publisher else set()
        # Tracks announced before on this connection, whether or not their media has started yet.
        earlier = (
            {mid: source for mid, source in self.publisher.sources.items() if mid not in retired}
            if self.publisher
            else {}
        )
        if len(earlier.keys() | announced.keys()) > limit:
            raise ProtocolError("too_many_tracks", f"at most {limit} published tracks", ref)
        try:
            sections = media_sections(sdp)
        except SdpError as exc:
            raise ProtocolError("bad_sdp", str(exc), ref) from None
        if not sections:
            raise ProtocolError("bad_sdp", "the offer has no media section", ref)
        by_mid = {s.mid: s for s in sections}
        for mid, source in announced.items():
            section = by_mid.get(mid)
            if section is None:
                raise ProtocolError("bad_sdp", "the offer has no media section for every announced track", ref)
            if section.kind != SOURCE_KINDS[source]:
                raise ProtocolError("bad_sdp", f"a {source} track must be {SOURCE_KINDS[source]}", ref)
            if earlier.get(mid, source) != source:
                raise ProtocolError("bad_sdp", "a published track keeps its source", ref)
        simulcast = {s.mid: s.rids for s in sections if s.rids}
        if any(announced.get(mid, earlier.get(mid)) != "camera" for mid in simulcast):
            raise ProtocolError("bad_sdp", "only a camera may be sent in simulcast", ref)
        known = announced.keys() | earlier.keys() | retired
        unknown = [s.mid for s in sections if s.mid not in known]
        unpublished = sum(1 for s in sections if s.mid in retired)
        if unknown or unpublished > MAX_UNPUBLISHED_SECTIONS:
            raise ProtocolError(
                "bad_sdp",
                f"too many media sections: {len(sections)} for {len(announced)} announced tracks",
                ref,
            )
        return simulcast

    async def unpublish(self, mid: str, ref: Any) -> None:
        producer = self.publisher.transport.producers_by_mid.get(mid) if self.publisher else None
        if producer is None:
            raise ProtocolError("unknown_track", "no published track has this mid", ref)
        assert self.publisher is not None
        self.publisher.retired.add(mid)
        await self.room.remove_producer(producer, self.id)

    async def add_candidate(self, connection: str, fields: dict[str, Any] | None, ref: Any) -> None:
        """A candidate the client trickles for one of its connections; None: it has no more. Dropped
        for a connection that does not exist (yet) or is closed (docs/protocol.md, `candidate`)."""
        if not self.candidate_limits.take("candidate", time.monotonic()):
            raise ProtocolError("rate_limited", "too many candidates: wait a few seconds", ref)
        candidate = parse(fields, ref) if fields is not None else None
        if fields is not None and candidate is None:
            return  # an mDNS name: never resolved (signaling/candidates.py)
        peer = self.publisher if connection == "publish" else self.subscriber
        if peer is None or peer.closed or self.closed or peer.pc.localDescription is None:
            return
        if candidate is None and not self._remote[connection].addresses:
            return  # no address to check: aioice waits for the client's own checks (signaling/candidates.py)
        pc = peer.pc
        if candidate is not None:
            mids = [t.mid for t in pc.getTransceivers()]
            if candidate.sdpMid is not None:
                named = candidate.sdpMid in mids
            else:
                named = candidate.sdpMLineIndex is not None and candidate.sdpMLineIndex < len(mids)
            if not named:
                raise ProtocolError("bad_candidate", f"the {connection} connection has no such media section", ref)
            if not self._remote[connection].admit(address(candidate)):
                raise ProtocolError(
                    "too_many_candidates", f"at most {MAX_REMOTE_CANDIDATES} candidates per connection", ref
                )
        if pc.remoteDescription is None:
            # The subscribing connection's answer is on its way in: the candidate follows it.
            if candidate not in self._early:
                self._early.append(candidate)
            return
        await pc.addIceCandidate(candidate)

    def relay_path(self, connection: str, protocol: str) -> None:
        """How the browser reaches the TURN server of a connection it says is relayed: counted once
        per connection, when the server sees it relayed too (the remote candidate is the relay's,
        or learned from its checks before the candidate came)."""
        peer = self.publisher if connection == "publish" else self.subscriber
        if peer is None or peer.closed or peer.relay_reported or peer.ice_report()[0] not in ("relay", "prflx"):
            return
        peer.relay_reported = True
        self.room.ice.relayed[protocol] += 1

    def on_answer(self, sdp: str, ref: Any) -> None:
        if self._answer is None or self._answer.done():
            raise ProtocolError("unexpected_answer", "no subscription offer is waiting for an answer", ref)
        self._answer.set_result(sdp)

    def renegotiate(self) -> None:
        """Ask for a new subscription offer; offers are serialized, changes coalesced."""
        self._dirty = True
        if self._negotiation is None and not self.closed:
            self._negotiation = asyncio.create_task(self._negotiate())

    async def _negotiate(self) -> None:
        try:
            while self._dirty and not self.closed:
                self._dirty = False
                await self._offer_once()
        except ProtocolError as exc:
            await self.room.eject(self, exc)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("subscription negotiation failed for participant %s", self.id)
            await self.room.eject(
                self, ProtocolError("negotiation_failed", "the subscription could not be negotiated", fatal=True)
            )
        finally:
            self._negotiation = None

    async def _offer_once(self) -> None:
        peer = self.subscriber
        pc = peer.pc
        wanted = {p.id: p for p in self.room.live.session.producers.values() if not p.closed and p.owner != self.id}
        for transceiver in pc.getTransceivers():
            track_id = self.tracks.get(transceiver.mid or "")
            if track_id is not None and track_id not in wanted and transceiver.direction != "inactive":
                transceiver.direction = "inactive"
                consumer = peer.consumers.pop(transceiver.mid or "", None)
                if consumer is not None:
                    self.room.live.session.remove_consumer(consumer)
                mime = self._codecs.pop(transceiver.mid or "")
                self._free.setdefault(mime, []).append((transceiver, consumer))
                del self.tracks[transceiver.mid or ""]
        subscribed = set(self.tracks.values()) | {p.id for p in peer.pending.values()}
        for track_id, producer in wanted.items():
            if track_id in subscribed:
                continue
            mime = producer.codec.mime_type.lower()
            free = self._free.get(mime)
            if free:
                # Reuse a section left by a track that went: the SDP does not grow with every join and
                # leave, and the stream on its SSRC continues where the last one stopped.
                transceiver, previous = free.pop()
                transceiver.direction = "sendonly"
                if previous is not None:
                    peer.continue_from[transceiver] = previous
            else:
                transceiver = pc.addTransceiver(producer.kind.value, direction="sendonly")
                capabilities = RTCRtpSender.getCapabilities(producer.kind.value).codecs
                transceiver.setCodecPreferences([c for c in capabilities if c.mimeType.lower() in (mime, "video/rtx")])
            peer.pending[transceiver] = producer
        peer.prepare()
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        tracks = []
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            pending = peer.pending.get(transceiver)
            if pending is not None and mid is not None:
                self.tracks[mid] = pending.id
                self._codecs[mid] = pending.codec.mime_type.lower()
            published = wanted.get(self.tracks.get(mid or "", ""))
            if published is not None and transceiver.direction == "sendonly":
                tracks.append({"mid": mid, **track_info(published)})
        self._answer = asyncio.get_running_loop().create_future()
        await self.send(encode("subscribe_offer", sdp=pc.localDescription.sdp, tracks=tracks))
        try:
            sdp = await asyncio.wait_for(self._answer, self.room.settings.negotiation_timeout_seconds)
        except TimeoutError:
            raise ProtocolError("negotiation_timeout", "no answer to the subscription offer", fatal=True) from None
        usable = self._remote["subscribe"].from_sdp(sdp)
        if usable is None:
            raise ProtocolError(
                "too_many_candidates", f"at most {MAX_REMOTE_CANDIDATES} candidates per connection", fatal=True
            )
        try:
            await pc.setRemoteDescription(RTCSessionDescription(usable, "answer"))
        except Exception as exc:  # aiortc's SDP parser fails with any kind of error on input it cannot use
            detail = str(exc) or type(exc).__name__
            raise ProtocolError("bad_sdp", f"the answer could not be used: {detail}", fatal=True) from None
        early, self._early = self._early, []
        for candidate in early:
            await pc.addIceCandidate(candidate)
        if not self._subscriber_watched:
            self._subscriber_watched = True
            self._watch_ice(peer)

    def _watch_ice(self, peer: PeerTransport) -> None:
        """A client that never completes ICE is removed instead of holding ports forever. Each
        outcome is counted for the operators (`IceOutcomes`); a failure is logged on one line,
        with what the client offered, never its addresses."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        ice = self.room.ice

        async def watchdog() -> None:
            await asyncio.sleep(self.room.settings.ice_timeout_seconds)
            if peer.pc.connectionState != "connected" and not self.closed:
                _, kinds = peer.ice_report()
                ice.failed[best_offered(kinds)] += 1
                self.room.events.emit(
                    Event.ICE_FAILED,
                    self.room.id,
                    self.id,
                    self.role,
                    best_offered(kinds),
                    connection="publish" if peer is self.publisher else "subscribe",
                    offered=",".join(f"{kind}:{count}" for kind, count in sorted(kinds.items())) or "none",
                )
                await self.room.eject(
                    self, ProtocolError("ice_failed", "the media connection could not be established", fatal=True)
                )

        task = asyncio.create_task(watchdog())
        self._watchdogs.add(task)

        @peer.pc.on("connectionstatechange")
        async def on_state() -> None:
            connected = peer.pc.connectionState == "connected"
            if connected and not self.closed:
                ice.observe_connected(peer.ice_report()[0], loop.time() - started)
            media = self.media_up()
            if media != self.media and not self.closed:
                self.media = media  # the teachers see who has no media (docs/protocol.md)
                await self.room.participant_updated(self)
            if peer.pc.connectionState == "failed" and not self.closed:
                await self.room.eject(
                    self, ProtocolError("connection_lost", "the media connection was lost", fatal=True)
                )

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in (*self._watchdogs, self._negotiation):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._watchdogs.clear()
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
        if self.publisher is not None:
            for producer in list(self.publisher.transport.producers_by_mid.values()):
                await self.room.remove_producer(producer, self.id)
            await self.publisher.close()
        await self.subscriber.close()
