"""Limits that stop abuse without stopping the people they protect: passwords, links, server failures, logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from signaling.store import RosterEntry

from .conftest import Postgres, RunningServer, free_port
from .test_access import new_class
from .web import PASSWORD, Browser, code_of, teacher

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def test_guessing_a_password_does_not_lock_the_owner_out(classe: RunningServer) -> None:
    async with await teacher(classe) as owner:  # signed in from this browser once: it is known now
        await owner.ok("POST", "/api/logout")
        async with Browser(classe) as attacker:
            wrong = {"email": "prof@ac-lyon.fr", "password": "guess" * 3}
            statuses = [(await attacker.call("POST", "/api/login", wrong))[0] for _ in range(40)]
            assert statuses[:10] == [401] * 10 and statuses[-1] == 429 and set(statuses) == {401, 429}
            right = {"email": "prof@ac-lyon.fr", "password": PASSWORD}
            assert (await attacker.call("POST", "/api/login", right))[0] == 429  # no oracle for the attacker
        # The owner's usual browser, behind the attacker's own address (one school, one NAT address).
        await owner.sign_in("prof@ac-lyon.fr", PASSWORD)
        # And the owner from a new browser on another address.
        async with Browser(classe, source="127.0.0.2") as elsewhere:
            await elsewhere.sign_in("prof@ac-lyon.fr", PASSWORD)
        # A stolen session cannot guess the password to delete the account.
        statuses = [(await owner.call("DELETE", "/api/account", {"password": "guess" * 3}))[0] for _ in range(12)]
        assert statuses[:10] == [403] * 10 and statuses[10:] == [429, 429]
        # A new browser behind the attacker's address waits; the mailed reset link lets it in.
        async with Browser(classe) as new_browser:
            right = {"email": "prof@ac-lyon.fr", "password": PASSWORD}
            assert (await new_browser.call("POST", "/api/login", right))[0] == 429
            await new_browser.ok("POST", "/api/password/forgot", {"email": "prof@ac-lyon.fr"})
            secret = await classe.mailbox.link("prof@ac-lyon.fr")
            await new_browser.ok("POST", "/api/password/reset", {"token": secret, "password": "a new passphrase"})
            await new_browser.sign_in("prof@ac-lyon.fr", "a new passphrase")


async def test_unknown_links_never_stop_valid_ones_and_class_and_mail_links_count_apart(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, Browser(classe) as school:
        classroom = await new_class(t)
        statuses = [(await school.call("GET", f"/api/join/unknown{i:03d}xxxxxxxxxxxxxxxx"))[0] for i in range(22)]
        assert statuses == [404] * 20 + [429] * 2
        assert (await school.call("GET", f"/api/join/{code_of(classroom)}"))[0] == 200
        for i in range(30):
            await school.ok("POST", "/api/join", {"code": code_of(classroom), "name": f"Élève {i}"})
        # Failed mail links have their own counter, and valid mail links are never refused either.
        bogus = {"token": "x" * 43}
        statuses = [(await school.call("POST", "/api/verify", bogus))[0] for _ in range(22)]
        assert statuses == [400] * 20 + [429] * 2
        form = {"email": "autre@ac-lyon.fr", "name": "M. Autre", "password": PASSWORD}
        assert (await school.call("POST", "/api/signup", form))[0] == 202
        await school.ok("POST", "/api/verify", {"token": await classe.mailbox.link("autre@ac-lyon.fr")})


@on_postgresql
async def test_a_database_outage_is_not_charged_to_the_clients(classe: RunningServer, postgres: Postgres) -> None:
    async with await teacher(classe) as t, Browser(classe) as school:
        classroom = await new_class(t)
        await school.call("GET", "/api/session")  # the CSRF token, before the outage
        postgres.stop()
        try:
            for i in range(30):
                status, data = await school.call("POST", "/api/join", {"code": code_of(classroom), "name": f"E{i}"})
                assert (status, data["error"]) == (500, "internal_error")
            for _ in range(25):
                status, data = await school.call("POST", "/api/verify", {"token": "x" * 43})
                assert (status, data["error"]) == (500, "internal_error")
        finally:
            postgres.start()
        for i in range(30):  # at once: no budget was spent on the server's failures
            await school.ok("POST", "/api/join", {"code": code_of(classroom), "name": f"E{i}"})
        status, data = await school.call("POST", "/api/verify", {"token": "x" * 43})
        assert (status, data["error"]) == (400, "invalid_link")


@on_postgresql
async def test_a_database_error_logs_neither_the_values_nor_the_client_address(
    classe: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with await teacher(classe) as t, Browser(classe) as b:
        await b.call("GET", "/api/session")
        async with classe.services.db.transaction() as tx:
            await tx.execute(text("ALTER TABLE login_sessions RENAME TO gone"))
        caplog.clear()
        caplog.set_level(logging.DEBUG)
        status, data = await b.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": PASSWORD})
        assert (status, data["error"]) == (500, "internal_error") and data["message"]
        account = await classe.services.accounts.authenticate("prof@ac-lyon.fr", PASSWORD)
        assert "unhandled error on POST /api/login" in caplog.text and "ProgrammingError" in caplog.text
        for secret in ("prof@ac-lyon.fr", account.id, account.password_hash, "127.0.0.1", "login_sessions"):
            assert secret not in caplog.text
        assert (await t.call("GET", "/api/classes"))[0] == 500
        # What the middleware cannot answer (a WebSocket already open), aiohttp logs: without them too.
        peer, value = ".".join(("203", "0", "113", "9")), "@".join(("eleve", "example.org"))
        try:
            raise ValueError(value)
        except ValueError:
            logging.getLogger("aiohttp.server").exception("Error handling request from %s", peer)
        assert "Error handling request: ValueError" in caplog.text
        assert peer not in caplog.text and value not in caplog.text


@pytest.mark.parametrize(
    "settings_overrides", [{"invitations_per_day": 5, "institution_name": "Collège Jean Moulin, Lyon"}]
)
async def test_a_roster_is_not_a_mail_relay(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        spam = "GAGNEZ 1000 EUR sur http://evil.example\r\nBcc: everyone@example.org"
        classroom = await new_class(t, "account", title=spam)
        assert classroom["title"] == "GAGNEZ 1000 EUR sur http://evil.example Bcc: everyone@example.org"
        roster = f"/api/classes/{classroom['id']}/roster"
        first = [f"victime{i}@example.org" for i in range(5)]
        reply = await t.ok("PUT", roster, {"emails": first})
        assert reply["invitations_unsent"] == 0 and all(e["invited_at"] for e in reply["roster"])
        for address in first:
            mail = await classe.mailbox.wait_for(address)
            assert str(mail["Subject"]) == "Classe : invitation à une classe virtuelle / invitation to a virtual class"
            assert "Mme Durand (prof@ac-lyon.fr), Collège Jean Moulin, Lyon vous invite" in mail.get_content()
        # The daily limit is the teacher's, whatever the class.
        other = await new_class(t, "account", title="Autre")
        for path in (roster, f"/api/classes/{other['id']}/roster"):
            status, data = await t.call("PUT", path, {"emails": [f"autre{i}@example.org" for i in range(5)]})
            assert (status, data["error"], data["invitations_left"]) == (429, "too_many_invitations", 0)
        assert [e["email"] for e in (await t.ok("GET", roster))["roster"]] == first  # nothing changed
        # Removing addresses costs nothing; bad addresses are named.
        await t.ok("PUT", roster, {"emails": first[:2]})
        status, data = await t.call("PUT", roster, {"emails": ["a@example.org", " pas une adresse "]})
        assert (status, data["error"], data["address"]) == (400, "invalid_address", "pas une adresse")
        assert "pas une adresse" in data["message"]
    await asyncio.sleep(0.2)
    assert classe.mailbox.messages == []


async def test_a_default_server_refuses_a_thousand_invitations(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        classroom = await new_class(t, "account")
        emails = [f"victime{i}@example.org" for i in range(500)]
        status, data = await t.call("PUT", f"/api/classes/{classroom['id']}/roster", {"emails": emails})
        assert (status, data["error"]) == (429, "too_many_invitations")
    assert classe.mailbox.messages == []


async def test_an_invitation_dies_with_its_roster_entry_and_pending_ones_are_sent_later(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, Browser(classe) as family:
        classroom = await new_class(t, "account")
        roster = f"/api/classes/{classroom['id']}/roster"
        await t.ok("PUT", roster, {"emails": ["famille@example.org"]})
        secret = await classe.mailbox.link("famille@example.org")
        await t.ok("PUT", roster, {"emails": []})
        form = {"token": secret, "name": "Famille", "password": PASSWORD}
        status, data = await family.call("POST", "/api/invitation", form)
        assert (status, data["error"]) == (400, "invalid_link")

        # A save cut short (the process killed between writing the roster and mailing it) leaves the
        # entries pending; the next save sends them.
        async with classe.services.db.transaction() as tx:
            tx.add(RosterEntry(class_id=classroom["id"], email="oublie@example.org", invited_at=None))
        reply = await t.ok("PUT", roster, {"emails": ["oublie@example.org", "nouveau@example.org"]})
        assert reply["invitations_unsent"] == 0 and all(e["invited_at"] for e in reply["roster"])
        secret = await classe.mailbox.link("oublie@example.org")
        await family.ok("POST", "/api/invitation", {"token": secret, "name": "Oublié", "password": PASSWORD})
        await classe.mailbox.wait_for("nouveau@example.org")


async def test_only_the_owner_changes_co_teachers_and_refusals_name_no_account(classe: RunningServer) -> None:
    async with await teacher(classe) as t, await teacher(classe, "autre@ac-lyon.fr", "M. Autre") as co:
        classroom = await new_class(t, co_teachers=["autre@ac-lyon.fr"])
        path = f"/api/classes/{classroom['id']}"
        form = {"title": "Maths 4e B", "access": "link"}
        status, data = await co.call("PUT", path, {**form, "co_teachers": []})
        assert (status, data["error"]) == (403, "owner_only")
        status, data = await co.call("PUT", path, {**form, "co_teachers": ["autre@ac-lyon.fr", "x@ac-lyon.fr"]})
        assert (status, data["error"]) == (403, "owner_only")
        assert (await t.ok("GET", path))["co_teachers"] == ["autre@ac-lyon.fr"]
        renamed = await co.ok("PUT", path, {**form, "title": "Maths 4e C", "co_teachers": ["autre@ac-lyon.fr"]})
        assert renamed["title"] == "Maths 4e C" and renamed["owner"] is False
        status, data = await t.call("PUT", path, {**form, "co_teachers": ["autre@ac-lyon.fr", "inconnu@ac-lyon.fr"]})
        assert (status, data["error"]) == (400, "unknown_co_teacher") and "inconnu" not in data["message"]
        # Asking address after address would tell who has an account: that is limited.
        probes = [{"title": "x", "co_teachers": [f"essai{i}@ac-lyon.fr"]} for i in range(10)]
        statuses = [(await t.call("POST", "/api/classes", probe))[0] for probe in probes]
        assert statuses == [400] * 9 + [429]
        assert (await t.call("POST", "/api/classes", {"title": "Sans co-enseignant"}))[0] == 201


async def test_names_lose_bidi_and_control_characters(classe: RunningServer) -> None:
    async with await teacher(classe, name="\u202eM. Faux\u202c\x07") as t, Browser(classe) as pupil:
        assert (await t.ok("GET", "/api/session"))["account"]["name"] == "M. Faux"
        classroom = await new_class(t)
        hostile = "\u2067Prof\u2069\u202e\n tnaH"
        data = await pupil.ok("POST", "/api/join", {"code": code_of(classroom), "name": hostile})
        assert data["name"] == "Prof tnaH"
        status, data = await pupil.call("POST", "/api/join", {"code": code_of(classroom), "name": "\u202e\u2066 \r"})
        assert (status, data["error"]) == (400, "name_required")


async def test_a_password_reset_answers_before_the_work(classe: RunningServer) -> None:
    """Same answer, same time, whether or not the address has an account: the mail goes out after."""
    mailer = classe.services.accounts.mailer

    class SlowMailer:
        async def send(self, message: EmailMessage) -> None:
            await asyncio.sleep(1.0)
            await mailer.send(message)

    async with await teacher(classe) as t:
        classe.services.accounts.mailer = SlowMailer()
        for email in ("prof@ac-lyon.fr", "personne@ac-lyon.fr"):
            started = time.monotonic()
            status, _ = await t.call("POST", "/api/password/forgot", {"email": email})
            assert status == 202 and time.monotonic() - started < 0.5, email
        await classe.mailbox.link("prof@ac-lyon.fr")


async def test_a_roster_save_killed_midway_is_finished_by_the_next_save(classe: RunningServer, tmp_path: Path) -> None:
    """SIGKILL while the invitations go out: the next save, by another process, sends them."""
    connected = asyncio.Event()

    async def silent_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # never greets: the first invitation hangs
        await reader.read()
        writer.close()

    smtp = await asyncio.start_server(silent_smtp, "127.0.0.1", 0)
    port = free_port()
    config = tmp_path / "killed.toml"
    config.write_text(
        f'port = {port}\ndata_dir = "{tmp_path / "killed"}"\ndatabase_url = "{classe.settings.database}"\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.sockets[0].getsockname()[1]}\nsmtp_starttls = false\n'
        "media_port_min = 44000\nmedia_port_max = 44099\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling.cli",
        "serve",
        "--config",
        str(config),
        cwd=Path(__file__).resolve().parent.parent,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with await teacher(classe) as t:
            classroom = await new_class(t, "account")
            roster = f"/api/classes/{classroom['id']}/roster"
            other = f"http://127.0.0.1:{port}"
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with t.http.get(other + "/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
            emails = ["eleve1@example.org", "eleve2@example.org"]
            save = asyncio.create_task(
                t.http.put(other + roster, json={"emails": emails}, headers={"X-CSRF-Token": t.csrf})
            )
            await asyncio.wait_for(connected.wait(), 20)
            process.kill()
            await process.wait()
            with pytest.raises(aiohttp.ClientError):
                await save
            reply = await t.ok("PUT", roster, {"emails": emails})
            assert reply["invitations_unsent"] == 0
            for email in emails:
                await classe.mailbox.wait_for(email)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        smtp.close()
