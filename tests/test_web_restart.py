"""The browser client in a real Chromium through a restart of its one server (no Redis): the page
says the server restarts, stays on the class, and comes back by itself."""

from __future__ import annotations

import signal
from pathlib import Path

from playwright.async_api import expect

from .browser import chromium, screenshot
from .process import ClasseProcess
from .rejoining import Attendee, Entrance, clean, until
from .test_access import new_class
from .test_web_client import join, no_foreign_requests, video_plays
from .web import PASSWORD, Browser


async def admit(prof: Attendee, name: str) -> None:
    """The teacher (an aiortc peer) lets `name` in once the lobby lists them."""

    def waiting() -> list[str]:
        assert prof.peer is not None
        lobbies = [e["waiting"] for e in prof.peer.events if e["type"] == "lobby"]
        return [p["id"] for p in (lobbies[-1] if lobbies else []) if p["name"] == name]

    await until(lambda: bool(waiting()), timeout=40, what=f"{name} in the lobby")
    assert prof.peer is not None
    await prof.peer.send({"type": "moderate", "action": "admit", "participant_id": waiting()[0]})


async def test_after_a_restart_the_page_rejoins_by_itself_and_says_what_happens(tmp_path: Path) -> None:
    node = ClasseProcess(tmp_path, stop_grace_seconds=10)
    await node.create_teacher()
    await node.start()
    entrance = Entrance(node.url)
    teacher = Browser(entrance)
    await teacher.sign_in("prof@ac-lyon.fr", PASSWORD)
    classroom = await new_class(teacher, lobby=True, title="Français 6e")
    prof = Attendee(entrance, teacher, classroom["link"].rsplit("/", 1)[1], None, publish=True)
    try:
        await prof.join()
        async with chromium(node.url) as browser:
            leo = await browser.page("leo")
            await leo.goto(classroom["link"])
            await join(leo, "Léo")
            await admit(prof, "Léo")
            await video_plays(leo, "#stage .tile video")
            banner = leo.locator("#banner")

            # SIGTERM: the page says the server restarts, and keeps the class on screen.
            node.signal(signal.SIGTERM)
            await expect(banner).to_have_text("Le serveur redémarre : reconnexion dans quelques secondes…")
            await screenshot(leo, "30-student-server-restarting")
            assert await node.exited(timeout=15) == 0
            await node.start()

            # Back without a click. On one node the restarted server has forgotten who was let in
            # (lobby decisions live in its memory): Léo stays on the class page, told that the
            # teacher must let him in again, instead of being sent back to the waiting page.
            await until(lambda: len(prof.joins) == 2, timeout=40, what="the teacher back")
            await expect(banner).to_have_text(
                "De retour dans la classe : l'enseignant·e doit vous faire entrer à nouveau.", timeout=40_000
            )
            await expect(leo.locator("#room")).to_be_visible()
            await expect(leo.locator("#waiting")).to_be_hidden()
            await screenshot(leo, "31-student-back-waiting-for-the-teacher")
            await admit(prof, "Léo")
            await expect(banner).to_have_text("La connexion est rétablie.", timeout=30_000)
            await video_plays(leo, "#stage .tile video")
            no_foreign_requests(browser)
    finally:
        await prof.close()
        await node.kill()
    clean(node.logs_text())
