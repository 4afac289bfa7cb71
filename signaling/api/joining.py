"""Getting into a class: the class address, the checks, the join token; and problem reports."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from ..accounts import AccountError
from ..directory import DirectoryUnavailable, NoReadyNode
from ..events import Event
from ..stopping import RETRY_AFTER_SECONDS
from ..store import ClassAccess, Classroom, ProblemReport, ReportKind, utcnow
from ..text import clean_text
from ..tokens import Role, mint_join_token, opaque_id
from .context import Services, body, charged, client_address, current_account, fail, services, unknown_links_limited

GUEST_COOKIE = "classe_guest"
# Why no node can take a participant now; each is a 503 with Retry-After (docs/http-api.md).
UNAVAILABLE = {
    "server_stopping": "Le serveur redémarre : réessayez dans quelques secondes.",
    "server_draining": "Ce serveur n'ouvre pas de nouvelle classe pour le moment : réessayez dans quelques minutes.",
    "no_server": "Aucun serveur ne peut accueillir la classe : réessayez dans un instant.",
    "directory_unavailable": "Le serveur ne sait pas où se tient la classe : réessayez dans un instant.",
}


class JoinRequest(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=60)


class ReportForm(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    class_id: str | None = Field(default=None, max_length=32)
    kind: ReportKind = ReportKind.OTHER


async def _class_by_code(request: web.Request, code: str) -> Classroom:
    """Unknown codes spend from the guessing budget of the address that sent them."""
    svc = services(request)
    async with unknown_links_limited(request, svc.limits.class_links, client_address(request)):
        classroom = await svc.classes.by_code(code)
        if classroom is None:
            raise fail(404, "unknown_link", "Ce lien de classe n'est pas valide ou a expiré.")
    return classroom


async def class_info(request: web.Request) -> web.Response:
    """What the pre-join page shows: the class's title and how to get in."""
    classroom = await _class_by_code(request, request.match_info["code"])
    return web.json_response({"title": classroom.title, "access": classroom.access, "lobby": classroom.lobby})


async def ws_url(svc: Services, class_id: str, role: Role) -> str | None:
    """The WebSocket address of the node hosting the class, placing a class that opens on the
    least-loaded ready node (None: this page's own origin). A node that stops sends nobody to
    itself: with Redis it has left the directory and the class goes to another node."""
    server = svc.server
    try:
        placement = await server.directory.place(class_id)
    except NoReadyNode:
        code = server.refusal(class_id) or "no_server"
    except DirectoryUnavailable:
        code = "directory_unavailable"
    else:
        if not (placement.here and server.stopping):
            return placement.ws_url
        code = "server_stopping"
    refused(svc, class_id, role, code)
    raise unavailable(code)


def refused(svc: Services, class_id: str, role: Role, code: str) -> None:
    """A join of a known class refused before any WebSocket: the same event line and count as a
    refused `join` message (unknown links are not a class's event: a guesser would fill the log)."""
    svc.server.events.emit(Event.JOIN_REFUSED, class_id, role=role.value, reason=code)


def _student_refused(svc: Services, classroom: Classroom, status: int, code: str, message: str) -> AccountError:
    refused(svc, classroom.id, Role.STUDENT, code)
    return fail(status, code, message)


def unavailable(code: str) -> web.HTTPServiceUnavailable:
    """A refusal the browser retries by itself, after Retry-After seconds."""
    return web.HTTPServiceUnavailable(
        text=json.dumps({"error": code, "message": UNAVAILABLE[code]}),
        content_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _display_name(value: str | None) -> str:
    name = clean_text(value or "", 60)
    if not name:
        raise fail(400, "name_required", "Indiquez votre nom pour rejoindre la classe.")
    return name


async def join(request: web.Request) -> web.Response:
    """All the checks, then a short-lived join token bound to one participant, class and role."""
    svc = services(request)
    form = await body(request, JoinRequest)
    classroom = await _class_by_code(request, form.code)
    account = await current_account(request)
    secret = svc.settings.token_secret
    response = web.json_response({})
    if account is not None and await svc.classes.is_teacher(account, classroom):
        role = Role.TEACHER
        identity = opaque_id(secret, classroom.id, "account", account.id)
        name = clean_text(account.name, 80) or account.email.split("@")[0]  # a name stored before names were cleaned
        participant_id = identity
    else:
        role = Role.STUDENT
        if classroom.access == ClassAccess.ACCOUNT.value:
            if account is None:
                raise _student_refused(
                    svc,
                    classroom,
                    401,
                    "sign_in_required",
                    "Cette classe est réservée aux élèves inscrits : connectez-vous d'abord.",
                )
            if not await svc.classes.on_roster(account, classroom):
                raise _student_refused(
                    svc,
                    classroom,
                    403,
                    "not_on_roster",
                    "Ce compte n'est pas inscrit dans cette classe. Demandez à l'enseignant.",
                )
        if account is not None:
            identity = opaque_id(secret, classroom.id, "account", account.id)
            name = _display_name(form.name or account.name)
        else:
            guest = request.cookies.get(GUEST_COOKIE) or ""
            if len(guest) != 43:
                guest = secrets.token_urlsafe(32)
                response.set_cookie(
                    GUEST_COOKIE,
                    guest,
                    max_age=24 * 3600,
                    httponly=True,
                    samesite="Lax",
                    secure=svc.settings.cookies_secure,
                    path="/",
                )
            identity = opaque_id(secret, classroom.id, "guest", guest)
            name = _display_name(form.name)
        # One address may stand for several children: each name is a participant, the address one identity.
        participant_id = opaque_id(secret, classroom.id, identity, name)
    token = mint_join_token(
        secret,
        classroom.id,
        name,
        role,
        svc.settings.token_ttl_seconds,
        participant_id,
        identity=identity,
        lobby=classroom.lobby,
        gated=True,
        account=account.id if account is not None else None,
    )
    address = await ws_url(svc, classroom.id, role)
    response.text = json.dumps(
        {
            "token": token,
            "class_id": classroom.id,
            "title": classroom.title,
            "role": role.value,
            "name": name,
            "ws_url": address,
        }
    )
    return response


async def report_problem(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, ReportForm)
    diagnostics = json.dumps(form.diagnostics, ensure_ascii=False)
    if len(diagnostics) > 16_000:
        raise fail(400, "bad_request", "Diagnostics trop volumineux.")
    async with charged(request, svc.limits.reports, client_address(request)):
        account = await current_account(request)
        async with svc.db.transaction() as tx:
            report = ProblemReport(
                created_at=utcnow(),
                account_id=account.id if account else None,
                class_id=form.class_id,
                text=form.text,
                diagnostics=diagnostics,
                kind=form.kind.value,
            )
            tx.add(report)
    return web.json_response({"status": "received", "id": report.id}, status=201)


ROUTES = [
    ("GET", "/api/join/{code}", class_info),
    ("POST", "/api/join", join),
    ("POST", "/api/reports", report_problem),
]
