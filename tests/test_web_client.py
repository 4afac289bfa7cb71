"""The browser client in a real Chromium, fake camera and microphone, against a real server.

These tests click what a teacher and a student click, by the names a screen reader would read,
and check what they would see and hear: video frames that advance, audio packets that arrive.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from signaling.participant import Participant
from signaling.store import ProblemReport

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
CAMERAS_LIVE = """() => window.__peers.flatMap((pc) => pc.getSenders())
  .filter((s) => s.track && s.track.kind === 'video' && s.track.readyState === 'live').length"""
SENT_DEVICES = """() => window.__peers.flatMap((pc) => pc.getSenders())
  .filter((s) => s.track && s.track.readyState === 'live').map((s) => s.track.label)"""
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
    """On the pre-join page: a name if asked, then join (the page waits for devices still opening)."""
    if name is not None:
        await page.get_by_label("Votre nom").fill(name)
    await page.get_by_role("button", name="Rejoindre la classe").click()


async def _preview_from(page: Page, label: str) -> bool:
    shown = await page.evaluate("document.querySelector('#preview').srcObject?.getTracks()[0].label")
    return bool(shown == label)


async def _louder_than_zero(meter: Any) -> bool:
    return int(await meter.get_attribute("aria-valuenow") or 0) > 0


async def _true(value: bool) -> bool:
    return value


def participant(classe: RunningServer, name: str) -> Participant:
    return next(p for room in classe.server.rooms.values() for p in room.participants.values() if p.name == name)


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
        # A pupil's class page does not offer to open a teacher's account.
        await expect(leo.get_by_role("link", name="Se connecter")).to_be_visible()
        await expect(leo.get_by_role("link", name="Créer un compte enseignant")).to_have_count(0)
        await video_plays(leo, "#preview")  # he sees himself
        # He tries the other camera and comes back (Chromium's second fake camera shows in a
        # video element but never feeds an encoder), and picks another microphone.
        camera_choice = leo.get_by_label("Caméra", exact=True)
        await camera_choice.select_option(label="fake_device_1")
        await until(lambda: _preview_from(leo, "fake_device_1"))
        await video_plays(leo, "#preview")
        await camera_choice.select_option(label="fake_device_0")
        await until(lambda: _preview_from(leo, "fake_device_0"))
        await leo.get_by_label("Micro", exact=True).select_option(label="Fake Audio Input 1")
        meter = leo.get_by_role("meter")
        await until(lambda: _louder_than_zero(meter))  # the fake microphone beeps: the level moves
        await screenshot(leo, "02-student-prejoin")
        await join(leo, "Léo Martin")
        await expect(leo.get_by_role("heading", name="Salle d'attente")).to_be_visible()
        await screenshot(leo, "03-student-lobby")

        # The teacher sees him waiting and lets him in.
        await expect(prof.locator("#open-lobby .badge")).to_have_text("1")
        await prof.locator("#open-lobby").click()
        await prof.get_by_role("button", name="Faire entrer Léo Martin").click()
        await expect(leo.locator("#room")).to_be_visible()

        # Someone she does not expect is turned away, and told so.
        intruder = await browser.page("intruder")
        await intruder.goto(link)
        await join(intruder, "Intrus")
        await prof.get_by_role("button", name="Refuser Intrus").click()
        await expect(intruder.get_by_role("heading", name="Entrée refusée")).to_be_visible()
        await intruder.close()

        # He sees the teacher, pinned large, and her video plays; her sound arrives.
        await expect(leo.locator("#stage .tile")).to_contain_text("Mme Durand")
        await video_plays(leo, "#stage .tile video")
        await audio_arrives(leo)
        await video_plays(prof, "#grid .tile:not(.me) video")
        assert sorted(await leo.evaluate(SENT_DEVICES)) == ["Fake Audio Input 1", "fake_device_0"]  # his choice
        # The fake microphone beeps; the server names the loudest within 300 ms of a measure, which a
        # busy CI machine may take longer to gather than the default 5 s of waiting.
        await expect(leo.locator("#stage .tile.speaking")).to_be_visible(timeout=15_000)
        await expect(leo.locator("#quality")).to_have_attribute("aria-label", "Connexion : bonne")
        await screenshot(leo, "04-student-room")

        # The teacher mutes him; he cannot unmute himself, and the server forwards nothing.
        await prof.locator("#open-people").click()
        await prof.get_by_role("button", name="Couper le micro de Léo Martin").click()
        microphone = leo.locator("#toggle-microphone")
        await expect(microphone).to_have_attribute("aria-pressed", "false")
        await expect(leo.locator("#announcer")).to_contain_text("coupé votre micro")
        await microphone.click()
        await expect(leo.locator("#announcer")).to_contain_text("Levez la main")
        # One message for one click: the refusal is not said a second time in other words.
        await expect(leo.locator(".toast", has_text="Levez la main")).to_have_count(1)
        await expect(leo.locator(".toast", has_text="ne permet pas")).to_have_count(0)
        await asyncio.sleep(1.0)
        await expect(microphone).to_have_attribute("aria-pressed", "false")
        student = participant(classe, "Léo Martin")
        assert student.enabled["microphone"] is False
        await expect(prof.get_by_role("button", name="Autoriser Léo Martin à rallumer son micro")).to_be_visible()
        await screenshot(prof, "05-teacher-moderation")

        # He raises his hand; she sees it and gives him the floor back.
        await leo.get_by_role("button", name="Lever la main").click()
        await expect(prof.locator("#announcer")).to_have_text("Léo Martin lève la main.")
        await expect(prof.locator("#people")).to_contain_text("Main levée")
        await prof.get_by_role("button", name="Autoriser Léo Martin à rallumer son micro").click()
        await expect(leo.locator("#announcer")).to_have_text("L'enseignant vous autorise à rallumer votre micro.")
        await microphone.click()
        await expect(microphone).to_have_attribute("aria-pressed", "true")
        await until(lambda: _true(student.enabled["microphone"]))

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

        # He reports a problem from the room: what the page measured goes with it.
        await leo.get_by_role("button", name="Signaler un problème").click()
        await leo.get_by_label("Votre message").fill("Le son coupe parfois")
        await leo.get_by_role("dialog").get_by_role("button", name="Envoyer").click()
        await expect(leo.locator("#announcer")).to_have_text("Merci, votre signalement a été envoyé.")
        async with classe.services.db.sessions() as tx:
            report = (await tx.scalars(select(ProblemReport))).one()
        diagnostics = json.loads(report.diagnostics)
        assert report.text == "Le son coupe parfois" and report.class_id == student.room.id
        assert diagnostics["status"] == "joined" and diagnostics["quality"]["rtt_ms"] is not None
        assert "Léo" not in report.diagnostics  # no name, nothing said in class

        # She ends the class: he is told, and everything stops.
        await prof.locator("#open-class").click()
        await prof.get_by_role("button", name="Terminer le cours pour tous").click()
        await prof.get_by_role("dialog").get_by_role("button", name="Terminer le cours pour tous").click()
        await expect(leo.get_by_role("heading", name="Le cours est terminé")).to_be_visible()
        await expect(prof.get_by_role("heading", name="Le cours est terminé")).to_be_visible()
        assert not classe.server.rooms or not any(r.participants for r in classe.server.rooms.values())

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
            await ines.goto(classe.url + "/privacy")
            days = classe.settings.account_retention_days
            await expect(ines.get_by_text(f"Un compte inutilisé pendant {days} jours", exact=False)).to_be_visible()
            await ines.goto(classroom["link"])
            await expect(ines.get_by_text("Cette classe est réservée aux élèves inscrits.")).to_be_visible()
            await ines.get_by_role("main").get_by_role("link", name="Se connecter").click()
            await ines.get_by_label("Adresse e-mail").fill("famille@example.org")
            await ines.get_by_label("Mot de passe").fill(PASSWORD)
            await ines.get_by_role("button", name="Se connecter").click()
            await ines.wait_for_url(classroom["link"])
            # By keyboard alone, in the order the page reads: name, devices, switches, join.
            # The pre-join form shows once the page has asked the server about the class: focus waits for it.
            name = ines.get_by_label("Votre nom")
            await expect(name).to_be_visible()
            await name.focus()
            await expect(name).to_be_focused()
            order = []
            for _ in range(5):
                await ines.keyboard.press("Tab")
                order.append(await ines.evaluate("document.activeElement.id"))
            assert order == ["camera-select", "microphone-select", "join-camera", "join-microphone", "join-button"]
            await ines.keyboard.press("Shift+Tab")
            await ines.keyboard.press("Shift+Tab")
            await ines.keyboard.press("Space")  # she joins with her camera off
            await expect(ines.get_by_label("Caméra allumée")).not_to_be_checked()
            await ines.keyboard.press("Tab")
            await ines.keyboard.press("Tab")
            await ines.keyboard.press("Enter")
            await expect(ines.locator("#room")).to_be_visible()
            await video_plays(ines, "#stage .tile video")
            await audio_arrives(ines)
            camera = ines.locator("#toggle-camera")
            await expect(camera).to_have_attribute("aria-pressed", "false")
            assert participant(classe, "Inès Petit").enabled["camera"] is False
            assert await ines.evaluate(CAMERAS_LIVE) == 0  # stopped, its light off

            await camera.click()
            await expect(camera).to_have_attribute("aria-pressed", "true")
            await video_plays(ines, "#grid .tile.me video")
            assert participant(classe, "Inès Petit").enabled["camera"] is True
            await until(lambda: _true(len(prof.video()) == 1 and len(prof.video()[0].numbers) > 10))
            await screenshot(ines, "07-account-student-room")

            # Her home page lists her classes, live ones marked.
            await ines.goto(classe.url + "/")
            card = ines.locator("#my-classes li", has_text="Histoire 3e A")
            await expect(card.get_by_text("En cours")).to_be_visible()
            await expect(card.get_by_role("link", name="Rejoindre")).to_have_attribute(
                "href", classroom["link"].removeprefix(classe.url)
            )
            no_foreign_requests(browser)
        finally:
            await prof.close()


@pytest.fixture
async def open_class(classe: RunningServer) -> Any:
    """A link class with no lobby, opened by a teacher (a real aiortc peer) who publishes."""
    async with await teacher(classe) as t:
        classroom = await new_class(t, lobby=False, title="Sciences 5e")
        prof = Peer(classe.url, "", "Mme Durand")
        try:
            await prof.join(await t.join_token(code_of(classroom)))
            await prof.publish()
            yield classroom, prof
        finally:
            await prof.close()


async def test_a_dropped_connection_comes_back_and_a_removed_student_sees_why(
    classe: RunningServer, open_class: Any
) -> None:
    classroom, prof = open_class
    async with chromium(classe.url) as browser:
        leo = await browser.page("leo", init_script=LIGHT_CLASS)
        await leo.goto(classroom["link"])
        await join(leo, "Léo")
        await video_plays(leo, "#stage .tile video")
        await until(lambda: _view_of(leo, 1))  # the teacher's camera, large
        views = len([m for m in await leo.evaluate("window.__said") if m["type"] == "view"])

        # The network drops: the page says so, rejoins by itself, and the video plays again.
        student = participant(classe, "Léo")
        await leo.context.set_offline(True)
        await expect(leo.locator("#banner")).to_have_text("Connexion perdue. Reconnexion en cours…", timeout=40_000)
        await screenshot(leo, "08-student-reconnecting")
        await leo.context.set_offline(False)
        await expect(leo.locator("#banner")).to_have_text("La connexion est rétablie.", timeout=30_000)
        await video_plays(leo, "#stage .tile video")
        rejoined = participant(classe, "Léo")
        assert rejoined is not student and rejoined.id == student.id
        # The new connection is told again what the page shows.
        said = [m for m in await leo.evaluate("window.__said") if m["type"] == "view"]
        assert len(said) > views
        assert [t["track_id"] for t in said[-1]["tiles"]] == [t["track_id"] for t in said[views - 1]["tiles"]]
        assert rejoined.view is not None and len(rejoined.view.tiles) == 1

        # Removed by the teacher: the page says why, and offers no way back in.
        await prof.send({"type": "moderate", "action": "remove", "participant_id": rejoined.id})
        await expect(leo.get_by_role("heading", name="Vous ne participez plus à ce cours")).to_be_visible()
        await expect(leo.get_by_role("button", name="Revenir dans la classe")).to_be_hidden()
        await screenshot(leo, "09-student-removed")
        no_foreign_requests(browser)


REFUSE_DEVICES = """
if (navigator.mediaDevices) {
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('refused', 'NotAllowedError'));
}
"""


async def test_refused_devices_are_explained_and_the_class_still_opens_in_english(
    classe: RunningServer, open_class: Any
) -> None:
    classroom, _ = open_class
    async with chromium(classe.url) as browser:
        ines = await browser.page("ines", init_script=REFUSE_DEVICES)
        await ines.goto(classroom["link"])
        await expect(ines.get_by_text("Vous avez refusé l'accès à la caméra.", exact=False)).to_be_visible()
        await expect(ines.get_by_text("Vous avez refusé l'accès au micro.", exact=False)).to_be_visible()
        await ines.get_by_role("button", name="English").click()
        await expect(ines.get_by_role("button", name="Join the class")).to_be_visible()
        await expect(ines.get_by_text("You refused access to the camera.", exact=False)).to_be_visible()
        await expect(ines.get_by_label("Camera on")).to_be_disabled()
        await screenshot(ines, "10-refused-devices-english")
        await ines.get_by_label("Your name").fill("Inès")
        await ines.get_by_role("button", name="Join the class").click()
        await expect(ines.locator("#room")).to_be_visible()
        await expect(ines.locator("#toggle-microphone")).to_be_disabled()
        await expect(ines.locator("#toggle-microphone")).to_have_text("No microphone")
        saver = ines.get_by_role("button", name="Save data", exact=True)
        await expect(saver).to_have_attribute("aria-pressed", "false")
        await video_plays(ines, "#stage .tile video")  # she still sees and hears the class
        await audio_arrives(ines)
        no_foreign_requests(browser)


async def test_a_teacher_signs_up_resets_the_password_and_manages_a_class(classe: RunningServer) -> None:
    email = "nouvelle.prof@ac-lyon.fr"
    async with chromium(classe.url) as browser:
        page = await browser.page("prof")
        await page.goto(classe.url + "/")
        await page.get_by_role("main").get_by_role("link", name="Créer un compte enseignant").click()
        await page.get_by_label("Adresse e-mail académique").fill(email)
        await page.get_by_label("Nom affiché").fill("M. Bernard")
        await page.get_by_label("Nouveau mot de passe").fill(PASSWORD)
        await page.get_by_label("Nouveau mot de passe").press("Enter")  # the keyboard submits too
        await expect(page.get_by_role("status")).to_contain_text(email)

        await page.goto(classe.url + "/verify#" + await classe.mailbox.link(email))
        await expect(page.get_by_text("Votre adresse est confirmée.")).to_be_visible()
        assert "#" not in page.url  # the secret leaves the address bar

        # Forgotten password: the mailed link sets a new one.
        await page.goto(classe.url + "/login")
        await page.get_by_role("link", name="Mot de passe oublié ?").click()
        await page.get_by_label("Adresse e-mail").fill(email)
        await page.get_by_role("button", name="Envoyer le lien").click()
        await expect(page.get_by_role("status")).to_contain_text("Si un compte existe")
        await page.goto(classe.url + "/reset#" + await classe.mailbox.link(email))
        await page.get_by_label("Nouveau mot de passe").fill(PASSWORD)
        await page.get_by_role("button", name="Changer le mot de passe").click()
        await expect(page.get_by_role("status")).to_contain_text("Votre mot de passe est changé")

        await page.goto(classe.url + "/login")
        await page.get_by_label("Adresse e-mail").fill(email)
        await page.get_by_label("Mot de passe").fill("mauvais mot de passe")
        await page.get_by_role("button", name="Se connecter").click()
        await expect(page.get_by_role("alert")).to_have_text("Adresse ou mot de passe incorrect.")
        await sign_in(page, classe.url, email)
        await page.wait_for_url("**/classes")
        await expect(page.get_by_text("Vous n'avez pas encore de classe.", exact=False)).to_be_visible()

        # A class in account mode, with its roster: the invitations go out.
        await page.get_by_role("button", name="Nouvelle classe").click()
        await page.get_by_label("Nom de la classe").fill("Anglais 6e")
        await page.get_by_label("Avec un compte élève").check()
        await expect(page.get_by_label("Salle d'attente")).not_to_be_checked()
        await page.get_by_role("button", name="Enregistrer").click()
        card = page.locator(".class", has_text="Anglais 6e")
        await expect(card.get_by_text("Avec un compte élève")).to_be_visible()
        await card.get_by_role("button", name="Élèves").click()
        await page.get_by_label("Adresses e-mail").fill("eleve1@example.org\nparent2@example.org")
        await page.get_by_role("button", name="Enregistrer et inviter").click()
        status = page.locator("#roster-status")
        await expect(status).to_have_text("2 adresses dans la liste. Les invitations sont parties.")
        assert await classe.mailbox.link("parent2@example.org")
        await screenshot(page, "11-teacher-roster")
        await page.keyboard.press("Escape")

        # A new link: the old one stops working, and its page says so.
        old = await card.get_by_label("Lien de la classe").input_value()
        await card.get_by_role("button", name="Nouveau lien").click()
        await page.get_by_role("dialog").get_by_role("button", name="Nouveau lien").click()
        await expect(card.get_by_label("Lien de la classe")).not_to_have_value(old)
        await page.goto(old)
        await expect(page.get_by_role("heading", name="Lien non valide")).to_be_visible()

        # The guides, the FAQ (opened from the keyboard) and the report form are pages of the app.
        await page.get_by_role("link", name="Aide").click()
        await expect(page.get_by_role("heading", name="Guide de l'enseignant")).to_be_visible()
        await expect(page.get_by_role("heading", name="Pendant le cours")).to_be_visible()
        await page.get_by_role("link", name="Guide de l'élève").click()
        await expect(page.get_by_role("heading", name="Si ça ne marche pas")).to_be_visible()
        await page.get_by_role("contentinfo").get_by_role("link", name="Questions fréquentes").click()
        question = page.get_by_text("Le cours est-il enregistré ?")
        await question.focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_text("ne sont jamais enregistrés", exact=False)).to_be_visible()
        await page.get_by_role("contentinfo").get_by_role("link", name="Signaler un problème").click()
        await page.get_by_label("Votre message").fill("Le lien de ma classe ne marche plus")
        await page.get_by_role("button", name="Envoyer").click()
        await expect(page.get_by_role("status")).to_have_text("Merci, votre signalement a été envoyé.")
        no_foreign_requests(browser)


# `next` values that a string test takes for a path of this site, and a browser for another host.
HOSTILE_NEXT = [
    "/\\evil.example/",
    "/%09/evil.example/",
    "/%0A/evil.example/",
    "//evil.example/",
    "https://evil.example/",
]


async def test_sign_in_never_sends_the_browser_to_another_origin(classe: RunningServer) -> None:
    async with await teacher(classe), chromium(classe.url) as browser:
        page = await browser.page("prof")
        # Signing in through a crafted link: she lands on her dashboard, not on the other host.
        for hostile in HOSTILE_NEXT[:3]:
            await page.goto("about:blank")  # the dashboard's own requests must not meet the cleared cookies
            await page.context.clear_cookies()
            await sign_in(page, classe.url, "prof@ac-lyon.fr", f"/login?next={hostile}")
            await page.wait_for_url(classe.url + "/classes")
        # Already signed in, the login page leaves at once, with no click: still to her dashboard.
        for hostile in HOSTILE_NEXT:
            await page.goto(f"{classe.url}/login?next={hostile}")
            await page.wait_for_url(classe.url + "/classes")
        # A page of the site is still where `next` says.
        await page.goto(f"{classe.url}/login?next=/account%3Fx%3D1")
        await page.wait_for_url(classe.url + "/account?x=1")
        no_foreign_requests(browser)


# Whether a control is on screen and not covered: the element at its centre is the control.
IN_SIGHT = """(element) => {
  const box = element.getBoundingClientRect();
  const x = box.left + box.width / 2, y = box.top + box.height / 2;
  return box.top >= 0 && box.bottom <= innerHeight && element.contains(document.elementFromPoint(x, y));
}"""


async def in_sight(page: Page, locator: Any) -> bool:
    return bool(await locator.evaluate(IN_SIGHT))


@pytest.mark.parametrize("height", [800, 650])
async def test_dialog_and_panel_buttons_stay_in_sight_on_a_laptop_screen(classe: RunningServer, height: int) -> None:
    """1280 x 800, and the same screen less the browser's bars: save and end are never cut off."""
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        classroom = await new_class(t, access="account", title="Physique 2de")
        page = await browser.page("prof")
        await page.set_viewport_size({"width": 1280, "height": height})
        await sign_in(page, classe.url, "prof@ac-lyon.fr")
        await page.wait_for_url("**/classes")
        await page.get_by_role("button", name="Nouvelle classe").click()
        dialog = page.get_by_role("dialog")
        assert await in_sight(page, dialog.get_by_role("button", name="Enregistrer"))
        assert await in_sight(page, dialog.get_by_role("button", name="Annuler"))
        await screenshot(page, f"12-new-class-dialog-{height}")
        await page.keyboard.press("Escape")

        # The roster dialog names the address the server refused (400 invalid_address).
        refusal = {"error": "invalid_address", "message": "Adresse e-mail invalide.", "address": "pas-une-adresse"}
        await page.route(
            "**/roster",
            lambda route: (
                route.fulfill(status=400, json=refusal) if route.request.method == "PUT" else route.continue_()
            ),
        )
        await page.locator(".class", has_text="Physique 2de").get_by_role("button", name="Élèves").click()
        await page.get_by_label("Adresses e-mail").fill("eleve1@example.org\npas-une-adresse")
        save = dialog.get_by_role("button", name="Enregistrer et inviter")
        assert await in_sight(page, save)
        await save.click()
        await expect(dialog.get_by_role("alert")).to_have_text("Cette adresse n'est pas valide : pas-une-adresse")
        await page.keyboard.press("Escape")

        # In the room, the class controls scroll; "end the class for everyone" stays in sight.
        await page.goto(classroom["link"])
        await expect(page.get_by_label("Votre nom")).to_have_value("Mme Durand")
        await expect(page.get_by_text("c'est ainsi que les élèves vous voient", exact=False)).to_be_visible()
        await join(page)
        await expect(page.locator("#room")).to_be_visible()
        await page.locator("#open-class").click()
        end = page.get_by_role("button", name="Terminer le cours pour tous")
        assert await in_sight(page, end)
        await screenshot(page, f"13-class-controls-{height}")
        await end.click()
        await page.get_by_role("dialog").get_by_role("button", name="Terminer le cours pour tous").click()
        await expect(page.get_by_role("heading", name="Le cours est terminé")).to_be_visible()
        # Her words, not the pupils' thanks for taking part.
        ended = page.locator("#ended-text")
        await expect(ended).to_have_text("Le cours est terminé pour tout le monde ; la discussion est effacée.")
        no_foreign_requests(browser)


