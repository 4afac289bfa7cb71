"""What every handler needs, the security middleware, and the route table."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..accounts import AccountError, Accounts
from ..budgets import Budget, SharedBuckets
from ..classes import Classes
from ..config import Settings
from ..directory import ClassDirectory
from ..mail import Mailer
from ..server import ClassServer
from ..store import Account, Database

log = logging.getLogger(__name__)
SESSION_COOKIE = "classe_session"
DEVICE_COOKIE = "classe_device"
CSRF_COOKIE = "classe_csrf"
CSRF_HEADER = "X-CSRF-Token"
# The browser may only talk to this server: no CDN, no font, no analytics, no third-party anything;
# its WebSocket may also reach the other nodes of the service (connect-src, below).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src {connect}; font-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
Model = TypeVar("Model", bound=BaseModel)


@dataclass
class Limits:
    """The client's own failures (a wrong password, an unknown link) spend from these buckets.

    A server error (the database down) never does: the client did nothing wrong.
    """

    # Wrong passwords: per client address; per account and address, so that guesses from one address
    # do not lock the owner out from another; per account from all addresses together (a botnet),
    # kept high. A browser the account signed in from before (device cookie) has its own budget
    # instead of these three: the owner's usual browser gets in whatever others try.
    login_by_address: Budget = field(default_factory=lambda: Budget("login_by_address", 30, 900))
    login_by_account_address: Budget = field(default_factory=lambda: Budget("login_by_account_address", 10, 900))
    login_by_account: Budget = field(default_factory=lambda: Budget("login_by_account", 100, 3600))
    login_by_device: Budget = field(default_factory=lambda: Budget("login_by_device", 10, 900))
    # Password confirmations of a signed-in account (deleting it), per account.
    confirmations: Budget = field(default_factory=lambda: Budget("confirmations", 10, 900))
    # Co-teacher addresses without a teacher account, per teacher: asking address after address
    # would tell who has an account.
    unknown_co_teachers: Budget = field(default_factory=lambda: Budget("unknown_co_teachers", 10, 3600))
    class_links: Budget = field(default_factory=lambda: Budget("class_links", 20, 600))
    mail_links: Budget = field(default_factory=lambda: Budget("mail_links", 20, 600))
    mail: Budget = field(default_factory=lambda: Budget("mail", 10, 3600))
    reports: Budget = field(default_factory=lambda: Budget("reports", 10, 3600))

    def share(self, buckets: SharedBuckets) -> None:
        """Count in Redis, with every node (signaling/budgets.py)."""
        for budget in vars(self).values():
            budget.shared = buckets


@dataclass
class Services:
    settings: Settings
    db: Database
    mailer: Mailer
    server: ClassServer
    accounts: Accounts
    classes: Classes
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic


SERVICES = web.AppKey("services", Services)
_ACCOUNT = web.RequestKey("account", object)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def fail(status: int, code: str, message: str) -> AccountError:
    return AccountError(status, code, message)


def client_address(request: web.Request) -> str:
    """For rate limiting only: kept in memory for minutes, never logged or stored."""
    if services(request).settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def _check(request: web.Request, budget: Budget, key: str) -> None:
    wait = await budget.retry_after(key, services(request).clock())
    if wait > 0:
        raise web.HTTPTooManyRequests(
            text='{"error":"rate_limited","message":"Trop de tentatives : réessayez dans quelques minutes."}',
            content_type="application/json",
            headers={"Retry-After": str(int(wait) + 1)},
        )


@asynccontextmanager
async def failures_limited(request: web.Request, *buckets: tuple[Budget, str]) -> AsyncIterator[None]:
    """Refuse while a bucket is empty; a refusal of the client's attempt inside the block spends from each.

    Only an AccountError (wrong password, unknown link…) is the client's failure: any other error is
    the server's, and costs the client nothing.
    """
    for budget, key in buckets:
        await _check(request, budget, key)
    try:
        yield
    except AccountError:
        now = services(request).clock()
        for budget, key in buckets:
            await budget.spend(key, now)
        raise


@asynccontextmanager
async def refusals_limited(request: web.Request, budget: Budget, key: str, *codes: str) -> AsyncIterator[None]:
    """A request that succeeds is never held back; only the refusals named spend, and are refused harder."""
    try:
        yield
    except AccountError as exc:
        if exc.code not in codes:
            raise
        await _check(request, budget, key)
        await budget.spend(key, services(request).clock())
        raise


def unknown_links_limited(request: web.Request, budget: Budget, key: str) -> AbstractAsyncContextManager[None]:
    """A valid link always works; only an unknown one spends.

    Links carry 192 bits or more, so guessing cannot succeed: the budget only sheds a client that
    keeps sending unknown links, and never stands between a school behind one address and its class.
    """
    return refusals_limited(request, budget, key, "unknown_link", "invalid_link")


@asynccontextmanager
async def charged(request: web.Request, budget: Budget, key: str) -> AsyncIterator[None]:
    """For attempts that cost whatever their outcome (each sends a mail, or stores a report), except
    when the server fails them."""
    await _check(request, budget, key)
    try:
        yield
    except AccountError:
        await budget.spend(key, services(request).clock())
        raise
    await budget.spend(key, services(request).clock())


MAX_JSON_DEPTH = 32


def _hostile(data: Any) -> bool:
    """Deeper than any form, or a NUL character (PostgreSQL refuses it in text): walked without recursion."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend((k, depth + 1) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return False


