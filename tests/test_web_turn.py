"""A student behind a firewall that drops UDP: Chromium in a network namespace receives the
teacher's video through a real coturn, over TCP, then over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from .browser import CHROMIUM_FLAGS, WATCH_PEERS
from .conftest import RunningServer
from .coturn import Coturn, running_coturn
from .netns import Namespace, udp_blocked
from .peers import Peer
from .test_access import new_class
from .test_web_client import join_quietly, until
from .web import teacher

SECRET = "turn-test-secret"

# The selected path of the connection that receives video, and the frames decoded on it.
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
    urls = [url for url in coturn.urls(network.host) if url.startswith(f"{scheme}:") and "transport=tcp" in url]
    return {"host": network.host, "turn_urls": urls, "turn_secret": SECRET}


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
        code = classroom["link"].rsplit("/", 1)[1]
        prof = Peer(classe.url, "", "Prof")
        try:
            await prof.join(await t.join_token(code))
            await prof.publish(audio=False)
            flags = [
                *CHROMIUM_FLAGS,
                f"--unsafely-treat-insecure-origin-as-secure={classe.url}",
                "--ignore-certificate-errors",  # the test's coturn certificate is its own
            ]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=network.chromium(tmp_path), args=flags, headless=True
                )
                try:
                    context = await browser.new_context(locale="fr-FR")
                    await context.add_init_script(WATCH_PEERS)
                    page = await context.new_page()
                    await join_quietly(page, classroom["link"], "Inès")
                    found = await until(lambda: receiving(page), timeout=45)
                    assert found["type"] == "relay" and found["relayProtocol"] == protocol, found
                finally:
                    await browser.close()
        finally:
            await prof.close()