# A name that starts with U+202E (right-to-left override), drawn by the page's own modules; where
# each piece of a sentence lands on screen, found by the characters' rectangles.
BIDI = """async () => {
  const { label } = await import('/static/js/i18n.js');
  const { chatItem } = await import('/static/js/class/panels.js');
  const name = '\\u202eAli';
  const box = document.createElement('div');
  document.body.append(box);
  function place(element, word) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.data.indexOf(word);
      if (at < 0) continue;
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + word.length);
      const r = range.getBoundingClientRect();
      return [r.left, r.right];
    }
    return null;
  }
  const tile = document.createElement('span');
  box.append(tile);
  label(tile, 'room.you', { name });
  const hand = document.createElement('p');
  box.append(hand);
  label(hand, 'room.hand_raised', { name });
  const chat = chatItem({ participant_id: 'b2', name, text: '\\u202eBonjour', at: Date.now() }, { id: 'a1' });
  box.append(chat);
  const isolated = (element) => getComputedStyle(element).unicodeBidi === 'isolate';
  return {
    you: [place(tile, 'Ali'), place(tile, '(vous)')],
    hand: [place(hand, 'Ali'), place(hand, 'lève la main')],
    chat: [isolated(chat.querySelector('b')), isolated(chat.querySelector('.text'))],
  };
}"""


