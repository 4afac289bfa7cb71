"""A student behind a firewall that drops UDP: Chromium in a network namespace receives the
teacher's video through a real coturn, over TCP, then over TLS."""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import select

from signaling.store import ProblemReport

from .browser import CHROMIUM_FLAGS, WATCH_PEERS, chromium, screenshot
from .conftest import RunningServer
from .coturn import Coturn, running_coturn
from .netns import Namespace, udp_blocked
from .peers import Peer
from .test_access import new_class
from .test_web_client import join_quietly, sign_in, until
from .web import teacher

SECRET = "turn-test-secret"

# The selected path of the connection that receives video, and the frames decoded on it.
# Which screen of the class page shows, and its words.
STUCK_SCREEN = """
() => [...document.querySelectorAll("main > [id]")]
  .filter((e) => !e.hidden)
  .map((e) => `${e.id}: ${e.innerText.slice(0, 200)}`)
"""
RECEIVING = """
async () => {
  for (const pc of window.__peers) {
    const stats = await pc.getStats();
    let frames = 0, pairId = null;
    stats.forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
      if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    });
    if (!frames || !pairId) continue;
    const pair = stats.get(pairId);
    const local = stats.get(pair.localCandidateId);
    return { frames, type: local.candidateType, relayProtocol: local.relayProtocol || null };
  }
  return null;
}
"""


@pytest.fixture(scope="module")
def network() -> Iterator[Namespace]:
    with udp_blocked() as ns:
        yield ns


@pytest.fixture(scope="module")
def coturn(network: Namespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    # Listening where the student's machine reaches the host; relaying to the media server only.
    with running_coturn(tmp_path_factory.mktemp("coturn"), SECRET, listen=network.host) as server:
        yield server


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, network: Namespace, coturn: Coturn) -> dict[str, Any]:
    scheme = request.param
    if scheme is None:  # no TURN configured; the server gives up on ICE after 5 s instead of 30
        return {"host": network.host, "ice_timeout_seconds": 5}
    urls = [url for url in coturn.urls(network.host) if url.startswith(f"{scheme}:") and "transport=tcp" in url]
    return {"host": network.host, "turn_urls": urls, "turn_secret": SECRET}


@asynccontextmanager
async def blocked_student(classe: RunningServer, network: Namespace, folder: Path, link: str) -> AsyncIterator[Page]:
    """Inès joining from Chromium in the namespace that drops UDP."""
    flags = [
        *CHROMIUM_FLAGS,
        f"--unsafely-treat-insecure-origin-as-secure={classe.url}",
        "--ignore-certificate-errors",  # the test's coturn certificate is its own
    ]
    async with async_playwright() as playwright:
        executable = network.chromium(folder)
        browser = await playwright.chromium.launch(executable_path=executable, args=flags, headless=True)
        try:
            context = await browser.new_context(locale="fr-FR")
            await context.add_init_script(WATCH_PEERS)
            page = await context.new_page()
            seen: list[str] = []
            page.on("console", lambda message: seen.append(f"console {message.type}: {message.text}"))
            page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: seen.append(f"failed: {request.url} {request.failure}"))
            page.on("requestfinished", lambda request: seen.append(f"finished: {request.url}"))
            try:
                await join_quietly(page, link, "Inès")
            except PlaywrightTimeoutError:
                # Once in CI the page never showed its form (stuck or ended, unknown): the record goes
                # to the warnings summary and a screenshot to the artifacts, and the visit is tried again.
                await screenshot(page, f"{folder.name}-stuck")
                screen = await page.evaluate(STUCK_SCREEN)
                warnings.warn(f"the class page did not offer its form: {screen}; " + " | ".join(seen), stacklevel=1)
                await join_quietly(page, link, "Inès")
            yield page
        finally:
            await browser.close()


async def receiving(page: Page) -> Any:
    found = await page.evaluate(RECEIVING)
    return found if found and found["frames"] > 10 else None


