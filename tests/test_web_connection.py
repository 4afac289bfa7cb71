"""The class page's media connection in a real Chromium: its candidates trickled instead of waited
for, the quality indicator following the video that arrives (or not), and what a problem report
says of the connection."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from signaling.store import ProblemReport

from .browser import chromium
from .conftest import RunningServer
from .peers import Peer
from .test_access import new_class
from .test_web_client import join, no_foreign_requests, participant, video_plays
from .web import code_of, teacher

# Test instrumentation: every message the page sends, with the ICE gathering state, at that moment,
# of the peer connection whose description it carries.
SAID = """
window.__said = [];
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  send(data) {
    const message = JSON.parse(data);
    const pc = message.sdp && window.__peers.find((p) => p.localDescription && p.localDescription.sdp === message.sdp);
    window.__said.push({ ...message, gathering: pc ? pc.iceGatheringState : null });
    return super.send(data);
  }
};
"""
# Every address the page's connections know of, its own and the server's: none may be reported.
ADDRESSES = """async () => {
  const found = new Set();
  for (const pc of window.__peers) {
    if (pc.connectionState === 'closed') continue;
    for (const r of (await pc.getStats()).values()) {
      if ((r.type === 'local-candidate' || r.type === 'remote-candidate') && r.address) found.add(r.address);
    }
  }
  return [...found];
}"""
IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")


@pytest.fixture
async def lesson(classe: RunningServer) -> AsyncIterator[dict[str, Any]]:
    """A link class with no lobby, opened by a teacher (a real aiortc peer) who publishes her camera."""
    async with await teacher(classe) as t:
        classroom = await new_class(t, lobby=False, title="Sciences 5e")
        prof = Peer(classe.url, "", "Mme Durand")
        try:
            await prof.join(await t.join_token(code_of(classroom)))
            await prof.publish()
            yield classroom
        finally:
            await prof.close()


async def said(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.__said"))


async def test_joining_sends_offer_and_answer_at_once_then_the_candidates(
    classe: RunningServer, lesson: dict[str, Any]
) -> None:
    async with chromium(classe.url) as browser:
        leo = await browser.page("leo", init_script=SAID)
        await leo.goto(lesson["link"])
        await join(leo, "Léo")
        await video_plays(leo, "#stage .tile video")
        messages = await said(leo)
        kinds = [m["type"] for m in messages]
        for description, connection in (("publish", "publish"), ("subscribe_answer", "subscribe")):
            sent = next(m for m in messages if m["type"] == description)
            # Sent before gathering was over, with no candidate in it: joining waits for no gathering.
            assert sent["gathering"] in ("new", "gathering"), sent["gathering"]
            assert "a=candidate" not in sent["sdp"]
            candidates = [
                i for i, m in enumerate(messages) if m["type"] == "candidate" and m["connection"] == connection
            ]
            assert candidates and min(candidates) > kinds.index(description)
            lines = [messages[i]["candidate"] for i in candidates]
            assert lines[-1] is None and all(c["candidate"].startswith("candidate:") for c in lines[:-1])
        no_foreign_requests(browser)


async def test_the_indicator_and_a_report_say_when_the_video_stops_arriving(
    classe: RunningServer, lesson: dict[str, Any]
) -> None:
    async with chromium(classe.url) as browser:
        ines = await browser.page("ines")
        await ines.goto(lesson["link"])
        await join(ines, "Inès")
        await video_plays(ines, "#stage .tile video")
        quality = ines.locator("#quality")
        await expect(quality).to_have_attribute("aria-label", "Connexion : bonne")

        # The connection stays up, but the teacher's video no longer reaches her (the server's
        # packets to her are lost on the way): the indicator says so, and so does a banner.
        peer = participant(classe, "Inès").subscriber
        deliver = peer.send
        peer.send = lambda rtp, rtcp: deliver([], rtcp)  # type: ignore[method-assign]
        await expect(quality).to_have_attribute("aria-label", "La vidéo n'arrive pas", timeout=15_000)
        await expect(ines.locator("#banner")).to_have_text(re.compile("^La vidéo n'arrive pas"))

        # She reports it: the report says what the page knows of the connection, and no address.
        await ines.get_by_role("button", name="Signaler un problème").click()
        await ines.get_by_label("Votre message").fill("L'écran du professeur est figé")
        await ines.get_by_role("dialog").get_by_role("button", name="Envoyer").click()
        await expect(ines.locator("#announcer")).to_have_text("Merci, votre signalement a été envoyé.")
        async with classe.services.db.sessions() as tx:
            report = (await tx.scalars(select(ProblemReport))).one()
        connection = json.loads(report.diagnostics)["connection"]
        assert connection["browser"].startswith("Chrome ")
        assert connection["ice"] == {"publish": "connected", "subscribe": "connected"}
        assert connection["path"]["subscribe"] == {
            "local": "host",
            "remote": "host",
            "protocol": "udp",
            "relay_protocol": None,
        }
        assert (connection["turn_offered"], connection["relay_only"], connection["relay_retry"]) == (
            False,
            False,
            False,
        )
        assert connection["failure"] is None
        media = connection["media"]
        assert media["expected_videos"] == 1 and media["video_bytes"] == 0 and media["last_video_ms"] >= 5000, media
        addresses = await ines.evaluate(ADDRESSES)
        assert addresses and not any(address in report.diagnostics for address in addresses)
        assert not IPV4.search(json.dumps(connection))

        # The video comes back: so does "good", and the banner goes.
        peer.send = deliver  # type: ignore[method-assign]
        await expect(quality).to_have_attribute("aria-label", "Connexion : bonne", timeout=15_000)
        await expect(ines.locator("#banner")).to_be_hidden()
        await video_plays(ines, "#stage .tile video")
        no_foreign_requests(browser)