async def on_class_page(classe: RunningServer, script: str) -> Any:
    """Run `script` in a class page whose modules have loaded (an unknown link stops it before any
    network work), and check that the page asked nothing of another host."""
    async with chromium(classe.url) as browser:
        page = await browser.page("leo")
        await page.goto(classe.url + "/c/any-code")
        await expect(page.get_by_role("heading", name="Lien non valide")).to_be_visible()
        result = await page.evaluate(script)
        no_foreign_requests(browser)
    return result


async def test_a_name_with_a_direction_override_does_not_reverse_the_sentence_around_it(
    classe: RunningServer,
) -> None:
    drawn = await on_class_page(classe, BIDI)
    for name, after in (drawn["you"], drawn["hand"]):
        assert name and after and after[0] >= name[1] - 0.5, drawn  # the rest of the sentence follows the name
    assert drawn["chat"] == [True, True], drawn


async def teacher_in_room(browser: Chromium, classe: RunningServer, link: str) -> Page:
    """The teacher (signed up by `teacher()`) signs in in Chromium and opens her class."""
    prof = await browser.page("prof")
    await sign_in(prof, classe.url, "prof@ac-lyon.fr")
    await prof.wait_for_url("**/classes")
    await prof.goto(link)
    await join(prof)
    await expect(prof.locator("#room")).to_be_visible()
    return prof


