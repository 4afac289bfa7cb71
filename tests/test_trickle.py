"""Trickle ICE from the client: candidates sent one by one after the SDP, with real aiortc peers,
and what a hostile participant can make the server do with them (docs/protocol.md, `candidate`)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from hypothesis import given
from hypothesis import strategies as st

from signaling.candidates import MAX_REMOTE_CANDIDATES, parse
from signaling.participant import Participant
from signaling.protocol import ProtocolError

from .conftest import RunningServer
from .peers import NumberedVideoTrack, Peer
from .test_media_e2e import assert_clean_video, wait_for


def participant(classe: RunningServer, name: str) -> Participant:
    return next(p for room in classe.server.rooms.values() for p in room.participants.values() if p.name == name)


def remote_candidates(p: Participant, connection: str) -> list[Any]:
    """What the server's ICE agent knows of the client's candidates on one connection."""
    peer = p.publisher if connection == "publish" else p.subscriber
    assert peer is not None
    return list(peer.pc.getTransceivers()[0].receiver.transport.transport._connection.remote_candidates)


def candidate(address: str, port: int, kind: str = "host", mid: str | None = "0") -> dict[str, Any]:
    return {"candidate": f"candidate:1 1 udp 2130706431 {address} {port} typ {kind}", "sdpMid": mid}


async def say(peer: Peer, connection: str, fields: Any, ref: Any = None) -> None:
    await peer.send({"type": "candidate", "id": ref, "connection": connection, "candidate": fields})


async def errors_until_pong(peer: Peer) -> list[dict[str, Any]]:
    """The errors the server answered before the pong to a ping sent now: it handles messages in order."""
    await peer.send({"type": "ping", "id": "mark"})
    errors = []
    while True:
        message = await asyncio.wait_for(peer.messages.get(), 10)
        if message["type"] == "pong" and message.get("ref") == "mark":
            return errors
        if message["type"] == "error":
            errors.append(message)


words = st.sampled_from(
    [
        "candidate:1",
        "1",
        "0",
        "udp",
        "tcp",
        "x",
        "-1",
        "99999999999",
        "127.0.0.1",
        "::1",
        "a.local",
        "typ",
        "host",
        "relay",
        "srflx",
        "raddr",
        "rport",
        "tcptype",
        "9",
        "",
    ]
)


@given(st.lists(words, max_size=12).map(" ".join) | st.text(max_size=60))
def test_a_candidate_line_is_read_or_refused_as_bad_candidate_never_an_error(line: str) -> None:
    try:
        candidate = parse({"candidate": line, "sdpMid": "0", "sdpMLineIndex": None}, ref=1)
    except ProtocolError as exc:
        assert exc.code == "bad_candidate" and exc.ref == 1
    else:
        assert candidate is None or (candidate.type in ("host", "srflx", "relay") and 0 <= candidate.port <= 65535)


@pytest.fixture
def mdns_queries(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every time the process would open aioice's multicast mDNS socket (to resolve a `.local` name)."""
    opened: list[object] = []
    resolve = aioice.ice.get_or_create_mdns_protocol

    async def spy(subscriber: object) -> Any:
        opened.append(subscriber)
        return await resolve(subscriber)

    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", spy)
    return opened


async def test_a_client_that_trickles_its_candidates_sends_and_receives(classe: RunningServer) -> None:
    teacher = Peer(classe.url, "trickle", "Prof", role="teacher", trickle=True)
    student = Peer(classe.url, "trickle", "Léa", trickle=True)
    try:
        await teacher.join()
        await student.join()
        await teacher.publish()
        await wait_for(lambda: bool(student.video()) and len(student.video()[0].numbers) >= 30, 30)
        assert_clean_video(student.video()[0], 30)
        # The descriptions carried no candidate: the server learnt each one from a `candidate` message.
        said = teacher.said + student.said
        descriptions = [m["sdp"] for m in said if m["type"] in ("publish", "subscribe_answer")]
        assert descriptions and not any("a=candidate" in sdp for sdp in descriptions)
        assert [m["candidate"] for m in said if m["type"] == "candidate"][-1] is None  # the end, said
        for name, connection in (("Prof", "publish"), ("Léa", "subscribe")):
            known = remote_candidates(participant(classe, name), connection)
            assert {c.host for c in known if c.type == "host"} == {"127.0.0.1"}, known
        assert [e for e in teacher.events + student.events if e["type"] == "error"] == []
    finally:
        await teacher.close()
        await student.close()


