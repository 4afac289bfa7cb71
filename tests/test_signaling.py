"""Hostile and malformed signaling: clear errors, no crash, no state change."""

from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.protocol import MODERATION_ACTIONS, ProtocolError, decode
from signaling.tokens import Role, TokenError, mint_join_token, verify_join_token

from .conftest import RunningServer
from .peers import Peer
from .test_media_e2e import wait_for

ACCEPTED = (
    "join",
    "publish",
    "subscribe_answer",
    "unpublish",
    "leave",
    "ping",
    "chat",
    "hand",
    "media",
    "moderate",
    "view",
    "candidate",
    "relay_path",
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*ACCEPTED, "x"])},
    optional={
        "protocol": st.sampled_from(["udp", "tcp", "tls"]) | json_values,
        "token": json_values,
        "sdp": json_values,
        "tracks": json_values,
        "mid": json_values,
        "id": json_values,
        "text": json_values,
        "raised": json_values,
        "source": st.sampled_from(["microphone", "camera", "screen"]) | json_values,
        "enabled": json_values,
        "action": st.sampled_from(MODERATION_ACTIONS) | json_values,
        "participant_id": json_values,
        "all": json_values,
        "value": json_values,
        "locks": st.dictionaries(st.sampled_from(["microphone", "chat", "x"]), json_values, max_size=3) | json_values,
        "tiles": st.lists(
            st.fixed_dictionaries({}, optional={"track_id": json_values, "width": json_values, "height": json_values})
            | json_values,
            max_size=4,
        )
        | json_values,
        "pinned": json_values,
        "audio_only": json_values,
        "connection": st.sampled_from(["publish", "subscribe"]) | json_values,
        "candidate": st.fixed_dictionaries(
            {},
            optional={
                "candidate": st.text(max_size=40) | json_values,
                "sdpMid": json_values,
                "sdpMLineIndex": json_values,
            },
        )
        | json_values,
    },
)


@given(st.one_of(st.text(max_size=200), messages.map(json.dumps), json_values.map(json.dumps)))
def test_decode_accepts_or_refuses_cleanly(text: str) -> None:
    try:
        message = decode(text)
    except ProtocolError as exc:
        assert exc.code in {"bad_message", "unknown_type", "unsupported_version"}
    else:
        assert message["type"] in ACCEPTED


TILE = {"track_id": "a1:pub:1", "width": 640, "height": 360}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # a view: tiles by track id, the largest size when one is named twice
        (
            {"tiles": [TILE, {**TILE, "width": 160, "height": 900}], "pinned": "b2", "audio_only": True},
            {"tiles": {"a1:pub:1": (640, 900)}, "pinned": "b2", "audio_only": True},
        ),
        ({"tiles": []}, {"tiles": {}, "pinned": None, "audio_only": False}),  # a hidden tab
        (
            {"tiles": [TILE] * 64, "pinned": None},
            {"tiles": {"a1:pub:1": (640, 360)}, "pinned": None, "audio_only": False},
        ),
        ({"tiles": [TILE] * 65}, "bad_message"),  # at most 64 tiles
        ({}, "bad_message"),
        ({"tiles": {"a1:pub:1": [640, 360]}}, "bad_message"),
        ({"tiles": ["a1:pub:1"]}, "bad_message"),
        ({"tiles": [{**TILE, "width": -1}]}, "bad_message"),
        ({"tiles": [{**TILE, "width": 16385}]}, "bad_message"),
        ({"tiles": [{**TILE, "height": 1.5}]}, "bad_message"),
        ({"tiles": [{**TILE, "height": True}]}, "bad_message"),
        ({"tiles": [{**TILE, "track_id": ""}]}, "bad_message"),
        ({"tiles": [{**TILE, "track_id": "x" * 129}]}, "bad_message"),
        ({"tiles": [{**TILE, "track_id": 7}]}, "bad_message"),
        ({"tiles": [], "pinned": 3}, "bad_message"),
        ({"tiles": [], "pinned": "x" * 129}, "bad_message"),
        ({"tiles": [], "audio_only": "yes"}, "bad_message"),
    ],
)
def test_view_decoding(fields: dict, expected: dict | str) -> None:  # type: ignore[type-arg]
    text = json.dumps({"type": "view", "id": 4, **fields})
    if isinstance(expected, str):
        with pytest.raises(ProtocolError) as caught:
            decode(text)
        assert (caught.value.code, caught.value.ref, caught.value.fatal) == (expected, 4, False)
    else:
        assert decode(text) == {"type": "view", "id": 4, **expected}


SECRET = "a test secret of at least 32 bytes"


def test_tokens_are_signed_and_expire() -> None:
    token = mint_join_token(SECRET, "c1", "Ana", Role.STUDENT, ttl=60)
    grant = verify_join_token(SECRET, token)
    assert (grant.class_id, grant.name, grant.role) == ("c1", "Ana", Role.STUDENT)
    with pytest.raises(TokenError):
        verify_join_token("another secret of thirty-two bytes!", token)
    with pytest.raises(TokenError):
        verify_join_token(SECRET, mint_join_token(SECRET, "c1", "Ana", Role.STUDENT, ttl=-1))
    with pytest.raises(TokenError):
        verify_join_token(SECRET, token[:-2] + "AA")
    assert grant.account is None  # a guest's token names no account
    account = "0123456789abcdef" * 2
    assert (
        verify_join_token(SECRET, mint_join_token(SECRET, "c1", "Ana", Role.STUDENT, 60, account=account)).account
        == account
    )
    with pytest.raises(TokenError):  # signed, but not naming an account as the server writes them
        verify_join_token(SECRET, mint_join_token(SECRET, "c1", "Ana", Role.STUDENT, 60, account="../x"))


