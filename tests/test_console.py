"""The administration console's API (/api/admin/…) on a real server, SQLite and PostgreSQL: only
admins get in, on every route the app has there; reports are found, read and answered, and their
reporter reads the answer; accounts are suspended, restored, promoted and deleted; live classes
are counted and ended; live settings reach sign-up and the pages; every action is in the audit
log, and hostile input gets 400 or 404, never a 500."""

from __future__ import annotations

import functools
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from sqlalchemy import select

from signaling.accounts import fill_search_names
from signaling.app import create_app
from signaling.config import Settings
from signaling.retention import purge
from signaling.site import SiteSettings
from signaling.store import Account, AccountRole, AuditEntry, Classroom, utcnow
from signaling.text import search_key

from .conftest import RunningServer, both_databases
from .peers import Peer
from .test_access import new_class
from .web import PASSWORD, Browser, code_of, teacher

ADMIN_EMAIL = "admin@ac-lyon.fr"
# A value of the right shape for each parameter of the admin routes: the refusal must come from
# the role, before the route looks at anything.
PARAMETERS = {"report_id": "1", "account_id": "0" * 32, "class_id": "0" * 16}


async def admin(classe: RunningServer) -> Browser:
    await classe.services.accounts.create(ADMIN_EMAIL, "Équipe numérique", PASSWORD, AccountRole.ADMIN, verified=True)
    browser = Browser(classe)
    await browser.sign_in(ADMIN_EMAIL, PASSWORD)
    return browser


@functools.cache
def app_routes() -> list[tuple[str, str]]:
    """Every (method, route pattern) of the app, read from one that is built, never started (its
    database in memory, never opened): a route added later is covered without touching the tests."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    return sorted(
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    )


def routes_under(prefix: str) -> list[tuple[str, str]]:
    """The app's routes under `prefix`, their parameters filled in."""
    return [
        (method, canonical.format(**PARAMETERS))
        for method, canonical in app_routes()
        if canonical == prefix or canonical.startswith(prefix + "/")
    ]