MALFORMED = [
    ({"candidate": "garbage", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp x 127.0.0.1 5000 typ host", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 host typ", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 sctp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ invented", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ prflx", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 70000 typ host", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 0 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 99999999999 127.0.0.1 5000 typ host", "sdpMid": "0"}, "bad_candidate"),
    # A name the server would have to look up: never.
    ({"candidate": "candidate:1 1 udp 1 turn.example.org 5000 typ relay", "sdpMid": "0"}, "bad_candidate"),
    (candidate("127.0.0.1", 5000, mid="9"), "bad_candidate"),  # no such section
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMLineIndex": 3}, "bad_candidate"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host"}, "bad_message"),  # no section named
    ({"candidate": "candidate:" + "1" * 600, "sdpMid": "0"}, "bad_message"),
    ({"candidate": 7, "sdpMid": "0"}, "bad_message"),
    ({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMLineIndex": True}, "bad_message"),
    ("candidate:1 1 udp 1 127.0.0.1 5000 typ host", "bad_message"),
]


async def test_candidates_are_checked_bounded_and_go_nowhere_without_a_connection(
    classe: RunningServer, mdns_queries: list[object]
) -> None:
    prof = Peer(classe.url, "hostile", "Prof", role="teacher", trickle=True)
    try:
        await prof.join()
        me = participant(classe, "Prof")
        # Before any offer neither connection exists on the server: dropped, without a word.
        for connection in ("publish", "subscribe"):
            await say(prof, connection, candidate("127.0.0.1", 5000), ref=connection)
            await say(prof, connection, None)
        assert await errors_until_pong(prof) == []
        assert me.publisher is None and me.subscriber.pc.localDescription is None and me._early == []

        # A camera offered without candidates, and no end of them: the connection takes more.
        prof.pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        prof.pub.addTransceiver(NumberedVideoTrack(), direction="sendonly")
        await prof.pub.setLocalDescription(await prof.pub.createOffer())
        sdp, own = prof.described(prof.pub.localDescription.sdp)
        await prof.send({"type": "publish", "id": 1, "sdp": sdp, "tracks": [{"mid": "0", "source": "camera"}]})
        answer = await prof.expect("publish_answer")
        await prof.pub.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        for fields in own:
            await say(prof, "publish", fields)
        await wait_for(lambda: me.publisher is not None and me.publisher.pc.connectionState == "connected")
        before = len(remote_candidates(me, "publish"))
        # Malformed: a clear error each, nothing added, the connection unharmed.
        for ref, (fields, _) in enumerate(MALFORMED):
            await say(prof, "publish", fields, ref)
        await prof.send({"type": "candidate", "id": "no connection", "connection": "other", "candidate": None})
        await prof.send({"type": "candidate", "id": "no candidate", "connection": "publish"})
        replies = await errors_until_pong(prof)
        codes = [(r["type"], r.get("ref"), r.get("code")) for r in replies]
        expected = [("error", ref, code) for ref, (_, code) in enumerate(MALFORMED)]
        assert codes == [*expected, ("error", "no connection", "bad_message"), ("error", "no candidate", "bad_message")]
        assert all(r.get("fatal") is None for r in replies)
        assert len(remote_candidates(me, "publish")) == before

        # A flood of addresses: the connection takes MAX_REMOTE_CANDIDATES in all, then refuses.
        for i in range(40):
            await say(prof, "publish", candidate("127.0.0.1", 6000 + i), ref=i)
        replies = await errors_until_pong(prof)
        taken = 40 - len(replies)
        assert taken == MAX_REMOTE_CANDIDATES - before
        assert {(r["code"], r.get("fatal")) for r in replies} == {("too_many_candidates", None)}
        assert [r["ref"] for r in replies] == list(range(taken, 40))
        assert len(remote_candidates(me, "publish")) == MAX_REMOTE_CANDIDATES
        # An address it knows is no new one; the end of candidates is taken.
        await say(prof, "publish", candidate("127.0.0.1", 6000))
        await say(prof, "publish", None)
        assert await errors_until_pong(prof) == []
        assert me.publisher.pc.connectionState == "connected"

        # An mDNS name is never resolved: no multicast question is asked, nothing is added.
        late = Peer(classe.url, "hostile", "Zoé", trickle=True)
        try:
            await late.join()
            await late.publish(audio=False)
            zoe = participant(classe, "Zoé")
            await say(late, "publish", candidate("0f1e2d3c-aaaa-bbbb-cccc-0123456789ab.local", 7000))
            assert await errors_until_pong(late) == []
            assert all(not c.host.endswith(".local") for c in remote_candidates(zoe, "publish"))
        finally:
            await late.close()
        assert mdns_queries == []
    finally:
        await prof.close()


async def test_trickled_candidates_count_against_a_budget(classe: RunningServer) -> None:
    flood = Peer(classe.url, "budget", "Flot", role="teacher")
    try:
        await flood.join()
        for i in range(100):
            await say(flood, "subscribe", candidate("127.0.0.1", 8000 + i), ref=i)
        replies = await errors_until_pong(flood)
        # 62 at once (both connections' share and their ends), refilled over 10 s: the rest refused.
        assert {r["code"] for r in replies} == {"rate_limited"}
        assert 100 - 2 * (MAX_REMOTE_CANDIDATES + 1) - 2 <= len(replies) <= 100 - 2 * (MAX_REMOTE_CANDIDATES + 1)
    finally:
        await flood.close()


async def test_offers_and_answers_keep_within_the_same_cap_and_their_mdns_names_are_not_resolved(
    classe: RunningServer, mdns_queries: list[object]
) -> None:
    teacher = Peer(classe.url, "sdp", "Prof", role="teacher")
    student = Peer(classe.url, "sdp", "Léo")
    hidden = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )127\.0\.0\.1 ", re.MULTILINE)
    mdns = r"\g<1>4b1d8e3a-1111-2222-3333-444455556666.local "
    sent = teacher.send

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "publish" and message["id"] == "many":
            lines = "".join(f"a=candidate:{i} 1 udp 1 127.0.0.1 {9000 + i} typ host\r\n" for i in range(31))
            message = {**message, "sdp": message["sdp"].replace("a=end-of-candidates", lines.rstrip("\r\n"))}
        elif message["type"] == "publish":
            # A browser without camera permission hides its address behind an mDNS name.
            message = {**message, "sdp": hidden.sub(mdns, message["sdp"])}
        await sent(message)

    teacher.send = send  # type: ignore[method-assign]
    try:
        await teacher.join()
        await student.join()
        await teacher.publish()
        # The server could not check the hidden address, but the client's checks showed it: media flows.
        await wait_for(lambda: bool(student.video()) and len(student.video()[0].numbers) >= 20, 30)
        prof = participant(classe, "Prof")
        kinds = {c.type for c in remote_candidates(prof, "publish")}
        assert kinds == {"prflx"}, kinds
        assert mdns_queries == []
        # An offer with more addresses than a connection takes is refused whole.
        assert teacher.pub is not None
        teacher.pub.addTransceiver("video", direction="sendonly")
        await teacher.pub.setLocalDescription(await teacher.pub.createOffer())
        tracks = [{"mid": teacher.pub.getTransceivers()[-1].mid, "source": "screen"}]
        await teacher.send({"type": "publish", "id": "many", "sdp": teacher.pub.localDescription.sdp, "tracks": tracks})
        refusal = await teacher.expect("error")
        assert (refusal["code"], refusal["ref"], refusal.get("fatal")) == ("too_many_candidates", "many", None)
        assert prof.publisher is not None and set(prof.publisher.sources.values()) == {"camera", "microphone"}
    finally:
        await teacher.close()
        await student.close()
