"""The browser client in a real Chromium, fake camera and microphone, against a real server.

These tests click what a teacher and a student click, by the names a screen reader would read,
and check what they would see and hear: video frames that advance, audio packets that arrive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page, expect

from .browser import Chromium, chromium, screenshot
from .conftest import RunningServer
from .peers import Peer
from .test_access import new_class
from .web import PASSWORD, Browser, code_of, teacher


PLAYBACK = """(selector) => {
  const video = document.querySelector(selector);
  if (!video) return null;
  return {width: video.videoWidth, frames: video.getVideoPlaybackQuality().totalVideoFrames, paused: video.paused};
}"""
AUDIO_RECEIVED = """async () => {
  let packets = 0;
  for (const pc of window.__peers) {
    if (pc.connectionState === 'closed') continue;
    for (const report of (await pc.getStats()).values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'audio') packets += report.packetsReceived;
    }
  }
  const live = [...document.querySelectorAll('#audio audio')].filter(
    (a) => a.srcObject && a.srcObject.getAudioTracks().some((t) => t.readyState === 'live'));
  return {packets, live: live.length};
}"""


async def until(check: Any, timeout: float = 20.0, every: float = 0.25) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        await asyncio.sleep(every)


async def video_plays(page: Page, selector: str) -> None:
    """The element shows real frames: a size is set, and the frame count moves on."""

    async def started() -> Any:
        state = await page.evaluate(PLAYBACK, selector)
        return state if state and state["width"] > 0 and state["frames"] > 0 else None

    first = await until(started)
    await until(lambda: _advanced(page, selector, first["frames"]))


async def _advanced(page: Page, selector: str, frames: int) -> bool:
    state = await page.evaluate(PLAYBACK, selector)
    return bool(state and state["frames"] > frames + 5 and not state["paused"])


async def audio_arrives(page: Page) -> None:
    first = await until(lambda: _audio(page, 1))
    await until(lambda: _audio(page, first["packets"] + 50))


async def _audio(page: Page, packets: int) -> Any:
    state = await page.evaluate(AUDIO_RECEIVED)
    return state if state["live"] > 0 and state["packets"] >= packets else None


async def sign_in(page: Page, origin: str, email: str, path: str = "/login") -> None:
    await page.goto(origin + path)
    await page.get_by_label("Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()


async def join(page: Page, name: str | None = None) -> None:
    """On the pre-join page: a name if asked, then join, once the devices are open."""
    await expect(page.locator("#preview")).to_be_visible()
    if name is not None:
        await page.get_by_label("Votre nom").fill(name)
    await page.get_by_role("button", name="Rejoindre la classe").click()


def no_foreign_requests(browser: Chromium) -> None:
    assert browser.requests, "no request was recorded"
    assert browser.foreign_requests() == []
    assert browser.errors == []


async def test_a_link_class_from_sign_in_to_screen_share(classe: RunningServer) -> None:
    async with await teacher(classe), chromium(classe.url) as browser:
        prof = await browser.page("prof")
        await sign_in(prof, classe.url, "prof@ac-lyon.fr")
        await prof.wait_for_url("**/classes")
        await prof.get_by_role("button", name="Nouvelle classe").click()
        await prof.get_by_label("Nom de la classe").fill("Maths 4e B")
        await expect(prof.get_by_label("Par lien")).to_be_checked()
        await expect(prof.get_by_label("Salle d'attente")).to_be_checked()
        await prof.get_by_role("button", name="Enregistrer").click()
        await expect(prof.get_by_role("heading", name="Maths 4e B")).to_be_visible()
        await screenshot(prof, "01-teacher-dashboard")
        link = await prof.get_by_label("Lien de la classe").input_value()
        assert link.startswith(classe.url + "/c/")

        await prof.get_by_role("link", name="Ouvrir la classe").click()
        await join(prof)
        await expect(prof.locator("#room")).to_be_visible()

        # The student opens the link, gives a name, and waits in the lobby.
        leo = await browser.page("leo")
        await leo.goto(link)
        await expect(leo.get_by_role("heading", name="Maths 4e B")).to_be_visible()
        await screenshot(leo, "02-student-prejoin")
        await join(leo, "Léo Martin")
        await expect(leo.get_by_role("heading", name="Salle d'attente")).to_be_visible()
        await screenshot(leo, "03-student-lobby")

        # The teacher sees him waiting and lets him in.
        await expect(prof.locator("#open-lobby .badge")).to_have_text("1")
        await prof.locator("#open-lobby").click()
        await prof.get_by_role("button", name="Faire entrer Léo Martin").click()
        await expect(leo.locator("#room")).to_be_visible()

        # He sees the teacher, pinned large, and her video plays; her sound arrives.
        await expect(leo.locator("#stage .tile")).to_contain_text("Mme Durand")
        await video_plays(leo, "#stage .tile video")
        await audio_arrives(leo)
        await video_plays(prof, "#grid .tile:not(.me) video")
        await screenshot(leo, "04-student-room")

        # The teacher mutes him; he cannot unmute himself, and the server forwards nothing.
        await prof.locator("#open-people").click()
        await prof.get_by_role("button", name="Couper le micro de Léo Martin").click()
        microphone = leo.locator("#toggle-microphone")
        await expect(microphone).to_have_attribute("aria-pressed", "false")
        await expect(leo.locator("#announcer")).to_contain_text("coupé votre micro")
        await microphone.click()
        await expect(leo.locator("#announcer")).to_contain_text("Levez la main")
        await asyncio.sleep(1.0)
        await expect(microphone).to_have_attribute("aria-pressed", "false")
        student = next(p for room in classe.server.rooms.values() for p in room.participants.values() if p.name == "Léo Martin")
        assert student.enabled["microphone"] is False
        await expect(prof.get_by_role("button", name="Autoriser Léo Martin à rallumer son micro")).to_be_visible()
        await screenshot(prof, "05-teacher-moderation")

        # A chat message goes from him to her.
        await leo.locator("#open-chat").click()
        await leo.get_by_label("Message", exact=True).fill("Bonjour madame")
        await leo.get_by_label("Message", exact=True).press("Enter")
        await expect(prof.locator("#messages")).to_contain_text("Bonjour madame")
        await expect(prof.locator("#open-chat .badge")).to_have_text("1")

        # Her screen share appears large for him.
        await prof.locator("#toggle-screen").click()
        await expect(leo.locator("#stage .tile.screen")).to_contain_text("Écran de Mme Durand")
        await video_plays(leo, "#stage .tile.screen video")
        await screenshot(leo, "06-student-sees-screen-share")

        no_foreign_requests(browser)


async def test_a_student_signs_in_and_joins_an_account_class(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as family, chromium(classe.url) as browser:
        classroom = await new_class(t, access="account", title="Histoire 3e A")
        await t.ok("PUT", f"/api/classes/{classroom['id']}/roster", {"emails": ["famille@example.org"]})
        secret = await classe.mailbox.link("famille@example.org")
        await family.ok("POST", "/api/invitation", {"token": secret, "name": "Inès Petit", "password": PASSWORD})
        prof = Peer(classe.url, "", "Mme Durand")
        try:
            await prof.join(await t.join_token(code_of(classroom)))
            await prof.publish()

            ines = await browser.page("ines")
            await ines.goto(classroom["link"])
            await expect(ines.get_by_text("Cette classe est réservée aux élèves inscrits.")).to_be_visible()
            await ines.get_by_role("main").get_by_role("link", name="Se connecter").click()
            await ines.get_by_label("Adresse e-mail").fill("famille@example.org")
            await ines.get_by_label("Mot de passe").fill(PASSWORD)
            await ines.get_by_role("button", name="Se connecter").click()
            await ines.wait_for_url(classroom["link"])
            await join(ines)
            await expect(ines.locator("#room")).to_be_visible()
            await video_plays(ines, "#stage .tile video")
            await audio_arrives(ines)
            await screenshot(ines, "07-account-student-room")
            no_foreign_requests(browser)
        finally:
            await prof.close()
