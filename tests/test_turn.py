"""TURN with a real coturn: the credentials the server mints are the only way in, they expire,
only participants let in get them, and the relay reaches the media server only."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import TurnTransport, create_turn_endpoint

from signaling.turn import credentials

from .conftest import RunningServer
from .coturn import Coturn, running_coturn
from .peers import Peer
from .test_access import new_class
from .web import Browser, code_of, teacher


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with running_coturn(tmp_path_factory.mktemp("coturn"), secret=secrets.token_urlsafe(24)) as server:
        yield server


@pytest.fixture
def settings_overrides(coturn: Coturn) -> dict[str, Any]:
    return {"turn_urls": coturn.urls(), "turn_secret": coturn.secret, "turn_credential_seconds": 600}


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


async def allocate(coturn: Coturn, username: str, password: str, transport: str = "udp") -> TurnTransport:
    """A relay allocation as a browser makes one (aioice's TURN client)."""
    context: ssl.SSLContext | None = None
    port, kind = coturn.port, transport
    if transport == "tls":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test's own certificate
        port, kind = coturn.tls_port, "tcp"
    relay, _ = await asyncio.wait_for(
        create_turn_endpoint(Sink, ("127.0.0.1", port), username, password, ssl=context, transport=kind), 10
    )
    return relay


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_coturn_takes_minted_credentials_and_refuses_expired_or_forged_ones(
    coturn: Coturn, transport: str
) -> None:
    now = int(time.time())
    relay = await allocate(coturn, *credentials(coturn.secret, "p1", now + 60), transport=transport)
    assert relay.get_extra_info("sockname") is not None  # a relayed address was allocated
    relay.close()
    with pytest.raises(TransactionFailed):  # expired: the same participant, a minute too late
        await allocate(coturn, *credentials(coturn.secret, "p1", now - 60), transport=transport)
    username, _ = credentials(coturn.secret, "p1", now + 60)
    forged = credentials("not-the-secret", "p1", now + 60)[1]
    with pytest.raises(TransactionFailed):
        await allocate(coturn, username, forged, transport=transport)
    with pytest.raises(TransactionFailed):  # a later expiry written on an old password
        await allocate(coturn, f"{now + 86_400}:p1", credentials(coturn.secret, "p1", now + 60)[1], transport)


async def test_the_relay_reaches_the_media_server_only(coturn: Coturn) -> None:
    loop = asyncio.get_running_loop()
    media, media_sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    other, other_sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.2", 0))
    relay = await allocate(coturn, *credentials(coturn.secret, "p1", int(time.time()) + 60))
    try:
        for _ in range(20):
            relay.sendto(b"to the media server", media.get_extra_info("sockname"))
            relay.sendto(b"anywhere else", other.get_extra_info("sockname"))
            await asyncio.sleep(0.05)
            if media_sink.received:
                break
        await asyncio.sleep(0.3)
        assert media_sink.received and not other_sink.received
    finally:
        relay.close()
        media.close()
        other.close()


def turn_entries(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for m in messages for s in m.get("ice_servers", []) if any(u.startswith("turn") for u in s["urls"])]


async def test_only_participants_let_in_get_credentials_and_coturn_takes_them(
    classe: RunningServer, coturn: Coturn
) -> None:
    async with await teacher(classe) as t, Browser(classe) as guest, Browser(classe) as stranger:
        code = code_of(await new_class(t))
        student, intruder, prof = (Peer(classe.url, "", name) for name in ("Léo", "Intrus", "Prof"))
        try:
            await student.join(await guest.join_token(code, "Léo"), until="waiting")
            await intruder.join(await stranger.join_token(code, "Intrus"), until="waiting")
            joined = await prof.join(await t.join_token(code))
            assert len(turn_entries([joined])) == 1  # the teacher, let in, has its own
            lobby = await prof.expect("lobby")
            while len(lobby["waiting"]) < 2:
                lobby = await prof.expect("lobby")
            ids = {w["name"]: w["id"] for w in lobby["waiting"]}
            await prof.send({"type": "moderate", "action": "refuse", "participant_id": ids["Intrus"]})
            assert (await intruder.expect("error"))["code"] == "refused"
            assert turn_entries(student.events) == [] and turn_entries(intruder.events) == []
            await prof.send({"type": "moderate", "action": "admit", "participant_id": ids["Léo"]})
            joined = await student.admitted()
            (entry,) = turn_entries([joined])
            assert entry["urls"] == coturn.urls()
            expiry, participant = entry["username"].split(":", 1)
            assert participant == student.id
            assert time.time() < int(expiry) <= time.time() + 600 + 5
            assert turn_entries(intruder.events) == []
            relay = await allocate(coturn, entry["username"], entry["credential"], "tcp")
            relay.close()
        finally:
            for peer in (student, intruder, prof):
                await peer.close()