@pytest.mark.parametrize(
    ("settings_overrides", "protocol"), [("turn", "tcp"), ("turns", "tls")], indirect=["settings_overrides"]
)
async def test_a_student_whose_network_drops_udp_gets_the_video_through_turn(
    classe: RunningServer, network: Namespace, tmp_path: Path, protocol: str
) -> None:
    async with await teacher(classe) as t:
        classroom = await new_class(t, lobby=False, title="Histoire 5e")
        prof = Peer(classe.url, "", "Prof")  # a teacher on the host, publishing a camera
        try:
            await prof.join(await t.join_token(classroom["link"].rsplit("/", 1)[1]))
            await prof.publish(audio=False)
            async with blocked_student(classe, network, tmp_path, classroom["link"]) as page:
                found = await until(lambda: receiving(page), timeout=45)
                assert found["type"] == "relay" and found["relayProtocol"] == protocol, found
            # The teacher was told the student's media came up.
            assert any(
                e["type"] == "participant_updated" and e["participant"]["name"] == "Inès" and e["participant"]["media"]
                for e in prof.events
            )
        finally:
            await prof.close()
    assert classe.server.ice.connected["relay"] >= 1
    # The page told the server how it reached coturn (the server only sees coturn's UDP).
    assert set(classe.server.ice.relayed) == {protocol}


@pytest.mark.parametrize("settings_overrides", [None], indirect=True)
async def test_without_turn_the_student_is_told_plainly_and_the_failure_is_counted(
    classe: RunningServer, network: Namespace, tmp_path: Path
) -> None:
    secure = f"--unsafely-treat-insecure-origin-as-secure={classe.url}"
    async with await teacher(classe) as t, chromium(classe.url, secure) as host:
        classroom = await new_class(t, lobby=False, title="Histoire 5e")
        prof = await host.page("prof")  # the teacher's own browser, on the host
        await sign_in(prof, classe.url, "prof@ac-lyon.fr")
        await prof.wait_for_url("**/classes")
        await join_quietly(prof, classroom["link"], None)
        async with blocked_student(classe, network, tmp_path, classroom["link"]) as page:
            # The teacher sees that the student receives nothing, while the student is told why.
            await expect(prof.locator("#people")).to_contain_text("Inès")
            await expect(prof.locator("#people")).to_contain_text("ne reçoit ni image ni son")
            await expect(page.get_by_role("heading", name="La vidéo ne passe pas")).to_be_visible(timeout=30_000)
            await expect(page.get_by_text("Votre réseau semble bloquer la vidéo")).to_be_visible()
            assert not await page.get_by_text("de nouveau connecté").is_visible()
            # She reports it from there, and the report says what the page learnt of the connection.
            await page.get_by_role("button", name="Signaler le problème").click()
            await page.get_by_label("Votre message").fill("Je ne vois pas la classe")
            await page.get_by_role("dialog").get_by_role("button", name="Envoyer").click()
            await expect(page.locator("#ended-status")).to_have_text("Merci, votre signalement a été envoyé.")
            await expect(page.get_by_role("button", name="Signaler le problème")).to_be_hidden()
        assert host.foreign_requests() == [] and host.errors == []
    async with classe.services.db.sessions() as tx:
        report = (await tx.scalars(select(ProblemReport))).one()
    connection = json.loads(report.diagnostics)["connection"]
    assert connection["failure"] == "network_blocked" and connection["path"]["subscribe"] is None, connection
    assert not connection["turn_offered"] and not connection["relay_retry"]
    assert connection["ice"]["subscribe"] != "connected" and connection["browser"].startswith("Chrome ")
    assert network.inside not in report.diagnostics and network.host not in report.diagnostics
    async with aiohttp.ClientSession() as http, http.get(classe.metrics_url) as response:
        text = await response.text()
    failed = [
        line
        for line in text.splitlines()
        if line.startswith("classe_ice_connections_total{") and 'outcome="failed"' in line
    ]
    assert sum(float(line.split()[-1]) for line in failed) >= 1, [line for line in text.splitlines() if "ice" in line]