async def audit_actions(classe: RunningServer) -> list[tuple[str, str, str]]:
    async with classe.services.db.sessions() as tx:
        rows = (await tx.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [(e.actor, e.action, e.target) for e in rows]


async def test_every_admin_route_and_page_refuses_teachers_students_and_signed_out_visitors(
    classe: RunningServer,
) -> None:
    api = routes_under("/api/admin")
    pages = routes_under("/admin")
    assert len(api) >= 15 and len(pages) >= 7  # the enumeration still finds them
    async with await teacher(classe) as t, Browser(classe) as anonymous:
        await t.ok("PUT", f"/api/classes/{(await new_class(t, 'account'))['id']}/roster", {"emails": ["e@example.org"]})
        student = Browser(classe)
        secret = await classe.mailbox.link("e@example.org")
        await student.ok("POST", "/api/invitation", {"token": secret, "name": "Élève", "password": PASSWORD})
        async with student:
            for method, path in api:
                body = {} if method in ("POST", "PUT", "DELETE") else None
                for who, expected in ((t, (403, "forbidden")), (student, (403, "forbidden"))):
                    status, data = await who.call(method, path, body)
                    assert (status, data["error"]) == expected, (method, path)
                status, data = await anonymous.call(method, path, body)
                assert (status, data["error"]) == (401, "not_signed_in"), (method, path)
            for _, path in pages:
                for who in (t, student):
                    status, html = await who.call("GET", path)
                    assert status == 403 and 'data-i18n="forbidden.title"' in html, path
                async with anonymous.http.get(classe.url + path, allow_redirects=False) as response:
                    assert response.status == 303 and response.headers["Location"].startswith("/login?next=/admin")
    assert await audit_actions(classe) == []


def test_every_admin_route_is_in_the_http_api_document() -> None:
    """docs/http-api.md is the contract: the routes it lists under /api/admin are the app's."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "http-api.md").read_text(encoding="utf-8")
    documented = {
        (method, re.sub(r"\{\w+\}", "{}", path))
        for method, path in re.findall(r"`(GET|POST|PUT|DELETE) (/api/admin/[^`?\s]*)`", text)
    }
    served = {
        (method, re.sub(r"\{\w+\}", "{}", path)) for method, path in app_routes() if path.startswith("/api/admin/")
    }
    assert documented == served


@both_databases
async def test_reports_are_filtered_read_and_answered_and_the_reporter_reads_the_answer(classe: RunningServer) -> None:
    async with await teacher(classe) as t, await admin(classe) as a, Browser(classe) as anonymous:
        classroom = await new_class(t, title="Physique 3e")
        diagnostics = {"browser": "Chrome 126", "connection": {"failure": None}}
        sent = await t.ok(
            "POST",
            "/api/reports",
            {"text": "Le son coupe\nsouvent", "kind": "sound", "diagnostics": diagnostics, "class_id": classroom["id"]},
        )
        await anonymous.ok("POST", "/api/reports", {"text": "Je n'arrive pas à entrer", "diagnostics": {}})
        status, data = await anonymous.call("POST", "/api/reports", {"text": "x", "kind": "weather"})
        assert (status, data["error"]) == (400, "bad_request")

        listed = (await a.ok("GET", "/api/admin/reports?state=new"))["reports"]
        assert [r["kind"] for r in listed] == ["other", "sound"]  # latest first
        mine = listed[1]
        assert mine["class_title"] == "Physique 3e" and mine["reporter"]["email"] == "prof@ac-lyon.fr"
        assert mine["excerpt"] == "Le son coupe souvent" and listed[0]["reporter"] is None
        assert [r["id"] for r in (await a.ok("GET", "/api/admin/reports?kind=sound"))["reports"]] == [sent["id"]]
        today = utcnow().date()
        assert len((await a.ok("GET", f"/api/admin/reports?since={today}&until={today}"))["reports"]) == 2
        assert (await a.ok("GET", f"/api/admin/reports?since={today + timedelta(days=1)}"))["reports"] == []
        assert (await a.ok("GET", "/api/admin/overview"))["new_reports"] == 2

        report = await a.ok("GET", f"/api/admin/reports/{sent['id']}")
        assert report["diagnostics"] == diagnostics and report["text"] == "Le son coupe\nsouvent"
        assert report["state"] == "new" and report["answer"] is None
        answered = await a.ok(
            "PUT", f"/api/admin/reports/{sent['id']}/answer", {"answer": "Mettez à jour le navigateur.\u202e"}
        )
        assert answered["state"] == "handled" and answered["answer"] == "Mettez à jour le navigateur."
        assert answered["handled_by"] == ADMIN_EMAIL and answered["handled_at"]
        assert [r["id"] for r in (await a.ok("GET", "/api/admin/reports?state=handled"))["reports"]] == [sent["id"]]
        assert len((await a.ok("GET", "/api/admin/reports?state=new"))["reports"]) == 1

        # The teacher reads the answer on her page; the anonymous reporter has no page to read it on.
        [own] = (await t.ok("GET", "/api/my/reports"))["reports"]
        assert (own["id"], own["state"], own["answer"]) == (sent["id"], "handled", "Mettez à jour le navigateur.")
        exported = (await t.ok("GET", "/api/account/export"))["problem_reports"]
        assert [(r["kind"], r["answer"]) for r in exported] == [("sound", "Mettez à jour le navigateur.")]
        assert (await a.ok("GET", "/api/my/reports"))["reports"] == []
        status, data = await anonymous.call("GET", "/api/my/reports")
        assert (status, data["error"]) == (401, "not_signed_in")

    # The audit says who answered which report, never the answer.
    assert await audit_actions(classe) == [(ADMIN_EMAIL, "report_answered", str(sent["id"]))]
    # Reports keep their retention period, answered or not.
    later = utcnow() + timedelta(days=classe.settings.report_retention_days + 1)
    assert (await purge(classe.services.db, classe.settings, later))["old_problem_reports"] == 2


def test_a_name_is_searched_in_any_case_with_or_without_its_accents() -> None:
    assert search_key("Élodie BRÛLÉ") == search_key("elodie brule") == "elodie brule"
    assert search_key("Straße") == "strasse" and search_key("Zoë") == search_key("ZOE")
    assert search_key("\U0001d400lice") == "alice"  # a letter that decomposes to a capital is folded too


@both_databases
async def test_accounts_are_found_suspended_restored_promoted_and_deleted_and_each_action_audited(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as t, await admin(classe) as a, Browser(classe) as pupil:
        classroom = await new_class(t, lobby=False)
        code = code_of(classroom)
        async with Browser(classe) as newcomer_browser:
            await newcomer_browser.call(
                "POST", "/api/signup", {"email": "nouveau@ac-lyon.fr", "name": "M. Noël", "password": PASSWORD}
            )
        await classe.mailbox.wait_for("nouveau@ac-lyon.fr")

        found = (await a.ok("GET", "/api/admin/accounts?q=DURAND"))["accounts"]
        assert [(x["email"], x["role"], x["disabled"]) for x in found] == [("prof@ac-lyon.fr", "teacher", False)]
        prof = found[0]
        assert prof["last_active_at"] and prof["verified"]
        assert [x["email"] for x in (await a.ok("GET", "/api/admin/accounts?q=nouveau@"))["accounts"]] == [
            "nouveau@ac-lyon.fr"
        ]
        assert (await a.ok("GET", "/api/admin/accounts?q=%25"))["accounts"] == []  # % is a character, not a pattern
        for typed in ("noel", "NOËL", "m. noël"):  # a name, with or without its accents, in any case
            found = (await a.ok("GET", "/api/admin/accounts?q=" + quote(typed)))["accounts"]
            assert [x["email"] for x in found] == ["nouveau@ac-lyon.fr"], typed
        assert (await a.ok("GET", "/api/admin/accounts?q=" + quote("\u0301")))["accounts"] == []  # an accent alone
        everyone = await a.ok("GET", "/api/admin/accounts?role=teacher")
        assert {x["email"] for x in everyone["accounts"]} == {"prof@ac-lyon.fr", "nouveau@ac-lyon.fr"}

        # Her lesson is live when she is suspended: it ends, her session stops, she cannot sign in,
        # and her class does not open again.
        peer = Peer(classe.url, "", "Prof")
        await peer.join(await t.join_token(code))
        base = f"/api/admin/accounts/{prof['id']}"
        assert (await a.ok("POST", f"{base}/disable"))["disabled"] is True
        ended = await peer.expect("error")
        assert ended["code"] == "class_ended"
        assert (await a.ok("POST", f"{base}/disable"))["disabled"] is True  # again: no change, not audited
        await peer.close()
        assert (await t.ok("GET", "/api/session"))["account"] is None
        status, data = await t.call("POST", "/api/login", {"email": "prof@ac-lyon.fr", "password": PASSWORD})
        assert (status, data["error"]) == (403, "account_disabled")
        for method, path, form in (("GET", f"/api/join/{code}", None), ("POST", "/api/join", {"code": code})):
            status, data = await pupil.call(method, path, form and {**form, "name": "Léa"})
            assert (status, data["error"]) == (403, "class_suspended"), path

        await a.ok("POST", f"{base}/enable")
        await t.sign_in("prof@ac-lyon.fr", PASSWORD)
        assert (await pupil.call("GET", f"/api/join/{code}"))[0] == 200

        newcomer = next(x for x in everyone["accounts"] if x["email"] == "nouveau@ac-lyon.fr")
        assert (await a.ok("POST", f"/api/admin/accounts/{newcomer['id']}/verification")) == {
            "status": "verification_sent"
        }
        await t.ok("POST", "/api/verify", {"token": await classe.mailbox.link("nouveau@ac-lyon.fr")})
        status, data = await a.call("POST", f"{base}/verification")
        assert (status, data["error"]) == (409, "already_verified")

        assert (await a.ok("POST", f"{base}/promote"))["role"] == "admin"
        assert (await t.ok("GET", "/api/admin/overview"))["new_reports"] == 0  # at once, on her open session
        status, data = await a.call("POST", f"{base}/promote")
        assert (status, data["error"]) == (409, "already_admin")

        me = (await a.ok("GET", "/api/session"))["account"]
        for method, action in (("POST", "/disable"), ("DELETE", "")):
            status, data = await a.call(method, f"/api/admin/accounts/{me['id']}{action}")
            assert (status, data["error"]) == (409, "own_account")

        spare = await t.join_token(code)  # issued before the deletion, still unexpired
        assert await a.ok("DELETE", base) == {"status": "deleted"}
        status, data = await a.call("DELETE", base)
        assert (status, data["error"]) == (404, "unknown_account")
        late = Peer(classe.url, "", "Mme Durand")
        try:  # the token does not reopen the deleted account's deleted class
            assert (await late.join(spare, until="error"))["code"] == "account_disabled"
        finally:
            await late.close()
    async with classe.services.db.sessions() as tx:
        assert await tx.scalar(select(Account).where(Account.email == "prof@ac-lyon.fr")) is None
        assert (await tx.scalars(select(Classroom))).all() == []  # her class went with her

    assert await audit_actions(classe) == [
        (ADMIN_EMAIL, "account_disabled", "prof@ac-lyon.fr"),
        (ADMIN_EMAIL, "account_enabled", "prof@ac-lyon.fr"),
        (ADMIN_EMAIL, "verification_resent", "nouveau@ac-lyon.fr"),
        (ADMIN_EMAIL, "account_promoted", "prof@ac-lyon.fr"),
        (ADMIN_EMAIL, "account_deleted", "prof@ac-lyon.fr"),
    ]
    async with await admin_again(classe) as a:
        page = await a.ok("GET", "/api/admin/audit")
        assert [e["action"] for e in page["entries"]] == [a[1] for a in reversed(await audit_actions(classe))]
        assert page["next"] is None
    # The audit log keeps its period, then goes with the retention purge.
    later = utcnow() + timedelta(days=classe.settings.audit_retention_days + 1)
    assert (await purge(classe.services.db, classe.settings, later))["old_audit_entries"] == 5


async def admin_again(classe: RunningServer) -> Browser:
    browser = Browser(classe)
    await browser.sign_in(ADMIN_EMAIL, PASSWORD)
    return browser


async def test_live_classes_are_counted_by_node_and_ended_in_an_emergency(classe: RunningServer) -> None:
    peers: list[Peer] = []
    async with await teacher(classe) as t, await admin(classe) as a:
        classroom = await new_class(t, lobby=False, title="Histoire 6e")
        code = code_of(classroom)
        prof = Peer(classe.url, "", "Prof")
        await prof.join(await t.join_token(code))
        peers.append(prof)
        async with Browser(classe) as guest:
            student = Peer(classe.url, "", "Léa")
            await student.join(await guest.join_token(code, "Léa"))
            peers.append(student)
        live = await a.ok("GET", "/api/admin/classes")
        node = classe.settings.node_id
        assert (live["directory"], live["total_classes"], live["total_participants"]) == ("ok", 1, 2)
        assert live["classes"] == [
            {"id": classroom["id"], "title": "Histoire 6e", "owner": "prof@ac-lyon.fr", "node": node, "participants": 2}
        ]
        assert [(n["id"], n["state"]) for n in live["nodes"]] == [(node, "ready")]
        assert "Léa" not in json.dumps(live)  # counts, never who

        assert await a.ok("POST", f"/api/admin/classes/{classroom['id']}/end") == {"status": "ended"}
        for peer in peers:
            assert (await peer.expect("error"))["code"] == "class_ended"
        assert (await a.ok("GET", "/api/admin/classes"))["total_classes"] == 0
        status, data = await a.call("POST", f"/api/admin/classes/{classroom['id']}/end")
        assert (status, data["error"]) == (404, "unknown_class")
    for peer in peers:
        await peer.close()
    assert await audit_actions(classe) == [(ADMIN_EMAIL, "class_ended", classroom["id"])]


@both_databases
async def test_live_settings_change_sign_up_and_the_welcome_message_for_every_node(classe: RunningServer) -> None:
    async with await admin(classe) as a, Browser(classe) as visitor:
        settings = await a.ok("GET", "/api/admin/settings")
        assert settings["teacher_domains"] == settings["defaults"]["teacher_domains"] == classe.settings.teacher_domains
        assert (await visitor.ok("GET", "/api/welcome")) == {"message": None}

        changed = await a.ok(
            "PUT",
            "/api/admin/settings",
            {
                "teacher_domains": ["Lycee-Exemple.fr", "*.ac-lyon.fr", "", "lycee-exemple.fr"],
                "welcome_message": "Bienvenue !\n\nMaintenance jeudi.\u202e",
            },
        )
        assert changed["teacher_domains"] == ["lycee-exemple.fr", "*.ac-lyon.fr"]
        assert changed["welcome_message"] == "Bienvenue !\nMaintenance jeudi."
        assert (await visitor.ok("GET", "/api/welcome")) == {"message": "Bienvenue !\nMaintenance jeudi."}
        form = {"name": "X", "password": PASSWORD}
        assert (await visitor.call("POST", "/api/signup", {**form, "email": "prof@lycee-exemple.fr"}))[0] == 202
        status, data = await visitor.call("POST", "/api/signup", {**form, "email": "prof@ac-lyon.fr"})
        assert (status, data["error"]) == (403, "domain_not_allowed")

        # A value sent as it is changes nothing, and is not audited.
        await a.ok("PUT", "/api/admin/settings", {"welcome_message": "Bienvenue !\nMaintenance jeudi."})
        # Another node on the same database reads the same values.
        other = SiteSettings(classe.services.db, classe.settings)
        assert (await other.current()).teacher_domains == ["lycee-exemple.fr", "*.ac-lyon.fr"]

        status, data = await a.call("PUT", "/api/admin/settings", {"teacher_domains": ["ac-*.fr"]})
        assert (status, data["error"], data["domain"]) == (400, "invalid_domain", "ac-*.fr")
        back = await a.ok("PUT", "/api/admin/settings", {"teacher_domains": None, "welcome_message": ""})
        assert back["teacher_domains"] == classe.settings.teacher_domains and back["welcome_message"] == ""
        assert (await visitor.ok("GET", "/api/welcome")) == {"message": None}
    assert [action[1:] for action in await audit_actions(classe)] == [
        ("setting_changed", "teacher_domains"),
        ("setting_changed", "welcome_message"),
        ("setting_changed", "teacher_domains"),
        ("setting_changed", "welcome_message"),
    ]


async def test_hostile_input_to_the_admin_api_gets_400_or_404_never_500(classe: RunningServer) -> None:
    async with await admin(classe) as a:
        for path in (
            "/api/admin/reports/abc",
            "/api/admin/reports/-1",
            "/api/admin/reports/99999999999999999999",
            "/api/admin/reports/123456789",
        ):
            status, data = await a.call("GET", path)
            assert (status, data["error"]) == (404, "unknown_report"), path
        for account_id in ("x", "A" * 32, "0" * 33, "%00" * 8):
            status, data = await a.call("POST", f"/api/admin/accounts/{account_id}/disable", {})
            assert (status, data["error"]) == (404, "unknown_account"), account_id
        for class_id in ("x" * 500, "dev:none", "0" * 16):
            status, data = await a.call("POST", f"/api/admin/classes/{class_id}/end", {})
            assert (status, data["error"]) == (404, "unknown_class"), class_id
        for query in (
            "state=bogus",
            "kind=weather",
            "since=99999-01-01",
            "since=9999-12-31",
            "until=0001-01-01",
            "before=x",
            f"before={2**40}",
            "before=0",
        ):
            status, data = await a.call("GET", f"/api/admin/reports?{query}")
            assert (status, data["error"]) == (400, "bad_request"), query
        for query in ("q=" + "x" * 101, "role=god", "q=a%00b", "q=%0Aprof"):
            status, data = await a.call("GET", f"/api/admin/accounts?{query}")
            assert (status, data["error"]) == (400, "bad_request"), query
        status, data = await a.call("GET", "/api/admin/audit?before=-5")
        assert (status, data["error"]) == (400, "bad_request")

        await a.ok("POST", "/api/reports", {"text": "rien", "diagnostics": {}})
        [report] = (await a.ok("GET", "/api/admin/reports"))["reports"]
        answer = f"/api/admin/reports/{report['id']}/answer"
        for form in ({}, {"answer": 5}, {"answer": ""}, {"answer": "x" * 2001}, {"answer": "\u202e\n "}, [1], "x"):
            status, data = await a.call("PUT", answer, form)
            assert (status, data["error"]) == (400, "bad_request"), form
        for form in (
            {"teacher_domains": "ac-lyon.fr"},
            {"teacher_domains": [1]},
            {"teacher_domains": ["a.fr"] * 501},
            {"teacher_domains": ["a" * 300 + ".fr"]},
            {"welcome_message": 5},
            {"welcome_message": "x" * 1001},
            {"welcome_message": "a\x00b"},
        ):
            status, data = await a.call("PUT", "/api/admin/settings", form)
            assert (status, data["error"]) == (400, "bad_request"), str(form)[:60]
        async with aiohttp.ClientSession(cookie_jar=a.http.cookie_jar) as raw:
            headers = {"X-CSRF-Token": a.csrf, "Content-Type": "application/json"}
            async with raw.put(classe.url + "/api/admin/settings", data=b"[" * 5000, headers=headers) as response:
                assert response.status == 400
    assert await audit_actions(classe) == []  # nothing refused was done, nor written


@both_databases
async def test_the_migration_keeps_accounts_and_their_data(classe: RunningServer) -> None:
    """The columns were added in place: no table was copied, so nothing cascaded away, and old
    rows read as not suspended, reports as new and of kind "other", names found without accents
    once a start has filled their search names."""
    async with await teacher(classe, name="Mme Hélène Durand") as t:
        await new_class(t)
        await t.ok("POST", "/api/reports", {"text": "avant", "diagnostics": {}})
    from alembic import command

    from signaling.store.database import alembic_config

    def down_and_up(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
        command.upgrade(config, "head")

    async with classe.services.db.engine.begin() as connection:
        await connection.run_sync(down_and_up)
    # The search names start empty (as those of accounts made by a node not yet upgraded): the
    # next start fills them.
    assert await fill_search_names(classe.services.db) == 1
    async with await admin(classe) as a:
        [account] = [x for x in (await a.ok("GET", "/api/admin/accounts?role=teacher"))["accounts"]]
        assert account["disabled"] is False
        assert (await a.ok("GET", "/api/admin/accounts?q=helene"))["accounts"] == [account]
        [report] = (await a.ok("GET", "/api/admin/reports"))["reports"]
        assert (report["kind"], report["state"], report["reporter"]["email"]) == ("other", "new", "prof@ac-lyon.fr")
    async with classe.services.db.sessions() as tx:
        assert len((await tx.scalars(select(Classroom))).all()) == 1


async def test_a_suspended_co_teacher_is_put_out_of_a_colleagues_live_lesson_which_goes_on(
    classe: RunningServer,
) -> None:
    async with await teacher(classe) as owner, await admin(classe) as a:
        async with await teacher(classe, "autre@ac-lyon.fr", "M. Martin") as colleague:
            code = code_of(await new_class(owner, lobby=False, co_teachers=["autre@ac-lyon.fr"]))
            prof, co = Peer(classe.url, "", "Prof"), Peer(classe.url, "", "M. Martin")
            again = Peer(classe.url, "", "M. Martin")
            try:
                await prof.join(await owner.join_token(code))
                await co.join(await colleague.join_token(code))
                spare = await colleague.join_token(code)  # issued before the suspension, still unexpired
                found = (await a.ok("GET", "/api/admin/accounts?q=autre@"))["accounts"]
                await a.ok("POST", f"/api/admin/accounts/{found[0]['id']}/disable")
                assert (await co.expect("error"))["code"] == "account_disabled"
                left = await prof.expect("participant_left")
                assert left["participant_id"] == co.id
                # The token taken just before does not bring the suspended account back in.
                assert (await again.join(spare, until="error"))["code"] == "account_disabled"
                # The owner's lesson goes on: she can still act in it.
                await prof.send({"type": "chat", "text": "On continue."})
                assert (await prof.expect("chat"))["text"] == "On continue."
            finally:
                await prof.close()
                await co.close()
                await again.close()
