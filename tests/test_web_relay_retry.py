"""A student behind a firewall that lets ICE's checks through but not the media: the first,
direct, attempt connects nothing; the page tries again with the relay alone and gets the
teacher's video through coturn over TCP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from signaling.store import ProblemReport

from .conftest import RunningServer
from .coturn import Coturn, running_coturn
from .netns import STUN_ONLY, Namespace, udp_blocked
from .peers import Peer
from .test_access import new_class
from .test_web_client import until
from .test_web_turn import SECRET, blocked_student, receiving
from .web import teacher

POLICIES = "() => window.__peers.map((pc) => [pc.getConfiguration().iceTransportPolicy, pc.connectionState])"


@pytest.fixture(scope="module")
def network() -> Iterator[Namespace]:
    with udp_blocked(rules=STUN_ONLY) as ns:
        yield ns


@pytest.fixture(scope="module")
def coturn(network: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    # The media server listens where the student's machine reaches the host: so does the relay.
    folder = tmp_path_factory.mktemp("coturn")
    with running_coturn(folder, SECRET, listen=network.host, relay_to=network.host) as server:
        yield server


@pytest.fixture
def settings_overrides(network: Namespace, coturn: Coturn) -> dict[str, Any]:
    # The server's own candidates are on the namespace's side of the pair: the direct path exists,
    # and its checks succeed. The server gives up on a connection without media after 6 s.
    urls = [url for url in coturn.urls(network.host) if url.startswith("turn:") and "transport=tcp" in url]
    return {
        "host": network.host,
        "media_addresses": [network.host],
        "turn_urls": urls,
        "turn_secret": SECRET,
        "ice_timeout_seconds": 6,
    }


async def test_after_a_direct_attempt_that_carries_nothing_the_page_retries_with_the_relay_alone(
    classe: RunningServer, network: Namespace, tmp_path: Path
) -> None:
    async with await teacher(classe) as t:
        classroom = await new_class(t, lobby=False, title="Géographie 4e")
        prof = Peer(classe.url, "", "Prof")  # a teacher on the host, publishing a camera
        try:
            await prof.join(await t.join_token(classroom["link"].rsplit("/", 1)[1]))
            await prof.publish(audio=False)
            async with blocked_student(classe, network, tmp_path, classroom["link"]) as page:
                found = await until(lambda: receiving(page), timeout=60)
                assert found["type"] == "relay" and found["relayProtocol"] == "tcp", found
                # The first connections allowed every path and were closed; the ones that carry the
                # video allow the relay alone.
                policies = await page.evaluate(POLICIES)
                assert policies[0] == ["all", "closed"], policies
                live = [policy for policy, state in policies if state != "closed"]
                assert live and set(live) == {"relay"}, policies
                # The student reports: the diagnosis tells the direct failure and the retry.
                await page.get_by_role("button", name="Signaler un problème").click()
                await page.get_by_label("Votre message").fill("La vidéo a mis du temps à venir")
                await page.get_by_role("dialog").get_by_role("button", name="Envoyer").click()
                await expect(page.locator("#announcer")).to_have_text("Merci, votre signalement a été envoyé.")
            async with classe.services.db.sessions() as tx:
                report = (await tx.scalars(select(ProblemReport))).one()
            connection = json.loads(report.diagnostics)["connection"]
            assert connection["turn_offered"] and connection["relay_only"] and connection["relay_retry"]
            assert connection["failure"] == "ice_failed"
            assert connection["path"]["subscribe"]["local"] == "relay", connection
            assert connection["path"]["subscribe"]["relay_protocol"] == "tcp", connection
            assert network.inside not in report.diagnostics and network.host not in report.diagnostics
        finally:
            await prof.close()
    # The direct attempt was counted as failed, the retry as connected through the relay. (Chrome
    # stops gathering once a pair answers its checks: the first attempt often offered no relay
    # candidate at all, as its direct checks passed before the TURN allocation was made.)
    assert sum(classe.server.ice.failed.values()) >= 1 and classe.server.ice.connected["relay"] >= 1