async def ws_exchange(url: str, frames: list[str | bytes]) -> list[dict]:  # type: ignore[type-arg]
    replies = []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as ws:
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                replies.append({"type": "closed"})
                break
            replies.append(json.loads(msg.data))
    return replies


@pytest.mark.parametrize(
    ("frames", "codes"),
    [
        (["not json"], ["bad_message"]),
        ([b"\x00\x01"], ["bad_message"]),
        (["[]"], ["bad_message"]),
        (['{"type": "nope"}'], ["unknown_type"]),
        (['{"type": "publish", "sdp": "v=0", "tracks": []}'], ["not_joined"]),
        (['{"type": "subscribe_answer", "sdp": "v=0"}'], ["not_joined"]),
        (['{"type": "join", "protocol": 99, "token": "x"}'], ["unsupported_version"]),
        (['{"type": "join", "protocol": 1, "token": "forged"}'], ["invalid_token"]),
        (['{"type": "join", "protocol": 1, "token": 5}'], ["bad_message"]),
        (['{"type": "publish", "sdp": "v=0", "tracks": [{"mid": "0", "source": "webcam"}]}'], ["bad_message"]),
        (['{"type": "ping", "id": 3}'], ["pong"]),
    ],
)
async def test_hostile_messages_get_clear_errors(
    classe: RunningServer, frames: list[str | bytes], codes: list[str]
) -> None:
    replies = await ws_exchange(classe.url, frames)
    assert [r.get("code", r["type"]) for r in replies] == codes
    assert classe.server.census() == (0, 0, 0)


async def test_joined_participant_survives_bad_messages_and_bad_sdp(classe: RunningServer) -> None:
    peer = Peer(classe.url, "c", "Ana")
    other = Peer(classe.url, "other-class", "Bob")
    try:
        await peer.join()
        await other.join()
        for bad, code in (
            ({"type": "publish", "sdp": "garbage", "tracks": []}, "bad_sdp"),
            (
                {
                    "type": "publish",
                    "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n",
                    "tracks": [{"mid": "1", "source": "camera"}],
                },
                "bad_sdp",
            ),
            ({"type": "subscribe_answer", "sdp": "v=0"}, "unexpected_answer"),
            ({"type": "unpublish", "mid": "9"}, "unknown_track"),
            ({"type": "join", "protocol": 1, "token": await peer.token()}, "already_joined"),
        ):
            await peer.send(bad)
            reply = await peer.expect("error")  # past `videos`, which the server sends when it likes
            assert reply["code"] == code, reply
        await peer.send({"type": "ping"})
        await peer.expect("pong")
        assert classe.server.census() == (2, 2, 0)
        # one class's events never reach another class
        assert not any(e["type"] == "participant_joined" for e in other.events)
    finally:
        await peer.close()
        await other.close()


async def test_a_relay_path_counts_only_a_connection_the_server_sees_relayed(classe: RunningServer) -> None:
    # `relay_path` is the browser's word for the operators' counts: a peer connected directly
    # cannot make the server count relays, however often it says so.
    teacher = Peer(classe.url, "relais", "Prof", role="teacher")
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        await wait_for(lambda: classe.server.ice.connected["host"] >= 1)
        for _ in range(3):
            await teacher.send({"type": "relay_path", "connection": "publish", "protocol": "tls"})
        await teacher.send({"type": "relay_path", "connection": "publish", "protocol": "quic"})
        assert (await teacher.expect("error"))["code"] == "bad_message"
        await teacher.send({"type": "ping"})
        await teacher.expect("pong")
        assert not classe.server.ice.relayed
        async with teacher.http.get(classe.metrics_url) as response:
            assert "classe_ice_relay_connections_total{" not in await response.text()
    finally:
        await teacher.close()


async def test_a_second_connection_of_the_same_participant_replaces_the_first(classe: RunningServer) -> None:
    """A reload or a network change: the new connection takes over, the class never holds two copies."""
    first = Peer(classe.url, "c", "Ana")
    second = Peer(classe.url, "c", "Ana")
    try:
        token = await first.token()
        await first.join(token)
        await second.join(token)
        with pytest.raises(AssertionError, match="replaced"):
            await first.expect("never", timeout=5)
        assert second.id == first.id
        assert classe.server.census()[1] == 1
    finally:
        await first.close()
        await second.close()


async def test_a_client_that_never_completes_ice_is_removed(classe: RunningServer) -> None:
    classe.settings.ice_timeout_seconds = 1.0
    peer = Peer(classe.url, "c", "Mute")
    try:
        await peer.join()
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = "\n".join(line for line in pc.localDescription.sdp.splitlines() if not line.startswith("a=candidate"))
        await peer.send({"type": "publish", "sdp": sdp, "tracks": [{"mid": "0", "source": "microphone"}]})
        await peer.expect("publish_answer")
        with pytest.raises(AssertionError, match="ice_failed"):
            await peer.expect("never", timeout=5)
        await pc.close()
        assert classe.server.census() == (0, 0, 0)
    finally:
        await peer.close()
