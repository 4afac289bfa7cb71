"""The class events in the log of a real server process (signaling/events.py): a lesson with real
aiortc peers (joins, refusals at the WebSocket and at POST /api/join, a removal, an ICE failure,
the end, a drain and a stop) leaves one line per event, in order, as text and as JSON lines; and
nowhere in the whole log a name, an e-mail address or an IP address."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from signaling.events import REFUSAL_LINES_BURST, ClassEvents, Event, text_value
from signaling.logs import JsonFormatter, TextFormatter

from .peers import Peer
from .process import ClasseProcess
from .test_access import new_class
from .web import PASSWORD, Browser, code_of

TEACHER_EMAIL = "prof@ac-lyon.fr"
NAMES = ("Mme Durand", "Léo Martin", "Zoé Bernard", "Tom Petit")
TEXT_EVENT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) classe\.events (\w+)((?: \w+=\S+)*)$")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(\.\d{1,3}){3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(::1|::ffff:|fe80::|[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7})(?![\w:])", re.I)


def events(log: str, log_format: str) -> list[dict[str, Any]]:
    """The event lines of the log, as {event, class, participant, …} (and `level`, `node`)."""
    found = []
    for line in log.splitlines():
        if log_format == "json":
            record = json.loads(line)  # every line: one JSON object
            assert isinstance(record, dict) and {"ts", "level"} <= record.keys(), line
            if "event" in record:
                found.append(record)
            continue
        match = TEXT_EVENT.match(line)
        if match is not None:
            level, event, fields = match.groups()
            record = {"level": level.lower(), "event": event}
            record.update(field.split("=", 1) for field in fields.split())
            found.append(record)
    return found


def in_order(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Each expected event (its fields a subset of a line's) after the one before it."""
    position = 0
    for wanted in expected:
        while position < len(found) and not wanted.items() <= found[position].items():
            position += 1
        assert position < len(found), f"no {wanted} after the events before it in:\n" + "\n".join(map(str, found))
        position += 1


