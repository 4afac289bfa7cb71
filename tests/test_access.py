"""Who gets into a class: link or account mode, the teacher first, the lobby, removal for good."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import RunningServer, both_databases
from .peers import Peer
from .test_media_e2e import wait_for
from .web import PASSWORD, Browser, code_of, teacher


async def new_class(t: Browser, access: str = "link", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = await t.ok("POST", "/api/classes", {"title": "Maths 4e B", "access": access, **fields})
    return data


async def student_account(classe: RunningServer, email: str, name: str) -> Browser:
    """A student (or parent) account created from the roster invitation mail."""
    browser = Browser(classe)
    secret = await classe.mailbox.link(email)
    await browser.ok("POST", "/api/invitation", {"token": secret, "name": name, "password": PASSWORD})
    return browser


@both_databases
async def test_account_mode_lets_in_only_signed_in_roster_accounts(classe: RunningServer) -> None:
    peers: list[Peer] = []
    async with await teacher(classe) as t, Browser(classe) as anonymous:
        classroom = await new_class(t, "account")
        assert classroom["lobby"] is False  # the roster is the gate; the lobby stays available
        code = code_of(classroom)
        await t.ok("PUT", f"/api/classes/{classroom['id']}/roster", {"emails": ["parent@example.org"]})
        invitation = await classe.mailbox.wait_for("parent@example.org")
        assert "Maths 4e B" not in str(invitation["Subject"])  # what a teacher types stays out of the subject
        assert "Mme Durand (prof@ac-lyon.fr)" in invitation.get_content() and "Maths 4e B" in invitation.get_content()
        classe.mailbox.messages.append(invitation)
        async with (
            await student_account(classe, "parent@example.org", "Famille Martin") as parent,
            await student_account_outside(classe) as outsider,
        ):
            status, data = await anonymous.call("POST", "/api/join", {"code": code, "name": "Intrus"})
            assert (status, data["error"]) == (401, "sign_in_required")
            status, data = await outsider.call("POST", "/api/join", {"code": code, "name": "Intrus"})
            assert (status, data["error"]) == (403, "not_on_roster")

            prof = Peer(classe.url, "", "Prof")
            peers.append(prof)
            await prof.join(await t.join_token(code))
            # One address may stand for several children: each child is a participant of its own.
            for child in ("Léa", "Hugo"):
                peer = Peer(classe.url, "", child)
                peers.append(peer)
                joined = await peer.join(await parent.join_token(code, child))
                assert joined["participant"]["name"] == child and joined["participant"]["role"] == "student"
            assert peers[1].id != peers[2].id
    for peer in peers:
        await peer.close()


async def student_account_outside(classe: RunningServer) -> Browser:
    """A real student account, invited to another class only."""
    async with await teacher(classe, "autre@ac-lyon.fr", "M. Autre") as other:
        elsewhere = await new_class(other, "account")
        await other.ok("PUT", f"/api/classes/{elsewhere['id']}/roster", {"emails": ["eleve@example.org"]})
    return await student_account(classe, "eleve@example.org", "Élève d'une autre classe")


async def test_link_mode_students_wait_for_the_teacher_then_in_the_lobby(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as guest, Browser(classe) as stranger:
        classroom = await new_class(t)
        assert classroom["lobby"] is True
        code = code_of(classroom)
        info = await guest.ok("GET", f"/api/join/{code}")
        assert info == {"title": "Maths 4e B", "access": "link", "lobby": True}
        status, data = await guest.call("POST", "/api/join", {"code": code})
        assert (status, data["error"]) == (400, "name_required")

        student = Peer(classe.url, "", "Léo")
        intruder = Peer(classe.url, "", "Intrus")
        prof = Peer(classe.url, "", "Prof")
        try:
            waiting = await student.join(await guest.join_token(code, "Léo"), until="waiting")
            assert waiting["reason"] == "not_started"
            await intruder.join(await stranger.join_token(code, "Intrus"), until="waiting")
            joined = await prof.join(await t.join_token(code))
            assert joined["participants"] == []  # nobody got in before the teacher
            assert (await student.expect("waiting"))["reason"] == "lobby"
            lobby = await prof.expect("lobby")
            while len(lobby["waiting"]) < 2:
                lobby = await prof.expect("lobby")
            names = {w["name"]: w["id"] for w in lobby["waiting"]}
            assert set(names) == {"Léo", "Intrus"}

            await prof.send({"type": "moderate", "action": "refuse", "participant_id": names["Intrus"]})
            refusal = await intruder.expect("error")
            assert refusal["code"] == "refused" and refusal["fatal"] is True
            await prof.send({"type": "moderate", "action": "admit", "participant_id": names["Léo"]})
            joined = await student.admitted()
            assert [p["name"] for p in joined["participants"]] == ["Mme Durand"]
            await wait_for(lambda: classe.server.census()[1] == 2)

            # Sent back to the lobby, then admitted again.
            await prof.send({"type": "moderate", "action": "to_lobby", "participant_id": student.id})
            assert (await student.expect("waiting"))["reason"] == "lobby"
            await wait_for(lambda: classe.server.census()[1] == 1)
            await prof.send({"type": "moderate", "action": "admit", "all": True})
            await student.admitted()
        finally:
            for p in (student, intruder, prof):
                await p.close()


async def test_a_removed_participant_cannot_come_back_during_the_class(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as guest:
        classroom = await new_class(t, lobby=False)
        code = code_of(classroom)
        prof = Peer(classe.url, "", "Prof")
        peers = [prof]
        try:
            await prof.join(await t.join_token(code))
            token = await guest.join_token(code, "Perturbateur")
            student = Peer(classe.url, "", "Perturbateur")
            peers.append(student)
            await student.join(token)
            await prof.send({"type": "moderate", "action": "remove", "participant_id": student.id})
            assert (await student.expect("error"))["code"] == "removed"
            await wait_for(lambda: classe.server.census()[1] == 1)

            # The same token, a new token under another name, a regenerated link: all refused.
            regenerated = await t.ok("POST", f"/api/classes/{classroom['id']}/link")
            assert code_of(regenerated) != code
            status, _ = await guest.call("POST", "/api/join", {"code": code, "name": "x"})
            assert status == 404  # the old link is revoked
            for attempt in (
                token,
                await guest.join_token(code_of(regenerated), "Un autre nom"),
            ):
                again = Peer(classe.url, "", "again")
                peers.append(again)
                reply = await again.join(attempt, until="error")
                assert reply["code"] == "removed" and reply["fatal"] is True
            assert classe.server.census()[1] == 1
        finally:
            for p in peers:
                await p.close()


async def test_guessing_class_links_is_rate_limited(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as guesser:
        classroom = await new_class(t)
        statuses = [
            (await guesser.call("GET", f"/api/join/guess{i:04d}xxxxxxxxxxxxxxxxxxxxxxxx"))[0] for i in range(22)
        ]
        assert statuses[:20] == [404] * 20 and statuses[20:] == [429, 429]
        # Valid links are never refused: a whole school behind the guesser's address still gets in.
        async with Browser(classe) as school:
            for i in range(40):
                status, _ = await school.call("POST", "/api/join", {"code": code_of(classroom), "name": f"E{i}"})
                assert status == 200


async def test_teacher_only_pages_and_other_teachers_classes(classe: RunningServer) -> None:
    async with await teacher(classe) as t, await teacher(classe, "autre@ac-lyon.fr", "M. Autre") as other:
        classroom = await new_class(t, co_teachers=["autre@ac-lyon.fr"])
        assert classroom["co_teachers"] == ["autre@ac-lyon.fr"]
        listed = await other.ok("GET", "/api/classes")
        assert [c["id"] for c in listed["classes"]] == [classroom["id"]]
        token_data = await other.ok("POST", "/api/join", {"code": code_of(classroom)})
        assert token_data["role"] == "teacher"
        status, data = await other.call("DELETE", f"/api/classes/{classroom['id']}")
        assert (status, data["error"]) == (403, "owner_only")
        mine = await new_class(other, title="Histoire")
        status, _ = await t.call("GET", f"/api/classes/{mine['id']}")
        assert status == 404
        status, data = await t.call("POST", "/api/classes", {"title": "x", "co_teachers": ["inconnu@ac-lyon.fr"]})
        assert (status, data["error"]) == (400, "unknown_co_teacher")
    async with Browser(classe) as anonymous:
        status, data = await anonymous.call("GET", "/api/classes")
        assert (status, data["error"]) == (401, "not_signed_in")


@pytest.mark.parametrize("settings_overrides", [{"class_link_days": 0}])
async def test_expired_class_links_are_refused(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        classroom = await new_class(t)
        status, data = await t.call("GET", f"/api/join/{code_of(classroom)}")
        assert (status, data["error"]) == (404, "unknown_link")


async def test_a_mail_server_that_is_down_fails_no_request(classe: RunningServer) -> None:
    from .conftest import free_port

    async with await teacher(classe) as t:
        classroom = await new_class(t, "account")
        port, classe.settings.smtp_port = classe.settings.smtp_port, free_port()  # nothing listens there
        roster, emails = f"/api/classes/{classroom['id']}/roster", ["a@example.org", "b@example.org"]
        reply = await t.ok("PUT", roster, {"emails": emails})
        assert reply["roster"][0]["email"] == "a@example.org" and reply["invitations_unsent"] == 2
        assert [e["invited_at"] for e in reply["roster"]] == [None, None]  # pending
        status, _ = await t.call("POST", "/api/password/forgot", {"email": "prof@ac-lyon.fr"})
        assert status == 202
        classe.settings.smtp_port = port  # the mail server is back: the next save sends what is pending
        assert (await t.ok("PUT", roster, {"emails": emails}))["invitations_unsent"] == 0
        for email in emails:
            await classe.mailbox.wait_for(email)
