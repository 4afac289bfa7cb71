"""Simulcast in a real Chromium: a 1280x720 camera in three layers, each student given what its
screen and its link take, and the layers nobody receives stopped at the publisher (dynacast).

The fake camera is a generated 1280x720 video file, so that the browser has three resolutions to
send. The students' browsers send transport-wide feedback, from which the server estimates their
downlinks. One student's downlink is shaped with `tc` on the loopback interface (a token bucket on the
UDP port its browser receives on), the way a poor home connection would hold it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Page, expect

from sfu.core import Kind
from sfu.core.layered import LayeredConsumer

from .browser import Chromium, chromium
from .conftest import RunningServer
from .test_access import new_class
from .test_web_client import join_quietly, participant, sign_in, until
from .web import teacher

WIDTH, HEIGHT, FRAMES = 1280, 720, 30

INBOUND_WIDTH = """async () => {
  let width = 0;
  for (const pc of window.__peers) {
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.frameWidth) width = Math.max(width, r.frameWidth);
    }
  }
  return width;
}"""
RECEIVING_PORT = """async () => {
  for (const pc of window.__peers) {
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        const pair = [...(await pc.getStats()).values()].find((p) => p.type === 'candidate-pair' && p.nominated);
        const local = pair && (await pc.getStats()).get(pair.localCandidateId);
        if (local) return local.port;
      }
    }
  }
  return 0;
}"""
ENCODINGS = """() => window.__peers.flatMap((pc) => pc.getSenders())
  .filter((s) => s.track && s.track.kind === 'video')
  .flatMap((s) => s.getParameters().encodings.map((e) => [e.rid, e.active]))"""


def camera_file(directory: Path) -> Path:
    """A moving 1280x720 picture in YUV4MPEG2, the format Chromium's fake capture reads."""
    path = directory / "camera.y4m"
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode())
        for frame in range(FRAMES):
            luma = ((x // 40 + y // 40 + frame) % 2 * 160 + (x + 8 * frame) % 64).astype(np.uint8)
            chroma = np.full((HEIGHT // 2, WIDTH // 2), 128 + 4 * frame, dtype=np.uint8)
            out.write(b"FRAME\n" + luma.tobytes() + chroma.tobytes() + chroma.tobytes())
    return path


class Shaper:
    """A rate limit with a short queue on the loopback interface for the UDP datagrams to one port
    (one browser's downlink), as a poor home line; everything else on loopback goes unshaped."""

    def __init__(self, port: int, rate: str) -> None:
        self.port = port
        self.rate = rate

    def __enter__(self) -> Shaper:
        self.lift()
        for command in (
            "tc qdisc add dev lo root handle 1: htb default 10 r2q 100000",
            "tc class add dev lo parent 1: classid 1:10 htb rate 10gbit",
            f"tc class add dev lo parent 1: classid 1:30 htb rate {self.rate} ceil {self.rate} burst 4kb",
            "tc qdisc add dev lo parent 1:30 handle 30: bfifo limit 12000",  # about 300 ms of queue
            f"tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff "
            f"match ip dport {self.port} 0xffff flowid 1:30",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)
        return self

    def lift(self) -> None:
        subprocess.run("tc qdisc del dev lo root".split(), capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.lift()


async def students_page(browser: Chromium, link: str, name: str, width: int) -> Page:
    page = await browser.page(name)
    await page.set_viewport_size({"width": width, "height": 700})
    await join_quietly(page, link, name)
    return page


async def test_a_camera_in_three_layers_each_student_what_the_link_takes(classe: RunningServer, tmp_path: Path) -> None:
    flags = (f"--use-file-for-fake-video-capture={camera_file(tmp_path)}",)
    async with await teacher(classe) as t, chromium(classe.url, *flags, full_camera=True) as browser:
        classroom = await new_class(t, lobby=False, title="Physique 3e")
        link = classroom["link"]
        prof = await browser.page("prof")
        await sign_in(prof, classe.url, "prof@ac-lyon.fr")
        await prof.wait_for_url("**/classes")
        await join_quietly(prof, link, None)

        # The teacher's browser sends q, h and f; the server receives each on its own stream.
        cameras = await until(lambda: _cameras(classe), timeout=20)
        camera = cameras[0]
        assert camera.rids == ("q", "h", "f") and camera.kind is Kind.VIDEO
        await until(lambda: _flowing(camera), timeout=20)

        # Two students see the teacher large: both are given the full layer.
        alice = await students_page(browser, link, "Alice", 1280)
        bruno = await students_page(browser, link, "Bruno", 1280)
        for name, page in (("Alice", alice), ("Bruno", bruno)):
            await until(lambda name=name, page=page: _full(classe, name, page), timeout=60)

        # Their browsers report what arrives (transport-wide feedback): the server's own estimate.
        for name in ("Alice", "Bruno"):
            bwe = participant(classe, name).subscriber.transport.bwe
            assert bwe is not None and bwe.feedbacks > 0, name

        # Bruno's link drops to 300 kbit/s: he gets the lowest layer, Alice keeps the full one.
        port = await until(lambda: _port(bruno))
        with Shaper(port, "300kbit") as shaper:
            await until(lambda: _both(_lowest(classe, "Bruno", bruno), _full(classe, "Alice", alice)), timeout=60)
            # The link recovers: probing steps bring the full layer back.
            shaper.lift()
            await until(lambda: _full(classe, "Bruno", bruno), timeout=90)

        # Dynacast: nobody shows the teacher large any more (small windows): nobody receives f,
        # and the teacher's browser stops encoding it.
        for page in (alice, bruno):
            await page.set_viewport_size({"width": 560, "height": 500})
        await until(lambda: _encoding_active(prof, "f", False), timeout=30)
        assert dict(await prof.evaluate(ENCODINGS))["q"] is True
        await alice.set_viewport_size({"width": 1280, "height": 800})
        await until(lambda: _encoding_active(prof, "f", True), timeout=20)
        await until(lambda: _full(classe, "Alice", alice), timeout=40)
        await expect(alice.locator("#room")).to_be_visible()


async def _cameras(classe: RunningServer) -> Any:
    return participant(classe, "Mme Durand").producers("camera")


async def _flowing(camera: Any) -> bool:
    return all(stream.ssrc is not None and stream.received > 0 for stream in camera.streams)


def _layer(classe: RunningServer, name: str) -> int:
    """The spatial layer of the teacher's camera the server forwards to this student (-1: none)."""
    camera = participant(classe, "Mme Durand").producers("camera")[0]
    consumers = participant(classe, name).subscriber.transport.consumers.values()
    layered = [c for c in consumers if c.producer is camera and isinstance(c, LayeredConsumer)]
    return layered[0].layered_forwarder.current if layered else -1


# Per stream of the teacher's camera: when its count was last taken, the count then, and whether
# it had grown over the second before.
_seen: dict[int, tuple[float, int, bool]] = {}


def _sending(stream: Any) -> bool:
    """Whether packets of this layer arrived over the last second or so."""
    now = time.monotonic()
    if id(stream) not in _seen:
        _seen[id(stream)] = (now, stream.received, False)
    at, count, grew = _seen[id(stream)]
    if now - at >= 1.0:
        grew = stream.received > count
        _seen[id(stream)] = (now, stream.received, grew)
    return grew


def _best_sent(classe: RunningServer) -> int:
    """The highest spatial layer the teacher's browser sends now: Chrome short of CPU (a loaded CI
    machine) scales its layers down, and may stop sending f altogether."""
    camera = participant(classe, "Mme Durand").producers("camera")[0]
    sent = [s.spatial for s in camera.streams if s.ssrc is not None and _sending(s)]
    return max(sent, default=-1)


async def _full(classe: RunningServer, name: str, page: Page) -> bool:
    """The student is given the best layer the teacher sends (f, or h from a browser short of CPU),
    and shows a picture wider than q's 320 pixels."""
    best = _best_sent(classe)
    return best >= 1 and _layer(classe, name) == best and await page.evaluate(INBOUND_WIDTH) > 320


async def _lowest(classe: RunningServer, name: str, page: Page) -> bool:
    return _layer(classe, name) == 0 and 0 < await page.evaluate(INBOUND_WIDTH) <= 320


async def _both(first: Awaitable[bool], second: Awaitable[bool]) -> bool:
    """Both at once: one student's layer does not decide the other's."""
    results = (await first, await second)
    return all(results)


async def _port(page: Page) -> Any:
    return await page.evaluate(RECEIVING_PORT) or None


async def _encoding_active(page: Page, rid: str, active: bool) -> bool:
    return bool(dict(await page.evaluate(ENCODINGS)).get(rid) is active)