async def test_a_student_shares_the_screen_only_once_the_teacher_allows_it(classe: RunningServer) -> None:
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        classroom = await new_class(t, lobby=False, title="Techno 4e")
        prof = await teacher_in_room(browser, classe, classroom["link"])
        leo = await browser.page("leo")
        await leo.goto(classroom["link"])
        await join(leo, "Léo")
        await expect(leo.locator("#room")).to_be_visible()

        # Closed when the lesson starts: his button says why, and clicking it publishes nothing.
        share = leo.locator("#toggle-screen")
        await expect(share).to_be_disabled()
        await expect(share).to_have_attribute("title", re.compile("doit d'abord vous le permettre"))
        await expect(share).to_have_accessible_description(re.compile("doit d'abord vous le permettre"))
        await share.click(force=True)
        await expect(leo.locator("#announcer")).to_contain_text("Le partage d'écran est fermé")
        await asyncio.sleep(0.5)
        assert participant(classe, "Léo").producers("screen") == []

        # The teacher allows him by name; he is told, and shares.
        await prof.locator("#open-people").click()
        await prof.get_by_role("button", name="Autoriser Léo à partager son écran").click()
        await expect(leo.locator("#announcer")).to_have_text("Vous pouvez maintenant partager votre écran.")
        await expect(prof.locator("#people")).to_contain_text("Partage d'écran permis")
        await expect(share).to_be_enabled()
        await expect(share).not_to_have_attribute("title", re.compile("."))
        await share.click()

        # She is told at once, with a stop button, and sees his screen large.
        notice = prof.locator("#screen-notices li")
        await expect(notice).to_contain_text("Léo partage son écran.")
        await expect(prof.locator("#announcer")).to_have_text("Léo partage son écran.")
        await expect(prof.locator("#stage .tile.screen")).to_contain_text("Écran de Léo")
        await video_plays(prof, "#stage .tile.screen video")
        await screenshot(prof, "14-teacher-told-of-a-student-share")
        await notice.get_by_role("button", name="Arrêter le partage d'écran de Léo").click()
        await expect(leo.locator("#announcer")).to_have_text("L'enseignant a arrêté votre partage d'écran.")
        await expect(notice).to_have_count(0)
        # The permission went with the share.
        await expect(share).to_be_disabled()
        await expect(prof.get_by_role("button", name="Autoriser Léo à partager son écran")).to_be_visible()
        assert participant(classe, "Léo").producers("screen") == []
        no_foreign_requests(browser)


