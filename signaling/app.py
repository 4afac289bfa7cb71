"""The aiohttp application: pages, the HTTP API, WebSocket signaling, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from string import Template

from aiohttp import web
from sqlalchemy import text

from . import exposition, retention
from .accounts import Accounts, fill_search_names
from .api import Services, console, setup_api
from .api.context import SERVICES
from .api.joining import ws_url
from .classes import Classes
from .config import Settings
from .connection import websocket
from .directory import NodeState
from .mail import CountedMailer, Mailer, make_mailer
from .metrics import ServiceCollector, ServiceCounts
from .protocol import MAX_MESSAGE_BYTES
from .server import ClassServer
from .store import Database
from .tokens import Role, mint_join_token

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "web_client" / "static"
SERVER = web.AppKey("server", ClassServer)
COUNTS = web.AppKey("counts", ServiceCounts)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    return await websocket(request, request.app[SERVER])


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: whether this node should be sent new participants (its database and directory
    answer, and it is not draining); 503 names what is wrong."""
    svc = request.app[SERVICES]
    directory = svc.server.directory
    checks = {"database": "ok", "directory": "ok", "state": svc.server.node_state()}
    try:
        async with asyncio.timeout(2.0), svc.db.sessions() as tx:
            await tx.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the driver raises: the answer is "not ready"
        checks["database"] = f"unreachable ({type(exc).__name__})"
    checks["directory"] = await directory.health() or "ok"
    ready = checks["database"] == "ok" and checks["directory"] == "ok" and checks["state"] == NodeState.READY
    body = {"status": "ready" if ready else "not_ready", "node": directory.node_id, "checks": checks}
    return web.json_response(body, status=200 if ready else 503)


async def dev_token(request: web.Request) -> web.Response:
    """Mint a join token with no account and no lobby: dev mode only, for load tests."""
    settings = request.app[SERVICES].settings
    try:
        body = await request.json()
        class_id = str(body["class_id"])[:64]
        name = str(body["name"])[:64]
        role = Role(body.get("role", "student"))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "expected JSON with class_id, name and role"}, status=400)
    if not class_id or not name:
        return web.json_response({"error": "class_id and name must not be empty"}, status=400)
    token = mint_join_token(settings.token_secret, f"dev:{class_id}", name, role, settings.token_ttl_seconds)
    return web.json_response({"token": token, "ws_url": await ws_url(request.app[SERVICES], f"dev:{class_id}", role)})


# The pages of the app, by path; each is static HTML filled by its script from the message catalogues.
PAGES = {
    "/": "index.html",
    "/signup": "signup.html",
    "/verify": "verify.html",
    "/login": "login.html",
    "/forgot": "forgot.html",
    "/reset": "reset.html",
    "/invitation": "invitation.html",
    "/classes": "classes.html",
    "/account": "account.html",
    "/c/{code}": "class.html",
    "/report": "report.html",
}
# The guides and the privacy page: one page that shows a document of the catalogues.
DOCUMENTS = {"/help": "doc.help", "/help/students": "doc.student", "/help/faq": "doc.faq", "/privacy": "doc.privacy"}


def page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    path = STATIC / "pages" / name

    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler


def document(key: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    template = Template((STATIC / "pages" / "document.html").read_text(encoding="utf-8"))

    async def handler(request: web.Request) -> web.Response:
        figures = retention_figures(request.app[SERVICES].settings) if key == "doc.privacy" else {}
        text = template.substitute(document=key, figures=html.escape(json.dumps(figures)))
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-cache"})

    return handler


def retention_figures(s: Settings) -> dict[str, int]:
    """What the privacy page states: the periods this server actually applies."""
    return {
        "account_retention_days": s.account_retention_days,
        "unverified_account_days": s.unverified_account_days,
        "invitation_days": s.invitation_days,
        "class_link_days": s.class_link_days,
        "report_retention_days": s.report_retention_days,
        "audit_retention_days": s.audit_retention_days,
        "session_days": s.session_days,
    }


async def maintenance(app: web.Application) -> AsyncIterator[None]:
    """Migrate and bind the media port at start; then, periodically, forget idle classes and
    apply the retention policy."""
    svc = app[SERVICES]
    counts = app[COUNTS]
    await svc.db.migrate()
    await fill_search_names(svc.db)
    await svc.server.open()

    async def loop() -> None:
        next_purge = 0.0
        while True:
            now = asyncio.get_running_loop().time()
            svc.server.expire_sessions()
            if now >= next_purge:
                next_purge = now + svc.settings.purge_interval_seconds
                try:
                    counts.purged.update(await retention.purge(svc.db, svc.settings))
                except Exception:
                    counts.purge_failures += 1
                    log.exception("retention purge failed; retrying at the next interval")
            await asyncio.sleep(min(60.0, svc.settings.purge_interval_seconds))

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await svc.server.close()
    await svc.db.close()


def create_app(settings: Settings, mailer: Mailer | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    db = Database(settings.database)
    mailer = CountedMailer(mailer or make_mailer(settings))
    server = ClassServer(settings)
    counts = app[COUNTS] = ServiceCounts()
    server.registry.register(ServiceCollector(counts, mailer.results))
    app.middlewares.append(exposition.counting(counts.requests))  # outermost: sees every final status
    accounts = Accounts(db, settings, mailer)
    server.account_usable = accounts.usable
    app[SERVER] = server
    svc = Services(settings, db, mailer, server, accounts, Classes(db, settings, accounts))
    buckets = server.directory.shared_buckets()
    if buckets is not None:
        svc.limits.share(buckets)  # one budget for all the nodes a client's requests may reach
    setup_api(app, svc)
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # On the main port only with metrics_token (signaling/exposition.py); else on metrics_port.
    app.router.add_get("/metrics", exposition.metrics_handler(server.registry, settings.metrics_token, False))
    if settings.dev_mode:
        app.router.add_post("/api/dev/token", dev_token)
    for route, name in PAGES.items():
        app.router.add_get(route, page(name))
    for route, key in DOCUMENTS.items():
        app.router.add_get(route, document(key))
    for route, name in console.PAGES.items():
        app.router.add_get(route, console.page(STATIC / "pages" / name, STATIC / "pages" / "forbidden.html"))
    app.router.add_static("/static/", STATIC)
    app.cleanup_ctx.append(maintenance)
    return app
