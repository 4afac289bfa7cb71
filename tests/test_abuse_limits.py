"""Limits that stop abuse without stopping the people they protect: passwords, links, server failures, logs."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from .conftest import Postgres, RunningServer
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
