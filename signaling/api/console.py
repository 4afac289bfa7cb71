"""The administration console's API (/api/admin/…, the `admin` role only), its pages, and what
every account reads of it: the answers to its own problem reports, the welcome message.

Every admin route refuses a signed-out request (401) and any other role (403) before it reads
anything; changes go through CSRF as the rest of the API. No rate limit stands in an admin's way:
the audit log records what they do instead.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from .. import audit, reports
from ..accounts import AccountError
from ..administration import Administration, describe_account
from ..audit import AuditAction, record
from ..config import MAX_WELCOME_MESSAGE, teacher_domain_entries
from ..reports import MAX_ANSWER, ReportFilter, ReportState
from ..site import MAX_TEACHER_DOMAINS, domain_list, welcome_text
from ..store import Account, AccountRole, ReportKind
from ..text import clean_paragraphs, clean_text
from .context import body, current_account, fail, require_account, services

REPORT_ID = re.compile(r"[0-9]{1,9}")  # within a 32-bit integer: PostgreSQL refuses more
ADMIN = AccountRole.ADMIN.value


def _administration(request: web.Request) -> Administration:
    svc = services(request)
    return Administration(svc.db, svc.accounts, svc.classes, svc.server)


async def _admin(request: web.Request) -> Account:
    return await require_account(request, ADMIN)


def _plausible(value: date | None) -> date | None:
    """2000 to 2100: a day past year 9999 overflows, and means nothing."""
    if value is not None and not 2000 <= value.year <= 2100:
        raise ValueError("date out of range")
    return value


class ReportQuery(BaseModel):
    state: ReportState | None = None
    kind: ReportKind | None = None
    since: date | None = None
    until: date | None = None
    before: int | None = Field(default=None, ge=1, le=2**31 - 1)

    _dates = field_validator("since", "until")(_plausible)


class AccountQuery(BaseModel):
    q: str = Field(default="", max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")  # PostgreSQL refuses NUL
    role: AccountRole | None = None


class AuditQuery(BaseModel):
    before: int | None = Field(default=None, ge=1, le=2**31 - 1)


class Answer(BaseModel):
    answer: str = Field(min_length=1, max_length=MAX_ANSWER)


class SiteForm(BaseModel):
    """Only the fields sent change; null puts a setting back to the configuration's value."""

    teacher_domains: list[str] | None = Field(default=None, max_length=MAX_TEACHER_DOMAINS)
    welcome_message: str | None = Field(default=None, max_length=MAX_WELCOME_MESSAGE)

    @field_validator("teacher_domains")
    @classmethod
    def _entries_are_short(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(len(entry) > 253 for entry in value):
            raise ValueError("a domain has at most 253 characters")
        return value


def _query(request: web.Request, model: type[Any]) -> Any:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "query" for e in exc.errors()[:5])
        raise fail(400, "bad_request", f"Paramètres invalides : {fields}.") from None


def _report_id(request: web.Request) -> int:
    raw = request.match_info["report_id"]
    if not REPORT_ID.fullmatch(raw):
        raise fail(404, "unknown_report", "Signalement introuvable.")
    return int(raw)


# Problem reports


async def overview(request: web.Request) -> web.Response:
    """The console's first page: what waits (new reports) and what runs (live classes)."""
    await _admin(request)
    live = await _administration(request).live()
    return web.json_response(
        {
            "new_reports": await reports.count_new(services(request).db),
            "live_classes": live["total_classes"],
            "live_participants": live["total_participants"],
            "directory": live["directory"],
        }
    )


async def list_reports(request: web.Request) -> web.Response:
    await _admin(request)
    query: ReportQuery = _query(request, ReportQuery)
    wanted = ReportFilter(query.state, query.kind.value if query.kind else None, query.since, query.until, query.before)
    found, after = await reports.find(services(request).db, wanted)
    return web.json_response({"reports": found, "next": after})


