"""The class page's media connection in a real Chromium: its candidates trickled instead of waited
for, and the quality indicator following the video that arrives (or not)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

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


async def test_the_indicator_says_when_the_video_stops_arriving(classe: RunningServer, lesson: dict[str, Any]) -> None:
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

        # The video comes back: so does "good", and the banner goes.
        peer.send = deliver  # type: ignore[method-assign]
        await expect(quality).to_have_attribute("aria-label", "Connexion : bonne", timeout=15_000)
        await expect(ines.locator("#banner")).to_be_hidden()
        await video_plays(ines, "#stage .tile video")
        no_foreign_requests(browser)