async def logged(node: ClasseProcess, log_format: str, timeout: float = 20.0, **wanted: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for record in events(node.log(), log_format):
            if wanted.items() <= record.items():
                return record
        assert time.monotonic() < deadline, f"no {wanted} in the log:\n{node.log()}"
        await asyncio.sleep(0.1)


async def join_answer(browser: Browser, code: str, name: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = await browser.ok("POST", "/api/join", {"code": code, "name": name})
    return answer


async def never_connects(peer: Peer) -> RTCPeerConnection:
    """A publishing offer without any candidate, whose answer is never applied: its ICE fails."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = "\n".join(line for line in pc.localDescription.sdp.splitlines() if not line.startswith("a=candidate"))
    await peer.send({"type": "publish", "id": 2, "sdp": sdp, "tracks": [{"mid": "0", "source": "microphone"}]})
    await peer.expect("publish_answer")
    return pc


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_lesson_leaves_one_line_per_event_and_no_personal_data(tmp_path: Path, log_format: str) -> None:
    node = ClasseProcess(tmp_path, log_format=log_format, ice_timeout_seconds=2, dev_mode=False)
    await node.create_teacher(TEACHER_EMAIL, NAMES[0])
    peers: list[Peer] = []
    pcs: list[RTCPeerConnection] = []
    teacher, leo, zoe, tom = Browser(node), Browser(node), Browser(node), Browser(node)
    try:
        await node.start()
        await teacher.sign_in(TEACHER_EMAIL, PASSWORD)
        code = code_of(await new_class(teacher, lobby=False, title="Sciences 5e"))
        grant = await join_answer(teacher, code)
        class_id = grant["class_id"]
        prof = Peer(node.url, "", NAMES[0], role="teacher")
        peers.append(prof)
        await prof.join(grant["token"])

        # Léo joins, is removed, and is refused when he comes back.
        pupil = Peer(node.url, "", NAMES[1])
        peers.append(pupil)
        await pupil.join((await join_answer(leo, code, NAMES[1]))["token"])
        await prof.send({"type": "moderate", "id": 1, "action": "remove", "participant_id": pupil.id})
        assert (await pupil.expect("error"))["code"] == "removed"
        again = Peer(node.url, "", NAMES[1])
        peers.append(again)
        assert (await again.join((await join_answer(leo, code, NAMES[1]))["token"], until="error"))["code"] == "removed"

        # The class locked: Zoé is refused; a forged token too.
        await prof.send({"type": "moderate", "id": 2, "action": "lock_class", "value": True})
        await prof.expect("class_state")
        late = Peer(node.url, "", NAMES[2])
        peers.append(late)
        assert (await late.join((await join_answer(zoe, code, NAMES[2]))["token"], until="error"))["code"] == (
            "class_locked"
        )
        forger = Peer(node.url, "", "x")
        peers.append(forger)
        assert (await forger.join("forged.token.value", until="error"))["code"] == "invalid_token"
        # A class for student accounts: a visitor without one is refused before any WebSocket.
        roster_class = await new_class(teacher, access="account", title="Sciences 5e (comptes)")
        status, refusal = await tom.call("POST", "/api/join", {"code": code_of(roster_class), "name": NAMES[3]})
        assert (status, refusal["error"]) == (401, "sign_in_required"), refusal
        await prof.send({"type": "moderate", "id": 3, "action": "lock_class", "value": False})
        await prof.expect("class_state")

        # Tom's media never connects: removed after ice_timeout_seconds.
        mute = Peer(node.url, "", NAMES[3])
        peers.append(mute)
        await mute.join((await join_answer(tom, code, NAMES[3]))["token"])
        pcs.append(await never_connects(mute))
        assert (await mute.expect("error", timeout=15))["code"] == "ice_failed"

        # The teacher ends the class; the operator drains, then stops the node.
        await prof.send({"type": "moderate", "id": 4, "action": "end"})
        await logged(node, log_format, event="class_ended")
        status, _, err = await node.command("drain")
        assert status == 0, err
        async with aiohttp.ClientSession() as http, http.get(node.metrics_url) as response:
            metrics = await response.text()
        node.signal(signal.SIGTERM)
        assert await node.exited(30) == 0, node.log()
    finally:
        for pc in pcs:
            await pc.close()
        for peer in peers:
            await peer.close()
        for browser in (teacher, leo, zoe, tom):
            await browser.http.close()
        await node.kill()

    log = node.log()
    found = events(log, log_format)
    t, s = "teacher", "student"
    in_order(
        found,
        [
            {"event": "node_started", "port": str(node.port) if log_format == "text" else node.port},
            {"event": "class_opened", "class": class_id},
            {"event": "participant_joined", "class": class_id, "participant": prof.id, "role": t},
            {"event": "participant_joined", "class": class_id, "participant": pupil.id, "role": s},
            {"event": "participant_left", "class": class_id, "participant": pupil.id, "role": s, "reason": "removed"},
            {"event": "join_refused", "class": class_id, "participant": pupil.id, "role": s, "reason": "removed"},
            {"event": "join_refused", "class": class_id, "role": s, "reason": "class_locked"},
            {"event": "join_refused", "reason": "invalid_token"},
            {"event": "join_refused", "class": roster_class["id"], "role": s, "reason": "sign_in_required"},
            {"event": "participant_joined", "class": class_id, "participant": mute.id, "role": s},
            {"event": "ice_failed", "class": class_id, "participant": mute.id, "role": s, "reason": "none"},
            {"event": "participant_left", "participant": mute.id, "reason": "ice_failed"},
            {"event": "participant_left", "participant": prof.id, "role": t, "reason": "class_ended"},
            {"event": "class_ended", "class": class_id, "reason": "teacher"},
            {"event": "node_draining"},
            {"event": "node_stopping"},
            {"event": "node_stopped"},
        ],
    )
    # One line per event: each of these happened once.
    assert [e["event"] for e in found].count("participant_joined") == 3
    assert [e["event"] for e in found].count("class_opened") == [e["event"] for e in found].count("class_ended") == 1
    refused = next(e for e in found if e["event"] == "join_refused" and e["reason"] == "invalid_token")
    assert "class" not in refused and "participant" not in refused
    assert all(e["level"] == "info" and e["node"] for e in found)

    # The metrics counted what the log says.
    assert 'classe_joins_total{result="joined"} 3.0' in metrics
    assert 'classe_joins_total{result="refused"} 3.0' in metrics
    for reason in ("removed", "class_locked", "invalid_token", "sign_in_required"):
        assert f'classe_join_refusals_total{{reason="{reason}"}} 1.0' in metrics
    assert 'classe_departures_total{reason="ice_failed"} 1.0' in metrics
    assert 'classe_classes_ended_total{reason="teacher"} 1.0' in metrics

    # No personal data anywhere in the log: names, addresses, IP addresses.
    for name in (*NAMES, "Léo", "Zoé", "Durand"):
        assert name not in log
    assert EMAIL.search(log) is None, EMAIL.search(log)
    assert IPV4.search(log) is None, IPV4.search(log)
    assert IPV6.search(log) is None, IPV6.search(log)
    assert "Traceback" not in log and " ERROR " not in log and '"level": "error"' not in log, log


def test_a_value_cannot_forge_a_line_or_a_field_and_a_traceback_stays_in_its_line() -> None:
    # A dev-mode class id is whatever a load generator sends: quoted in text, escaped in JSON.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("classe.events")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    hostile = 'dev:x\n2026-01-01 00:00:00,000 INFO classe.events class_ended class=y reason="teacher"'
    try:
        for formatter in (TextFormatter("n1"), JsonFormatter("n1")):
            handler.setFormatter(formatter)
            ClassEvents().emit(Event.CLASS_OPENED, hostile)
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("classe.events").exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    text_line, *traceback, json_opened, json_failed = stream.getvalue().splitlines()
    assert text_line.endswith(" node=n1") and "class_opened class=" + json.dumps(hostile) in text_line
    assert events(text_line, "text") == []  # quoted: not taken for a plain event line either
    assert any("ValueError: boom" in line for line in traceback)
    opened, failed = json.loads(json_opened), json.loads(json_failed)
    assert opened["class"] == hostile and opened["event"] == "class_opened" and opened["node"] == "n1"
    # A value that is plain but for a newline at its end is quoted too (a regex's `$` would pass it).
    assert text_value("dev:x\n") == json.dumps("dev:x\n") and text_value("dev:x") == "dev:x"
    assert "ValueError: boom" in failed["error"] and failed["message"] == "failed" and "event" not in failed


def test_refusals_anyone_can_cause_are_all_counted_but_their_lines_are_budgeted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = ClassEvents(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="classe.events"):
        for _ in range(REFUSAL_LINES_BURST + 40):  # a forger's burst of joins
            log.emit(Event.JOIN_REFUSED, reason="invalid_token")
        log.emit(Event.CLASS_OPENED, "c1")  # other events are never held back
        log.emit(Event.JOIN_REFUSED, "c1", "p1", "student", "removed")  # nor another reason's lines
        now[0] += 2.0  # the budget refills at one line a second
        for _ in range(5):
            log.emit(Event.JOIN_REFUSED, reason="invalid_token")
    lines = [record.getMessage() for record in caplog.records]
    assert sum(line.startswith("join_refused reason=invalid_token") for line in lines) == REFUSAL_LINES_BURST + 2
    assert sum(line.startswith(("class_opened", "join_refused class=c1")) for line in lines) == 2
    assert log.refusals == {"invalid_token": REFUSAL_LINES_BURST + 45, "removed": 1}
    assert log.unlogged == 40 + 3