async def test_the_teacher_empties_a_flooded_lobby_and_closes_it_in_one_click(classe: RunningServer) -> None:
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        classroom = await new_class(t, lobby=True, title="Maths 3e")
        code = code_of(classroom)
        prof = await teacher_in_room(browser, classe, classroom["link"])
        flood: list[Peer] = []
        try:
            for n in range(3):
                async with Browser(classe) as guest:
                    peer = Peer(classe.url, "", f"Robot {n}")
                    flood.append(peer)
                    await peer.join(await guest.join_token(code, f"Robot {n}"), until="waiting")
            intruder = await browser.page("intruder")
            await intruder.goto(classroom["link"])
            await join(intruder, "Intrus")
            await expect(intruder.get_by_role("heading", name="Salle d'attente")).to_be_visible()
            await expect(prof.locator("#open-lobby .badge")).to_have_text("4")

            # One click: everyone waiting is refused, and newcomers are refused without waiting.
            await prof.locator("#open-lobby").click()
            await prof.get_by_role("button", name="Refuser tout le monde et fermer aux nouveaux venus").click()
            await expect(intruder.get_by_role("heading", name="Entrée refusée")).to_be_visible()
            for peer in flood:
                assert (await peer.expect("error"))["code"] == "refused"
            await expect(prof.locator("#lobby-locked")).to_contain_text("Fermé aux nouveaux venus")
            await screenshot(prof, "15-lobby-closed-to-newcomers")
            newcomer = await browser.page("newcomer")
            await newcomer.goto(classroom["link"])
            await join(newcomer, "Nouvelle")
            await expect(newcomer.get_by_role("heading", name="Entrée fermée")).to_be_visible()
            await expect(newcomer.get_by_role("button", name="Revenir dans la classe")).to_be_hidden()

            # Reopened: a newcomer waits again, but whoever was refused is refused at once on return.
            await prof.get_by_role("button", name="Rouvrir aux nouveaux venus").click()
            await expect(prof.locator("#lobby-locked")).to_be_hidden()
            await newcomer.reload()
            await join(newcomer, "Nouvelle")
            await expect(newcomer.get_by_role("heading", name="Salle d'attente")).to_be_visible()
            await intruder.reload()
            await join(intruder, "Intrus")
            await expect(intruder.get_by_role("heading", name="Entrée refusée")).to_be_visible()
            await expect(prof.locator("#lobby-list")).to_contain_text("Nouvelle")
            await expect(prof.locator("#lobby-list")).not_to_contain_text("Intrus")
            no_foreign_requests(browser)
        finally:
            for peer in flood:
                await peer.close()