async def get_report(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(await reports.read(services(request).db, _report_id(request)))


async def answer_report(request: web.Request) -> web.Response:
    admin = await _admin(request)
    report_id = _report_id(request)
    form = await body(request, Answer)
    text = clean_paragraphs(form.answer, MAX_ANSWER)
    if not text:
        raise fail(400, "bad_request", "Champs invalides : answer.")
    db = services(request).db
    await reports.answer(db, admin, report_id, text)
    return web.json_response(await reports.read(db, report_id))


async def my_reports(request: web.Request) -> web.Response:
    """(any signed-in account) its own reports and the answers they got."""
    account = await require_account(request)
    return web.json_response({"reports": await reports.of_reporter(services(request).db, account)})


# Accounts


async def list_accounts(request: web.Request) -> web.Response:
    await _admin(request)
    query: AccountQuery = _query(request, AccountQuery)
    found, more = await _administration(request).search(query.q, query.role.value if query.role else None)
    return web.json_response({"accounts": found, "more": more})


def _account_action(
    act: Callable[[Administration, Account, str], Awaitable[dict[str, Any]]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        admin = await _admin(request)
        return web.json_response(await act(_administration(request), admin, request.match_info["account_id"]))

    return handler


async def _disable(a: Administration, admin: Account, account_id: str) -> dict[str, Any]:
    return describe_account(await a.set_disabled(admin, account_id, True))


async def _enable(a: Administration, admin: Account, account_id: str) -> dict[str, Any]:
    return describe_account(await a.set_disabled(admin, account_id, False))


async def _promote(a: Administration, admin: Account, account_id: str) -> dict[str, Any]:
    return describe_account(await a.promote(admin, account_id))


async def _resend(a: Administration, admin: Account, account_id: str) -> dict[str, Any]:
    if not await a.resend_verification(admin, account_id):
        raise fail(503, "mail_unavailable", "Le serveur de courrier ne répond pas : réessayez plus tard.")
    return {"status": "verification_sent"}


async def _delete(a: Administration, admin: Account, account_id: str) -> dict[str, Any]:
    await a.delete(admin, account_id)
    return {"status": "deleted"}


# Live classes


async def live_classes(request: web.Request) -> web.Response:
    await _admin(request)
    return web.json_response(await _administration(request).live())


async def end_class(request: web.Request) -> web.Response:
    admin = await _admin(request)
    await _administration(request).end_class(admin, request.match_info["class_id"])
    return web.json_response({"status": "ended"})


# Live settings


async def _site_answer(request: web.Request) -> web.Response:
    site = services(request).accounts.site
    current, defaults = await site.current(), site.defaults
    return web.json_response(
        {
            "teacher_domains": current.teacher_domains,
            "welcome_message": current.welcome_message,
            "defaults": {"teacher_domains": defaults.teacher_domains, "welcome_message": defaults.welcome_message},
        }
    )


async def get_settings(request: web.Request) -> web.Response:
    await _admin(request)
    return await _site_answer(request)


def _domains(entries: list[str]) -> list[str]:
    """The allow-list as sent, or a refusal that names the first entry that is not a domain."""
    for entry in entries:
        try:
            teacher_domain_entries([entry] if entry.strip() else [])
        except ValueError:
            shown = clean_text(entry, 253)
            message = f"« {shown} » n'est ni un domaine ni « *. » suivi d'un domaine."
            raise AccountError(400, "invalid_domain", message, domain=shown) from None
    return domain_list(entries)


async def change_settings(request: web.Request) -> web.Response:
    admin = await _admin(request)
    form = await body(request, SiteForm)
    changes: dict[str, Any] = {}
    if "teacher_domains" in form.model_fields_set:
        changes["teacher_domains"] = _domains(form.teacher_domains) if form.teacher_domains is not None else None
    if "welcome_message" in form.model_fields_set:
        message = form.welcome_message
        changes["welcome_message"] = welcome_text(message) if message is not None else None
    svc = services(request)
    async with svc.db.transaction() as tx:
        for name, value in changes.items():
            if await svc.accounts.site.change(tx, name, value):  # a value sent as it was is no change
                record(tx, admin, AuditAction.SETTING_CHANGED, name)
    svc.accounts.site.forget()
    return await _site_answer(request)


async def welcome(request: web.Request) -> web.Response:
    """(anyone) the message of the home and sign-in pages; null: none."""
    message = (await services(request).accounts.site.current()).welcome_message
    return web.json_response({"message": message or None})


# The audit log


async def audit_log(request: web.Request) -> web.Response:
    await _admin(request)
    query: AuditQuery = _query(request, AuditQuery)
    found, after = await audit.entries(services(request).db, query.before)
    return web.json_response({"entries": found, "next": after})


ROUTES = [
    ("GET", "/api/admin/overview", overview),
    ("GET", "/api/admin/reports", list_reports),
    ("GET", "/api/admin/reports/{report_id}", get_report),
    ("PUT", "/api/admin/reports/{report_id}/answer", answer_report),
    ("GET", "/api/admin/accounts", list_accounts),
    ("POST", "/api/admin/accounts/{account_id}/disable", _account_action(_disable)),
    ("POST", "/api/admin/accounts/{account_id}/enable", _account_action(_enable)),
    ("POST", "/api/admin/accounts/{account_id}/verification", _account_action(_resend)),
    ("POST", "/api/admin/accounts/{account_id}/promote", _account_action(_promote)),
    ("DELETE", "/api/admin/accounts/{account_id}", _account_action(_delete)),
    ("GET", "/api/admin/classes", live_classes),
    ("POST", "/api/admin/classes/{class_id}/end", end_class),
    ("GET", "/api/admin/settings", get_settings),
    ("PUT", "/api/admin/settings", change_settings),
    ("GET", "/api/admin/audit", audit_log),
    ("GET", "/api/my/reports", my_reports),
    ("GET", "/api/welcome", welcome),
]

# The console's pages: static markup filled by its scripts from the API above. A signed-out
# visitor is sent to sign in; any other role gets 403 and a page that says so.
PAGES = {
    "/admin": "admin.html",
    "/admin/reports": "admin-reports.html",
    "/admin/reports/{report_id}": "admin-report.html",
    "/admin/accounts": "admin-accounts.html",
    "/admin/classes": "admin-classes.html",
    "/admin/settings": "admin-settings.html",
    "/admin/audit": "admin-audit.html",
}


def page(path: Path, forbidden: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    # Read once, and answered whole: a file response could answer a revalidation with 304 instead.
    refusal = forbidden.read_text(encoding="utf-8")

    async def handler(request: web.Request) -> web.StreamResponse:
        account = await current_account(request)
        if account is None:
            raise web.HTTPSeeOther(f"/login?next={quote(request.path, safe='/')}")
        if account.role != ADMIN:
            return web.Response(
                text=refusal, status=403, content_type="text/html", headers={"Cache-Control": "no-store"}
            )
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler
