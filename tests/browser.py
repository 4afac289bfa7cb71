"""A real Chromium (Debian's package) driven by Playwright, with a fake camera and microphone.

Every page a test opens is watched: the hosts it asks for are collected, so that a test can
prove the page talked to its own server and nothing else; screenshots go to `artifacts/browser`
(or $CLASSE_ARTIFACTS), which CI keeps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, async_playwright

ARTIFACTS = Path(os.environ.get("CLASSE_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts" / "browser"))
CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream=device-count=2",  # two cameras, three microphones: a choice to make
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
]
# Test instrumentation, not part of the app: keep the page's peer connections within reach.
WATCH_PEERS = """
window.__peers = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__peers.push(this); }
};
"""
# Test instrumentation too: the client asks for a 720p camera (the full simulcast layer); the
# browser tests other than simulcast's ask for 640x360, as the client did before, so that a CI
# machine of 2 CPUs is not busy encoding three layers of 720p for every page.
SMALLER_CAMERA = """
if (navigator.mediaDevices) {
  const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => {
    const video = c && typeof c.video === 'object' ? c.video : null;
    const hd = video && video.width && video.width.ideal === 1280;
    return open(hd ? { ...c, video: { ...video, width: { ideal: 640 }, height: { ideal: 360 } } } : c);
  };
}
"""


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("Chromium is missing: ./dev test installs Debian's chromium package (apt-get install chromium)")


class Chromium:
    def __init__(self, origin: str, browser: Any, full_camera: bool = False) -> None:
        self.origin = origin
        self.browser = browser
        self.full_camera = full_camera
        self.requests: list[str] = []
        self.errors: list[str] = []

    async def context(self, name: str, *, init_script: str = "") -> BrowserContext:
        context: BrowserContext = await self.browser.new_context(
            viewport={"width": 1280, "height": 800}, locale="fr-FR"
        )
        await context.add_init_script(WATCH_PEERS + ("" if self.full_camera else SMALLER_CAMERA) + init_script)
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("page", lambda page: self._watch(page, name))
        return context

    def _watch(self, page: Page, name: str) -> None:
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("pageerror", lambda error: self.errors.append(f"{name}: {error}"))

    async def page(self, name: str, *, init_script: str = "") -> Page:
        context = await self.context(name, init_script=init_script)
        return await context.new_page()

    def foreign_requests(self) -> list[str]:
        """Every request that went anywhere but the server's own origin (HTTP or WebSocket)."""
        host = self.origin.split("://", 1)[1]
        own = (f"http://{host}/", f"ws://{host}/")
        return [url for url in self.requests if not url.startswith(own) and not url.startswith(("data:", "blob:"))]


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@asynccontextmanager
async def chromium(origin: str, *extra_flags: str, full_camera: bool = False) -> AsyncIterator[Chromium]:
    async with async_playwright() as playwright:
        flags = [*CHROMIUM_FLAGS, *extra_flags]
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=flags, headless=True)
        try:
            yield Chromium(origin, browser, full_camera)
        finally:
            await browser.close()
