"""Attacks on a live class, performed against a real server: the class must stay usable.

A link holder flooding the lobby, a lobby setting changed after an intrusion, sockets that never
join, a teacher who leaves, hand and media toggles sent in a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from .conftest import RunningServer
from .peers import Peer
from .test_access import new_class
from .test_media_e2e import wait_for
from .web import Browser, code_of, teacher

ATTACKER = "203.0.113.7"  # the link holder's address, as the reverse proxy reports it


async def until(peer: Peer, kind: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
    """The next `kind` message that passes `check`, skipping the others."""
    deadline = time.monotonic() + timeout
    while True:
        message = await peer.expect(kind, max(0.01, deadline - time.monotonic()))
        if check(message):
            return message


async def mint(attacker: Browser, code: str, name: str, guest: str | None = None) -> tuple[str, str]:
    """A join token as a new guest (no cookie: the server gives a new one), or as the guest `guest`; and that guest."""
    jar = attacker.http.cookie_jar
    jar.clear(lambda morsel: morsel.key == "classe_guest")
    if guest is not None:
        jar.update_cookies({"classe_guest": guest}, URL(attacker.classe.url))
    token = await attacker.join_token(code, name)
    cookie = next(m.value for m in jar if m.key == "classe_guest")
    return token, cookie


async def park(
    http: aiohttp.ClientSession, url: str, token: str, address: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """One raw WebSocket that joins with `token` from `address`; its first reply (closed after a refusal)."""
    ws = await http.ws_connect(f"{url}/ws", headers={"X-Forwarded-For": address})
    await ws.send_json({"type": "join", "protocol": 1, "token": token})
    reply: dict[str, Any] = await ws.receive_json(timeout=10)
    if reply.get("fatal"):
        await ws.close()  # the server closes it: answering its close frame frees the address's share at once
    return ws, reply


def outcome(reply: dict[str, Any]) -> str:
    return str(reply.get("code") or reply.get("reason") or reply["type"])


@pytest.mark.parametrize("settings_overrides", [{"trust_forwarded_for": True}])
async def test_a_lobby_flood_from_one_link_holder_keeps_no_student_out(classe: RunningServer) -> None:
    """299 tokens minted and parked: a real student still gets in; refusing all then refilling is bounded."""
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    prof, leo = Peer(classe.url, "", "Prof"), Peer(classe.url, "", "Léo")
    async with (
        await teacher(classe) as t,
        Browser(classe) as attacker,
        Browser(classe) as pupil,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        code = code_of(await new_class(t))  # a link class, lobby on
        try:
            await prof.join(await t.join_token(code))
            minted = [await mint(attacker, code, f"Élève {i}") for i in range(299)]
            replies: list[str] = []
            for token, _ in minted:
                ws, reply = await park(http, classe.url, token, ATTACKER)
                sockets.append(ws)
                replies.append(outcome(reply))
            # One address fills at most max_lobby_per_address places; the class itself stays empty.
            assert replies == ["lobby"] * 30 + ["lobby_full"] * 269
            assert classe.server.census()[1] == 1

            # A real student (another address) waits in the lobby, and the teacher lets them in.
            assert (await leo.join(await pupil.join_token(code, "Léo"), until="waiting"))["reason"] == "lobby"
            lobby = await until(prof, "lobby", lambda m: any(w["name"] == "Léo" for w in m["waiting"]))
            leo_id = next(w["id"] for w in lobby["waiting"] if w["name"] == "Léo")
            await prof.send({"type": "moderate", "action": "admit", "participant_id": leo_id})
            await leo.admitted()

            # Refuse all: the refused cannot come straight back, and a refill from new guests is bounded.
            await prof.send({"type": "moderate", "action": "refuse", "all": True})
            for ws in sockets[:30]:
                assert outcome(await ws.receive_json(timeout=10)) == "refused"
            token, _ = await mint(attacker, code, "Élève 0", guest=minted[0][1])
            ws, reply = await park(http, classe.url, token, ATTACKER)
            sockets.append(ws)
            assert outcome(reply) == "refused"
            refill = []
            for i in range(31):
                ws, reply = await park(http, classe.url, (await mint(attacker, code, f"Bis {i}"))[0], ATTACKER)
                sockets.append(ws)
                refill.append(outcome(reply))
            assert refill == ["lobby"] * 30 + ["lobby_full"]

            # One click: refuse all and close the lobby to newcomers. Léo, let in, reconnects as before.
            await prof.send({"type": "moderate", "action": "refuse", "all": True})
            await prof.send({"type": "moderate", "action": "lock_lobby", "value": True})
            state = await until(prof, "class_state", lambda m: m["state"]["lobby_locked"])
            assert state["state"]["lobby"] is True
            ws, reply = await park(http, classe.url, (await mint(attacker, code, "Ter"))[0], "198.51.100.9")
            sockets.append(ws)
            assert outcome(reply) == "lobby_locked"
            await leo.close()
            leo = Peer(classe.url, "", "Léo")
            await leo.join(await pupil.join_token(code, "Léo"))
            assert leo.id == leo_id

            # Reopened: many addresses together still fill at most max_lobby places.
            await prof.send({"type": "moderate", "action": "lock_lobby", "value": False})
            await until(prof, "class_state", lambda m: not m["state"]["lobby_locked"])
            spread = []
            for i in range(120):
                token = (await mint(attacker, code, f"Quater {i}"))[0]
                ws, reply = await park(http, classe.url, token, f"198.51.100.{i // 30 + 10}")
                sockets.append(ws)
                spread.append(outcome(reply))
            assert spread.count("lobby") == 100 and spread.count("lobby_full") == 20
            assert classe.server.census()[1] == 2
        finally:
            for ws in sockets:
                await ws.close()
            await prof.close()
            await leo.close()


async def test_the_lobby_setting_applies_at_once_and_each_lesson_starts_afresh(classe: RunningServer) -> None:
    """A lobby turned on after an intrusion keeps newcomers out at once; admissions end with the lesson."""
    peers: list[Peer] = []

    async def come(browser: Browser, name: str, until: str = "joined") -> tuple[Peer, dict[str, Any]]:
        peer = Peer(classe.url, "", name)
        peers.append(peer)
        return peer, await peer.join(await browser.join_token(code, name), until=until)

    async with (
        await teacher(classe) as t,
        Browser(classe) as ana_browser,
        Browser(classe) as bob_browser,
        Browser(classe) as eve_browser,
    ):
        classroom = await new_class(t)  # lobby on
        code = code_of(classroom)
        path = f"/api/classes/{classroom['id']}"
        try:
            prof, joined = await come(t, "Prof")
            assert joined["state"]["lobby"] is True and joined["state"]["locks"]["screen"] is True
            ana, _ = await come(ana_browser, "Ana", until="waiting")
            lobby = await until(prof, "lobby", lambda m: bool(m["waiting"]))
            await prof.send({"type": "moderate", "action": "admit", "participant_id": lobby["waiting"][0]["id"]})
            await ana.admitted()
            await prof.send({"type": "moderate", "action": "lock", "locks": {"screen": False}})

            # The dashboard turns the lobby off during the lesson: at once, newcomers walk in.
            await t.ok("PUT", path, {"title": "Maths 4e B", "lobby": False})
            assert (await until(ana, "class_state", lambda m: not m["state"]["lobby"]))["state"]["lobby"] is False
            bob, _ = await come(bob_browser, "Bob")
            # Turned on again (an intruder came in): the next newcomer waits, Bob, let in, reconnects as before.
            await t.ok("PUT", path, {"title": "Maths 4e B", "lobby": True})
            await until(ana, "class_state", lambda m: m["state"]["lobby"])
            _, waiting = await come(eve_browser, "Eve", until="waiting")
            assert waiting["reason"] == "lobby"
            await bob.close()
            await come(bob_browser, "Bob")
            # Even the class locked lets someone let in during this lesson come back.
            await prof.send({"type": "moderate", "action": "lock_class", "value": True})
            await until(prof, "class_state", lambda m: m["state"]["locked"])
            await peers[-1].close()
            await come(bob_browser, "Bob")

            # Everyone leaves: the lesson ends. The next one takes the class's settings afresh.
            for peer in peers:
                await peer.close()
            await wait_for(lambda: not classe.server.rooms, 10)
            peers.clear()
            prof, joined = await come(t, "Prof")
            assert joined["state"]["locked"] is False and joined["state"]["locks"]["screen"] is True
            _, waiting = await come(ana_browser, "Ana", until="waiting")  # admitted last lesson only
            assert waiting["reason"] == "lobby"
            _, waiting = await come(bob_browser, "Bob", until="waiting")
            assert waiting["reason"] == "lobby"
        finally:
            for peer in peers:
                await peer.close()


@pytest.mark.parametrize("settings_overrides", [{"teacher_absence_seconds": 2}])
async def test_students_are_told_when_the_teacher_leaves_and_the_lesson_ends_without_one(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, Browser(classe) as guest:
        code = code_of(await new_class(t, lobby=False))
        prof, students = Peer(classe.url, "", "Prof"), [Peer(classe.url, "", n) for n in ("Léo", "Inès")]
        peers = [prof, *students]
        try:
            await prof.join(await t.join_token(code))
            for s in students:
                await s.join(await guest.join_token(code, s.name))
            # A teacher's reload is not a departure.
            again = Peer(classe.url, "", "Prof")
            peers.append(again)
            await again.join(await t.join_token(code))
            await prof.close()
            # Leaving is.
            await again.close()
            for s in students:
                assert (await s.expect("teacher_away"))["ends_in"] == 2
            assert [sum(e["type"] == "teacher_away" for e in s.events) for s in students] == [1, 1]  # not the reload
            back = Peer(classe.url, "", "Prof")
            peers.append(back)
            joined = await back.join(await t.join_token(code))
            assert joined["state"]["teacher_away_ends_in"] is None
            for s in students:
                await s.expect("teacher_back")
            await back.close()
            away = await students[0].expect("teacher_away")
            started = time.monotonic()
            late = Peer(classe.url, "", "Tard")
            peers.append(late)
            assert (await late.join(await guest.join_token(code, "Tard")))["state"]["teacher_away_ends_in"] in (1, 2)
            for s in (*students, late):
                ended = await s.expect("error", timeout=away["ends_in"] + 5)
                assert (ended["code"], ended["fatal"]) == ("no_teacher", True)
            assert 1.5 < time.monotonic() - started < 4
            await wait_for(lambda: classe.server.census() == (0, 0, 0), 5)
        finally:
            for p in peers:
                await p.close()


@pytest.mark.parametrize("settings_overrides", [{"join_timeout_seconds": 1.0, "max_connections_per_address": 20}])
async def test_sockets_that_never_join_are_closed_and_bounded_per_address(classe: RunningServer) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        member = Peer(classe.url, "c", "Ana")
        idle = []
        try:
            await member.join()
            for _ in range(19):  # with Ana's, 20 from this address
                idle.append(await http.ws_connect(f"{classe.url}/ws"))
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{classe.url}/ws")
            assert refused.value.status == 429
            async with http.get(f"{classe.url}/ws") as response:
                assert response.status == 429
                assert (await response.json())["error"] == "too_many_connections"
            for ws in idle:  # closed after the deadline, with the reason
                message = await ws.receive_json(timeout=5)
                assert (message["code"], message["fatal"]) == ("join_timeout", True)
                assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await wait_for(lambda: sum(classe.server.sockets.values()) == 1, 5)
            # Ana, who joined in time, is still there; a new socket is accepted again.
            await member.send({"type": "ping", "id": "p"})
            assert (await member.expect("pong"))["ref"] == "p"
            idle.append(await http.ws_connect(f"{classe.url}/ws"))
        finally:
            for ws in idle:
                await ws.close()
            await member.close()


async def test_hand_and_media_toggles_in_a_loop_reach_the_class_a_bounded_number_of_times(
    classe: RunningServer,
) -> None:
    spammer, watcher = Peer(classe.url, "c", "Spam"), Peer(classe.url, "c", "Ana")
    try:
        await spammer.join()
        await watcher.join()
        for i in range(200):
            await spammer.send({"type": "hand", "raised": i % 2 == 0})
            await spammer.send({"type": "media", "source": "microphone", "enabled": i % 2 == 1})
        await spammer.send({"type": "ping", "id": "end"})
        await wait_for(lambda: any(e["type"] == "pong" for e in spammer.events), 10)
        await asyncio.sleep(0.3)
        updates = [e for e in watcher.events if e["type"] == "participant_updated"]
        limited = [e for e in spammer.events if e.get("code") == "rate_limited"]
        assert len(updates) <= 12 and len(limited) >= 380
        assert classe.server.census()[1] == 2
    finally:
        await spammer.close()
        await watcher.close()


async def test_publish_and_unpublish_in_a_loop_are_bounded_per_participant(classe: RunningServer) -> None:
    """Each (un)publish would make the server negotiate with every other participant: a budget bounds them."""
    spammer, watcher = Peer(classe.url, "c", "Spam"), Peer(classe.url, "c", "Ana")
    try:
        await spammer.join()
        await watcher.join()
        for i in range(40):
            await spammer.send({"type": "unpublish", "id": i, "mid": "0"})
        await spammer.send({"type": "ping", "id": "end"})
        await wait_for(lambda: any(e["type"] == "pong" for e in spammer.events), 10)
        codes = [e.get("code") for e in spammer.events if e["type"] == "error"]
        assert codes.count("unknown_track") <= 6 and codes.count("rate_limited") >= 34
        await spammer.send({"type": "publish", "id": "p", "sdp": "v=0", "tracks": []})
        await wait_for(lambda: any(e.get("ref") == "p" for e in spammer.events), 10)
        assert next(e for e in spammer.events if e.get("ref") == "p")["code"] == "rate_limited"
    finally:
        await spammer.close()
        await watcher.close()