@pytest.mark.parametrize("settings_overrides", [{"teacher_absence_seconds": 6}])
async def test_pupils_are_told_when_the_teacher_leaves_and_the_lesson_ends_without_one(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        classroom = await new_class(t, lobby=False, title="Anglais 5e")
        prof = Peer(classe.url, "", "Mme Durand")
        try:
            await prof.join(await t.join_token(code_of(classroom)))
            leo = await browser.page("leo")
            await leo.goto(classroom["link"])
            await join(leo, "Léo")
            await expect(leo.locator("#room")).to_be_visible()
            away = leo.locator("#teacher-away")
            await expect(away).to_be_hidden()

            # She leaves: a banner says so, with the time left; she comes back, it goes.
            await prof.close()
            await expect(away).to_contain_text("L'enseignant·e a quitté le cours.")
            await expect(away).to_contain_text(re.compile(r"dans 0:0[1-6]"))
            await screenshot(leo, "16-student-teacher-away")
            prof = Peer(classe.url, "", "Mme Durand")
            await prof.join(await t.join_token(code_of(classroom)))
            await expect(away).to_be_hidden()
            await expect(leo.locator("#announcer")).to_have_text("L'enseignant·e est de retour.")

            # She leaves for good: the lesson ends, and the page says why.
            await prof.close()
            await expect(away).to_be_visible()
            await expect(leo.get_by_role("heading", name="Le cours est terminé")).to_be_visible(timeout=15_000)
            await expect(leo.locator("#ended-text")).to_contain_text("Aucun·e enseignant·e n'est revenu·e à temps")
            no_foreign_requests(browser)
        finally:
            await prof.close()


# Test instrumentation: the page's first `join` never leaves, as on a connection that stalls.
SWALLOW_JOIN = """
const send = WebSocket.prototype.send;
let swallowed = false;
WebSocket.prototype.send = function (data) {
  if (!swallowed && String(data).includes('"type":"join"')) { swallowed = true; return; }
  return send.call(this, data);
};
"""


@pytest.mark.parametrize("settings_overrides", [{"max_lobby": 1, "join_timeout_seconds": 1}])
async def test_a_full_lobby_and_a_join_too_slow_each_have_their_end_screen(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as guest, chromium(classe.url) as browser:
        classroom = await new_class(t, lobby=True, title="SVT 6e")
        prof = Peer(classe.url, "", "Mme Durand")
        waiting = Peer(classe.url, "", "Inès")
        try:
            await prof.join(await t.join_token(code_of(classroom)))
            await waiting.join(await guest.join_token(code_of(classroom), "Inès"), until="waiting")
            leo = await browser.page("leo")
            await leo.goto(classroom["link"])
            await join(leo, "Léo")
            await expect(leo.get_by_role("heading", name="La salle d'attente est pleine")).to_be_visible()
            await expect(leo.get_by_role("button", name="Revenir dans la classe")).to_be_visible()

            slow = await browser.page("slow", init_script=SWALLOW_JOIN)
            await slow.goto(classroom["link"])
            await join(slow, "Lent")
            await expect(slow.get_by_role("heading", name="Connexion trop lente")).to_be_visible()
            await expect(slow.get_by_role("button", name="Revenir dans la classe")).to_be_visible()
            no_foreign_requests(browser)
        finally:
            await waiting.close()
            await prof.close()


# Test instrumentation for a class of seven in one Chromium on a small machine: cameras asked for
# a thumbnail's size and rate, every message the page hears or sends kept for the test, and a way
# to say the tab is hidden (headless Chromium never hides one).
LIGHT_CLASS = """
if (navigator.mediaDevices) {
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => open(c && c.video
    ? { ...c, video: { ...(typeof c.video === 'object' ? c.video : {}), width: { ideal: 160 }, height: { ideal: 90 },
                      frameRate: { ideal: 10, max: 10 } } }
    : c);
}
window.__heard = [];
window.__said = [];
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (event) => window.__heard.push(JSON.parse(event.data)));
  }
  send(data) { window.__said.push(JSON.parse(data)); return super.send(data); }
};
window.__hide = (hidden) => {
  Object.defineProperty(document, 'hidden', { value: hidden, configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
};
"""
# Per received video (by its owner, from the latest subscribe_offer): frames decoded, bytes received.
VIDEO_STATS = """async () => {
  const offers = window.__heard.filter((m) => m.type === 'subscribe_offer');
  const tracks = new Map((offers.length ? offers[offers.length - 1].tracks : []).map((t) => [t.mid, t]));
  const result = {};
  for (const pc of window.__peers) {
    if (pc.connectionState === 'closed') continue;
    const mids = new Map(pc.getTransceivers().map((t) => [t.receiver.track.id, t.mid]));
    for (const report of (await pc.getStats()).values()) {
      if (report.type !== 'inbound-rtp' || report.kind !== 'video') continue;
      const track = tracks.get(report.mid ?? mids.get(report.trackIdentifier));
      if (!track) continue;
      const key = track.source === 'screen' ? `${track.participant_id}:screen` : track.participant_id;
      result[key] = { frames: report.framesDecoded || 0, bytes: report.bytesReceived || 0 };
    }
  }
  return result;
}"""
LAST_VIEW = "() => window.__said.filter((m) => m.type === 'view').pop() || null"
SHOWN_TRACKS = """() => [...document.querySelectorAll('#stage .tile[data-track], #grid .tile[data-track]')]
  .map((tile) => tile.dataset.participant)"""


async def video_flow(page: Page, seconds: float = 2.0) -> tuple[dict[str, int], int]:
    """Frames decoded per participant's video over a few seconds, and the video bytes received."""
    before = await page.evaluate(VIDEO_STATS)
    await asyncio.sleep(seconds)
    after = await page.evaluate(VIDEO_STATS)
    frames = {key: now["frames"] - before.get(key, {"frames": 0})["frames"] for key, now in after.items()}
    received = sum(now["bytes"] - before.get(key, {"bytes": 0})["bytes"] for key, now in after.items())
    return frames, received


async def only_these_play(page: Page, playing: set[str], stopped: set[str]) -> Any:
    """Wait until the videos of `playing` decode frames and those of `stopped` decode none."""

    async def check() -> Any:
        frames, received = await video_flow(page)
        good = all(frames.get(p, 0) > 3 for p in playing) and all(frames.get(p, 0) == 0 for p in stopped)
        return (frames, received) if good else None

    return await until(check, timeout=30)


async def join_quietly(page: Page, link: str, name: str | None) -> None:
    """Join with the microphone off: who speaks is decided by the test, one at a time."""
    await page.goto(link)
    if name is not None:
        await page.get_by_label("Votre nom").fill(name)
    await page.get_by_label("Micro allumé").uncheck()
    await page.get_by_role("button", name="Rejoindre la classe").click()
    await expect(page.locator("#room")).to_be_visible()


@pytest.mark.parametrize("settings_overrides", [{"video_last_n": 4}])
async def test_a_class_of_seven_sends_each_student_the_page_it_shows_and_follows_the_speaker(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, chromium(classe.url) as browser:
        classroom = await new_class(t, lobby=False, title="Français 6e")
        link = classroom["link"]
        prof = await browser.page("prof", init_script=LIGHT_CLASS)
        await sign_in(prof, classe.url, "prof@ac-lyon.fr")
        await prof.wait_for_url("**/classes")
        await join_quietly(prof, link, None)
        names = ["Alice", "Bruno", "Chloé", "David", "Emma"]
        pupils = {}
        for name in names:
            pupils[name] = await browser.page(name, init_script=LIGHT_CLASS)
            await join_quietly(pupils[name], link, name)
        # Léo's window is small: under the teacher, a strip of three thumbnails a page.
        leo = await browser.page("leo", init_script=LIGHT_CLASS)
        await leo.set_viewport_size({"width": 760, "height": 600})
        await join_quietly(leo, link, "Léo")
        ids = {name: participant(classe, name).id for name in [*names, "Léo", "Mme Durand"]}
        who = {v: k for k, v in ids.items()}

        def tile(page: Page, name: str) -> Any:
            return page.locator(f'#grid .tile[data-participant="{ids[name]}"]')

        # The teacher large; his page of thumbnails: himself and the first two; the rest on page 2.
        await expect(leo.locator("#stage .tile")).to_contain_text("Mme Durand")
        pager = leo.get_by_role("navigation", name="Pages des participants")
        await expect(pager).to_be_visible()
        await expect(leo.locator("#page-status")).to_have_text("Page 1 sur 2")
        await expect(leo.locator("#grid .tile")).to_have_count(3)
        await expect(leo.locator("#grid .tile.me")).to_have_count(1)
        shown = {who[p] for p in await leo.evaluate(SHOWN_TRACKS)}
        assert shown == {"Mme Durand", "Alice", "Bruno"}, shown
        await screenshot(leo, "17-student-page-of-thumbnails")
        # The server is told what the page draws, and at what size: the teacher large.
        view = await until(lambda: _view_of(leo, len(shown)))
        assert view["audio_only"] is False and view["pinned"] is None
        sizes = {who[tile["track_id"].split(":")[0]]: tile["width"] for tile in view["tiles"]}
        assert set(sizes) == shown and sizes["Mme Durand"] > 480 > sizes["Alice"], view
        assert all(m["tiles"] for m in await leo.evaluate("window.__said") if m["type"] == "view"), "never empty"
        page_two = {ids[n] for n in ("Chloé", "David", "Emma")}
        await only_these_play(leo, {ids["Mme Durand"], ids["Alice"], ids["Bruno"]}, page_two)
        videos = [m for m in await leo.evaluate("window.__heard") if m["type"] == "videos"]
        assert {r.split(":")[0] for r in videos[-1]["receiving"]} == {ids["Mme Durand"], ids["Alice"], ids["Bruno"]}

        # The next page, from the keyboard: now the other three play, and Alice and Bruno stop.
        await leo.get_by_role("button", name="Page suivante").focus()
        await leo.keyboard.press("Enter")
        await expect(leo.locator("#page-status")).to_have_text("Page 2 sur 2")
        await expect(leo.get_by_role("button", name="Page suivante")).to_be_disabled()
        await expect(leo.get_by_role("button", name="Page précédente")).to_be_focused()  # not lost to the page
        await only_these_play(leo, {ids["Mme Durand"], *page_two}, {ids["Alice"], ids["Bruno"]})

        # David speaks up: the server names him, and Léo's page and the teacher's outline him.
        await pupils["David"].locator("#toggle-microphone").click()
        await expect(leo.locator("#grid .tile.speaking")).to_have_attribute("data-participant", ids["David"])
        await expect(tile(prof, "David")).to_have_class(re.compile("speaking"))
        speakers = [m for m in await leo.evaluate("window.__heard") if m["type"] == "speakers"]
        assert ids["David"] in [m["active"] for m in speakers]
        # He stops, Emma starts: the outline follows the server's word.
        await pupils["David"].locator("#toggle-microphone").click()
        await pupils["Emma"].locator("#toggle-microphone").click()
        await expect(leo.locator("#grid .tile.speaking")).to_have_attribute("data-participant", ids["Emma"])
        await expect(tile(leo, "David")).not_to_have_class(re.compile("speaking"))

        # The teacher's view: every student a thumbnail with a name, and a raised hand shows. The
        # server sends her four videos (video_last_n): the other two tiles show names, not pictures.
        await expect(prof.locator("#grid .tile")).to_have_count(7)
        await expect(prof.locator("#pager")).to_be_hidden()
        await expect(prof.locator("#grid .tile:not(.me).has-video")).to_have_count(4)
        await expect(prof.locator("#grid .tile:not(.me):not(.has-video) .avatar")).to_have_count(2)
        for avatar in await prof.locator("#grid .tile:not(.me):not(.has-video) .avatar").all():
            await expect(avatar).to_be_visible()
        await pupils["Bruno"].get_by_role("button", name="Lever la main").click()
        await expect(tile(prof, "Bruno").locator(".state.hand")).to_be_visible()
        await expect(tile(prof, "Bruno")).to_contain_text("Bruno")
        # Bruno is on Léo's other page: his page says a hand is up there.
        await expect(leo.locator("#page-hands")).to_have_text("1 main levée sur une autre page")
        await screenshot(prof, "18-teacher-class-of-seven")
        # On a smaller screen her thumbnails come in pages too, and she is sent only her page's.
        await prof.set_viewport_size({"width": 700, "height": 520})
        await expect(prof.locator("#page-status")).to_have_text(re.compile(r"Page 1 sur [23]"))
        on_page = await prof.locator("#grid .tile:not(.me)").count()
        assert 0 < on_page < 6
        await until(lambda: _view_of(prof, on_page))
        await prof.set_viewport_size({"width": 1280, "height": 800})
        await expect(prof.locator("#pager")).to_be_hidden()

        # Back on his first page, he is told who speaks elsewhere, and one click takes him there.
        await leo.get_by_role("button", name="Page précédente").click()
        await expect(leo.locator("#page-status")).to_have_text("Page 1 sur 2")
        await leo.get_by_role("button", name="Emma parle : page 2").click()
        await expect(leo.locator("#page-status")).to_have_text("Page 2 sur 2")

        # Léo saves data: no video comes any more (not even the teacher's), his camera goes off,
        # and he still hears Emma.
        _, streaming = await video_flow(leo)
        saver = leo.get_by_role("button", name="Économiser les données", exact=True)
        await saver.click()
        await expect(saver).to_have_attribute("aria-pressed", "true")
        await expect(leo.locator("#announcer")).to_contain_text("votre caméra est coupée")
        await expect(leo.locator("#toggle-camera")).to_have_attribute("aria-pressed", "false")
        await expect(leo.locator(".tile:not(.me).has-video")).to_have_count(0)  # names, not frozen pictures
        await expect(leo.locator("#stage .tile .avatar")).to_be_visible()
        frames, saving = await only_these_play(leo, set(), set(ids.values()))
        assert saving < streaming / 20, (saving, streaming)
        assert (await leo.evaluate(LAST_VIEW))["audio_only"] is True
        await audio_arrives(leo)
        await screenshot(leo, "19-student-saves-data")
        await saver.click()
        await expect(saver).to_have_attribute("aria-pressed", "false")
        await only_these_play(leo, {ids["Mme Durand"], *page_two}, {ids["Alice"], ids["Bruno"]})
        await expect(leo.locator("#toggle-camera")).to_have_attribute("aria-pressed", "false")  # his own click

        # A hidden tab draws nothing: nothing is sent to it until it shows again.
        await leo.evaluate("window.__hide(true)")
        await until(lambda: _empty_view(leo))
        await only_these_play(leo, set(), set(ids.values()))
        await leo.evaluate("window.__hide(false)")
        await only_these_play(leo, {ids["Mme Durand"], *page_two}, {ids["Alice"], ids["Bruno"]})

        # He pins Chloé: she goes large, and the server is told whom he pinned.
        await leo.get_by_role("button", name="Afficher Chloé en grand").click()
        await expect(leo.locator("#stage .tile")).to_contain_text("Chloé")
        await until(lambda: _pinned(leo, ids["Chloé"]))
        no_foreign_requests(browser)


async def _pinned(page: Page, participant_id: str) -> bool:
    view = await page.evaluate(LAST_VIEW)
    return bool(view and view["pinned"] == participant_id)


async def _view_of(page: Page, count: int) -> Any:
    view = await page.evaluate(LAST_VIEW)
    return view if view and len(view["tiles"]) == count else None


async def _empty_view(page: Page) -> bool:
    view = await page.evaluate(LAST_VIEW)
    return bool(view and view["tiles"] == [])


# Test instrumentation: a connection whose round trip takes 600 ms, as the page measures it.
SLOW_LINK = """
const stats = RTCPeerConnection.prototype.getStats;
window.__slow = false;
RTCPeerConnection.prototype.getStats = async function (...args) {
  const report = await stats.apply(this, args);
  if (!window.__slow) return report;
  const slowed = new Map();
  for (const [id, r] of report) {
    const pair = r.type === 'candidate-pair' && r.currentRoundTripTime !== undefined;
    slowed.set(id, pair ? { ...r, currentRoundTripTime: 0.6 } : r);
  }
  return slowed;
};
"""


async def test_a_poor_connection_is_offered_the_data_saver_which_stops_video_but_not_sound(
    classe: RunningServer, open_class: Any
) -> None:
    classroom, prof = open_class
    async with chromium(classe.url) as browser:
        ines = await browser.page("ines", init_script=LIGHT_CLASS + SLOW_LINK)
        await ines.goto(classroom["link"])
        await join(ines, "Inès")
        await video_plays(ines, "#stage .tile video")
        teacher_id = (await until(lambda: _view_of(ines, 1)))["tiles"][0]["track_id"].split(":")[0]
        offer = ines.locator("#saver-offer")
        await asyncio.sleep(4.5)
        await expect(offer).to_be_hidden()  # a good connection is left alone

        # The connection turns bad and stays so: a suggestion, which blocks nothing.
        await ines.evaluate("window.__slow = true")
        await expect(ines.locator("#quality")).to_have_attribute("aria-label", "Connexion : mauvaise")
        await expect(offer).to_contain_text("Votre connexion est faible", timeout=10_000)
        await expect(ines.locator("#announcer")).to_contain_text("Votre connexion est faible")
        await screenshot(ines, "20-data-saver-offered")
        await ines.locator("#open-chat").click()  # the room still works around it
        await expect(ines.locator("#panel-chat")).to_be_visible()
        await offer.get_by_role("button", name="Oui, économiser les données").click()
        await expect(offer).to_be_hidden()
        saver = ines.get_by_role("button", name="Économiser les données", exact=True)
        await expect(saver).to_have_attribute("aria-pressed", "true")
        await only_these_play(ines, set(), {teacher_id})
        await expect(ines.locator("#stage .tile.has-video")).to_have_count(0)
        await audio_arrives(ines)
        told = participant(classe, "Inès").view
        assert told is not None and told.audio_only is True
        # The teacher shares her screen: that one still comes, large; her camera still does not.
        await prof.publish(screen=True, audio=False)
        await expect(ines.locator("#stage .tile.screen")).to_contain_text("Écran de Mme Durand")
        await video_plays(ines, "#stage .tile.screen video")
        await only_these_play(ines, {f"{teacher_id}:screen"}, {teacher_id})
        await expect(ines.locator("#grid .tile:not(.me).has-video")).to_have_count(0)
        no_foreign_requests(browser)


# The session's `view` sending on its own, with a stand-in socket: what goes out, and when.
VIEW_TIMING = """async () => {
  const { ClassSession } = await import('/static/js/class/session.js');
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const s = new ClassSession(async () => ({ token: 'token', ws_url: null }));
  const sent = [];
  let refusals = 0;
  s.addEventListener('refused', () => { refusals += 1; });
  const send = (data) => sent.push({ at: performance.now(), ...JSON.parse(data) });
  s.signal.ws = { readyState: WebSocket.OPEN, send };
  s.status = 'joined';
  const start = performance.now();
  const tile = (n) => ({ track_id: `a1:pub:${n}`, width: 160, height: 90 });
  const view = (n) => ({ tiles: [tile(n)], pinned: null, audio_only: false });
  s.setView(view(1));
  s.setView(view(1)); // drawn again, the same: one message
  await sleep(400);
  s.setView(view(2));
  await sleep(50);
  s.setView(view(3)); // within the debounce: only the latest goes
  await sleep(1000);
  await s.handle({ type: 'error', code: 'rate_limited', ref: sent[sent.length - 1].id, fatal: false });
  await sleep(1300);
  return { refusals, sent: sent.map((m) => ({ at: m.at - start, type: m.type, track: m.tiles[0].track_id })) };
}"""


async def test_views_are_debounced_spaced_within_the_budget_and_sent_again_when_refused(
    classe: RunningServer,
) -> None:
    result = await on_class_page(classe, VIEW_TIMING)
    sent = result["sent"]
    assert [m["track"] for m in sent] == ["a1:pub:1", "a1:pub:3", "a1:pub:3"], sent
    assert all(m["type"] == "view" for m in sent)
    assert sent[0]["at"] >= 240  # debounced
    assert sent[1]["at"] - sent[0]["at"] >= 590  # at most one every 600 ms: 10 in 5 s is the budget
    assert sent[2]["at"] - sent[1]["at"] >= 950  # sent again a second after the refusal
    assert result["refusals"] == 0  # the page does not tell the person about it