async def body(request: web.Request, model: type[Model]) -> Model:
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        raise fail(400, "bad_request", "Le corps de la requête doit être du JSON.") from None
    if _hostile(data):
        raise fail(400, "bad_request", "Le corps de la requête est trop imbriqué ou contient un caractère nul.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()[:5])
        raise fail(400, "bad_request", f"Champs invalides : {fields}.") from None


async def current_account(request: web.Request) -> Account | None:
    if _ACCOUNT not in request:
        secret = request.cookies.get(SESSION_COOKIE)
        request[_ACCOUNT] = await services(request).accounts.session_account(secret) if secret else None
    account = request[_ACCOUNT]
    assert account is None or isinstance(account, Account)
    return account


async def require_account(request: web.Request, *roles: str) -> Account:
    account = await current_account(request)
    if account is None:
        raise fail(401, "not_signed_in", "Connectez-vous d'abord.")
    if roles and account.role not in roles:
        raise fail(403, "forbidden", "Ce compte ne peut pas faire cela.")
    return account


def set_session_cookie(request: web.Request, response: web.StreamResponse, secret: str) -> None:
    s = services(request).settings
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=s.session_days * 86400,
        httponly=True,
        samesite="Lax",
        secure=s.cookies_secure,
        path="/",
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def ensure_csrf_cookie(request: web.Request, response: web.StreamResponse) -> str:
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        response.set_cookie(
            CSRF_COOKIE,
            token,
            samesite="Strict",
            secure=services(request).settings.cookies_secure,
            path="/",
        )
    return token


def _csrf_ok(request: web.Request) -> bool:
    """Double submit: the page's script copies the cookie into a header, which another site cannot do."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in (services(request).settings.origin, f"{request.scheme}://{request.host}"):
        return False
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    raw = "utf-8", "surrogateescape"  # headers that are not UTF-8 come back as they came, not as a 500
    return bool(cookie) and hmac.compare_digest(cookie.encode(*raw), header.encode(*raw))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def content_security_policy(directory: ClassDirectory) -> str:
    """'self', and the WebSocket origin of each node the directory knows: a page served by one node
    may be sent to another's signaling (its URLs were checked when read from the directory)."""
    return CONTENT_SECURITY_POLICY.format(connect=" ".join(["'self'", *directory.connect_origins()]))


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        # /api/dev/ exists only in dev mode, for load generators that hold no cookie.
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        if unsafe and request.path.startswith("/api/") and not request.path.startswith("/api/dev/"):
            if not _csrf_ok(request):
                raise fail(403, "csrf", "Requête refusée : rechargez la page et réessayez.")
        response = await handler(request)
    except AccountError as exc:
        response = web.json_response({"error": exc.code, "message": exc.message, **exc.extra}, status=exc.status)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400 or exc.content_type == "application/json":
            raise
        # The router's own refusals (no such route, wrong method) answer in the API's JSON shape too.
        code = exc.reason.lower().replace(" ", "_")
        response = web.json_response({"error": code, "message": exc.reason}, status=exc.status)
    except Exception as exc:
        if request.writer.output_size > 0:  # a WebSocket, already answered: aiohttp closes it (and logs it, below)
            raise
        _log_unhandled(request, exc)
        response = web.json_response(
            {"error": "internal_error", "message": "Erreur du serveur : réessayez dans un instant."}, status=500
        )
    response.headers.setdefault("Content-Security-Policy", content_security_policy(services(request).server.directory))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _describe_error(exc: BaseException) -> str:
    """The error types and where they happened, without their messages: a database error's message
    holds the values it was given (addresses, hashes, link codes)."""
    chain: list[str] = []
    frames: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(type(seen).__qualname__)
        frames.extend(traceback.format_tb(seen.__traceback__))
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(chain) + "\n" + "".join(frames)


def _log_unhandled(request: web.Request, exc: BaseException) -> None:
    """The route's pattern and the error: never the client's address (aiohttp's own handler logs it)
    nor the path (it may hold a class link)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "?"
    log.error("unhandled error on %s %s: %s", request.method, route, _describe_error(exc))


class _NoClientDetails(logging.Filter):
    """aiohttp's own error lines ("Error handling request from <address>"), for the errors the
    middleware cannot answer (a WebSocket already open): without the address or the messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and "from %s" in str(record.msg):
            record.msg, record.args = str(record.msg).replace(" from %s", ""), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg}: {_describe_error(record.exc_info[1])}"
            record.exc_info, record.exc_text = None, None
        return True


_NO_CLIENT_DETAILS = _NoClientDetails()


def setup_api(app: web.Application, svc: Services) -> None:
    from . import auth, console, joining, teaching

    app[SERVICES] = svc
    app.middlewares.append(security)
    logging.getLogger("aiohttp.server").addFilter(_NO_CLIENT_DETAILS)
    routes: list[tuple[str, str, Any]] = [*auth.ROUTES, *teaching.ROUTES, *joining.ROUTES, *console.ROUTES]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
