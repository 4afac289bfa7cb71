"""Teacher accounts: academic addresses only, verified by mail, argon2, sessions, CSRF, reset, GDPR rights."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from signaling import accounts as accounts_module
from signaling.accounts import Accounts, domain_allowed
from signaling.cli import main
from signaling.config import Settings
from signaling.mail import OutboxMailer, verification
from signaling.store import Account, Classroom, Database, LoginSession

from .conftest import RunningServer, both_databases
from .web import PASSWORD, Browser, code_of, teacher


async def test_only_academic_addresses_may_sign_up_as_teachers(classe: RunningServer) -> None:
    async with Browser(classe) as b:
        hostile = ("prof@ac-hacker.fr", "prof@ac-x.evil-example.fr", "prof@sub.ac-lyon.fr", "prof@ac-lyon.fr.evil.com")
        for email in ("prof@gmail.com", "prof@lyon.fr", *hostile):
            status, data = await b.call("POST", "/api/signup", {"email": email, "name": "X", "password": PASSWORD})
            assert (status, data["error"]) == (403, "domain_not_allowed"), email
        status, data = await b.call("POST", "/api/signup", {"email": "a@ac-lyon.fr", "name": "X", "password": "short"})
        assert (status, data["error"]) == (400, "weak_password")
    assert classe.mailbox.messages == []
    async with db_session(classe) as tx:
        assert await tx.scalar(select(func.count()).select_from(Account)) == 0


async def test_every_academy_and_the_ministry_are_allowed_and_sub_domains_only_where_listed(
    classe: RunningServer,
) -> None:
    async with Browser(classe) as b:
        for email in ("prof@ac-versailles.fr", "prof@ac-noumea.nc", "agent@education.gouv.fr"):
            status, _ = await b.call("POST", "/api/signup", {"email": email, "name": "X", "password": PASSWORD})
            assert status == 202, email
    assert domain_allowed("a@lycee.ac-lyon.fr", ["*.ac-lyon.fr"])
    assert not domain_allowed("a@ac-lyon.fr", ["*.ac-lyon.fr"])
    assert not domain_allowed("a@evilac-lyon.fr", ["*.ac-lyon.fr"])
    with pytest.raises(ValidationError):
        Settings(teacher_domains=["ac-*.fr"])


def db_session(classe: RunningServer):  # type: ignore[no-untyped-def]
    return classe.services.db.sessions()


@both_databases
async def test_sign_up_verify_sign_in_sign_out(classe: RunningServer) -> None:
    async with Browser(classe) as b:
        form = {"email": "Prof@AC-Lyon.fr", "name": "Mme Durand", "password": PASSWORD}
        assert (await b.call("POST", "/api/signup", form))[0] == 202
        status, data = await b.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": PASSWORD})
        assert (status, data["error"]) == (403, "email_not_verified")
        secret = await classe.mailbox.link("prof@ac-lyon.fr")
        await b.ok("POST", "/api/verify", {"token": secret})
        status, data = await b.call("POST", "/api/verify", {"token": secret})
        assert (status, data["error"]) == (400, "invalid_link")  # one use only

        async with b.http.post(
            classe.url + "/api/login",
            json={"email": "prof@ac-lyon.fr", "password": PASSWORD},
            headers={"X-CSRF-Token": b.csrf},
        ) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        session = await b.ok("GET", "/api/session")
        assert session["account"]["email"] == "prof@ac-lyon.fr" and session["account"]["role"] == "teacher"

        account = await classe.services.accounts.authenticate("prof@ac-lyon.fr", PASSWORD)
        assert account.password_hash.startswith("$argon2id$")
        await b.ok("POST", "/api/logout")
        assert (await b.ok("GET", "/api/session"))["account"] is None
    async with db_session(classe) as tx:
        assert await tx.scalar(select(func.count()).select_from(LoginSession)) == 0


async def test_signing_up_twice_reveals_nothing_and_mails_the_owner(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        status, data = await t.call(
            "POST", "/api/signup", {"email": "prof@ac-lyon.fr", "name": "Intrus", "password": "another password!"}
        )
        assert (status, data) == (202, {"status": "verification_sent"})
        mail = await classe.mailbox.wait_for("prof@ac-lyon.fr")
        assert "déjà un compte" in str(mail["Subject"])
        await t.sign_in("prof@ac-lyon.fr", PASSWORD)  # the password did not change


async def test_every_change_needs_the_csrf_token_and_our_origin(classe: RunningServer) -> None:
    async with await teacher(classe) as t:
        new_class = {"title": "4e B", "access": "link"}
        status, data = await t.call("POST", "/api/classes", new_class, headers={"X-CSRF-Token": ""})
        assert (status, data["error"]) == (403, "csrf")
        status, data = await t.call("POST", "/api/classes", new_class, headers={"Origin": "https://evil.example"})
        assert (status, data["error"]) == (403, "csrf")
        assert (await t.ok("GET", "/api/classes"))["classes"] == []
        status, _ = await t.call("POST", "/api/classes", new_class, headers={"Origin": classe.url})
        assert status == 201


async def test_wrong_passwords_are_rate_limited(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as attacker:
        statuses = []
        for _ in range(12):
            status, _ = await attacker.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": "guess" * 3})
            statuses.append(status)
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        # Even the right password waits now: the attacker cannot tell when they found it.
        status, _ = await attacker.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": PASSWORD})
        assert status == 429
        assert (await t.ok("GET", "/api/session"))["account"] is not None  # a session already open is untouched


async def test_password_reset_by_mail_ends_the_other_sessions(classe: RunningServer) -> None:
    async with await teacher(classe) as t, Browser(classe) as b:
        assert (await b.call("POST", "/api/password/forgot", {"email": "nobody@ac-lyon.fr"}))[0] == 202
        assert (await b.call("POST", "/api/password/forgot", {"email": "prof@ac-lyon.fr"}))[0] == 202
        secret = await classe.mailbox.link("prof@ac-lyon.fr")
        assert classe.mailbox.messages == []  # nothing was sent to the unknown address
        status, data = await b.call("POST", "/api/password/reset", {"token": secret, "password": "x"})
        assert (status, data["error"]) == (400, "weak_password")
        await b.ok("POST", "/api/password/reset", {"token": secret, "password": "a brand new passphrase"})
        assert (await t.ok("GET", "/api/session"))["account"] is None
        status, _ = await b.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": PASSWORD})
        assert status == 401
        await b.sign_in("prof@ac-lyon.fr", "a brand new passphrase")


@both_databases
async def test_a_user_downloads_their_data_and_deletes_their_account(classe: RunningServer) -> None:
    async with await teacher(classe) as t, await teacher(classe, "autre@ac-lyon.fr", "M. Autre") as other:
        classroom = await t.ok("POST", "/api/classes", {"title": "Maths 4e B", "access": "account"})
        await t.ok("PUT", f"/api/classes/{classroom['id']}/roster", {"emails": ["parent@example.org"]})
        await other.ok("POST", "/api/classes", {"title": "Histoire", "access": "link"})
        await t.ok("POST", "/api/reports", {"text": "Le son coupe", "diagnostics": {"rtt_ms": 40}})
        status, data = await t.call("GET", "/api/account/export")
        assert status == 200
        assert data["account"]["email"] == "prof@ac-lyon.fr"
        assert data["classes_owned"][0]["title"] == "Maths 4e B"
        assert data["classes_owned"][0]["roster"] == ["parent@example.org"]
        assert data["problem_reports"][0]["text"] == "Le son coupe"
        assert "password_hash" not in json.dumps(data)

        status, body = await t.call("DELETE", "/api/account", {"password": "wrong password"})
        assert (status, body["error"]) == (403, "invalid_credentials")
        await t.ok("DELETE", "/api/account", {"password": PASSWORD})
        assert (await t.ok("GET", "/api/session"))["account"] is None
        status, _ = await t.call("GET", f"/api/join/{code_of(classroom)}")
        assert status == 404  # the class went with the account
        assert len((await other.ok("GET", "/api/classes"))["classes"]) == 1
    async with db_session(classe) as tx:
        assert (await tx.scalars(select(Account.email))).all() == ["autre@ac-lyon.fr"]
        assert await tx.scalar(select(func.count()).select_from(Classroom)) == 1


def test_operator_creates_accounts_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "classe.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n')
    os.environ["CLASSE_PASSWORD"] = PASSWORD
    try:
        for role in ("teacher", "admin"):
            with pytest.raises(SystemExit) as exit_code:
                main(
                    [
                        "create-account",
                        "--config",
                        str(config),
                        "--email",
                        f"{role}@ac-lyon.fr",
                        "--name",
                        role,
                        "--role",
                        role,
                    ]
                )
            assert exit_code.value.code == 0
        with pytest.raises(SystemExit) as exit_code:
            main(["create-account", "--config", str(config), "--email", "teacher@ac-lyon.fr", "--name", "again"])
        assert exit_code.value.code == 1
    finally:
        del os.environ["CLASSE_PASSWORD"]
    out = capsys.readouterr()
    assert "created teacher account" in out.out and "created admin account" in out.out
    assert "existe déjà" in out.err
    assert (tmp_path / "classe.db").exists()


async def test_the_outbox_keeps_mail_when_no_smtp_server_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)
    caplog.set_level(logging.INFO)
    await OutboxMailer(tmp_path / "outbox").send(verification(settings, "prof@ac-lyon.fr", "http://x/verify#s"))
    [mail] = list((tmp_path / "outbox").iterdir())
    assert b"prof@ac-lyon.fr" in mail.read_bytes()
    assert "prof@ac-lyon.fr" not in caplog.text and mail.name in caplog.text


async def test_the_privacy_page_states_the_retention_periods(classe: RunningServer) -> None:
    async with Browser(classe) as b:
        status, page = await b.call("GET", "/privacy")
    assert status == 200
    # The page's script writes the words (test_web_client reads them); the server gives the figures.
    figures = f'"account_retention_days": {classe.settings.account_retention_days},'
    assert figures in html.unescape(page) and "$" not in page
    assert f'"audit_retention_days": {classe.settings.audit_retention_days}' in html.unescape(page)
    assert "http" not in page.replace('href="/"', "")  # no third-party resource


async def test_a_join_is_not_held_back_by_a_database_that_fails_or_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check at join of an account's token (suspended since?) lets the token in, and says so
    once a minute at most."""
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.database)  # never migrated: every query fails
    monkeypatch.setattr(accounts_module, "USABLE_CHECK_SECONDS", 0.2)

    class Hanging:
        @contextlib.asynccontextmanager
        async def sessions(self) -> AsyncIterator[None]:
            await asyncio.sleep(30)
            yield

    try:
        with caplog.at_level(logging.WARNING, logger="signaling.accounts"):
            assert await Accounts(db, settings, OutboxMailer(tmp_path)).usable("0" * 32) is True
            hanging = Accounts(db, settings, OutboxMailer(tmp_path))
            hanging.db = Hanging()  # type: ignore[assignment]
            started = time.monotonic()
            assert await hanging.usable("0" * 32) is True and await hanging.usable("0" * 32) is True
            assert time.monotonic() - started < 5
        assert caplog.text.count("could not check an account at join") == 2  # three failures, one line a minute each
    finally:
        await db.close()
