"""Sign-up, verification, sign-in, password reset, invitations; a user's own data and its deletion."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from ..accounts import password_matches
from ..administration import end_owned_classes
from ..budgets import Budget
from ..store import Account
from .context import (
    DEVICE_COOKIE,
    SESSION_COOKIE,
    body,
    charged,
    clear_session_cookie,
    client_address,
    current_account,
    ensure_csrf_cookie,
    fail,
    failures_limited,
    require_account,
    services,
    set_session_cookie,
    unknown_links_limited,
)


class SignUp(BaseModel):
    email: str = Field(max_length=254)
    name: str = Field(min_length=1, max_length=80)
    password: str = Field(max_length=1024)


class Credentials(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class Secret(BaseModel):
    token: str = Field(min_length=10, max_length=100)


class Email(BaseModel):
    email: str = Field(max_length=254)


class NewPassword(BaseModel):
    token: str = Field(min_length=10, max_length=100)
    password: str = Field(max_length=1024)


class Invitation(BaseModel):
    token: str = Field(min_length=10, max_length=100)
    name: str = Field(min_length=1, max_length=80)
    password: str = Field(max_length=1024)


class Confirmation(BaseModel):
    password: str = Field(max_length=1024)


def describe(account: Account) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "name": account.name, "role": account.role}


async def session(request: web.Request) -> web.Response:
    """Who is signed in, and the CSRF token the page sends back with every change."""
    account = await current_account(request)
    response = web.json_response({})
    csrf = ensure_csrf_cookie(request, response)
    response.text = json.dumps({"account": describe(account) if account else None, "csrf": csrf})
    return response


async def sign_up(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, SignUp)
    address = client_address(request)
    async with charged(request, svc.limits.mail, address):  # each sign-up sends a mail: counted whatever the outcome
        await svc.accounts.sign_up_teacher(form.email, form.name, form.password)
    return web.json_response({"status": "verification_sent"}, status=202)


async def verify(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, Secret)
    address = client_address(request)
    async with unknown_links_limited(request, svc.limits.mail_links, address):
        await svc.accounts.verify(form.token)
    return web.json_response({"status": "verified"})


async def sign_in(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, Credentials)
    address = client_address(request)
    account_key = form.email.strip().lower()
    device = request.cookies.get(DEVICE_COOKIE, "")
    limits = svc.limits
    if len(device) == 64 and await svc.accounts.trusted_device(account_key, device):
        buckets: tuple[tuple[Budget, str], ...] = ((limits.login_by_device, device),)
    else:
        buckets = (
            (limits.login_by_address, address),
            (limits.login_by_account_address, f"{account_key} {address}"),
            (limits.login_by_account, account_key),
        )
    async with failures_limited(request, *buckets):
        account = await svc.accounts.authenticate(form.email, form.password)
    secret = await svc.accounts.start_session(account)
    response = web.json_response({"account": describe(account)})
    set_session_cookie(request, response, secret)
    set_device_cookie(request, response, account)
    return response


def set_device_cookie(request: web.Request, response: web.StreamResponse, account: Account) -> None:
    """Marks a browser that proved it holds the account (its password, or its mailbox)."""
    svc = services(request)
    response.set_cookie(
        DEVICE_COOKIE,
        svc.accounts.device_token(account),
        max_age=365 * 86400,
        httponly=True,
        samesite="Strict",
        secure=svc.settings.cookies_secure,
        path="/api/login",
    )


async def sign_out(request: web.Request) -> web.Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        await services(request).accounts.end_session(secret)
    response = web.json_response({"status": "signed_out"})
    clear_session_cookie(response)
    return response


async def forgot_password(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, Email)
    address = client_address(request)
    async with charged(request, svc.limits.mail, address):
        svc.accounts.request_reset_later(form.email)
    # The same answer for every address: this page does not tell who has an account.
    return web.json_response({"status": "reset_sent_if_registered"}, status=202)


async def reset_password(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, NewPassword)
    address = client_address(request)
    async with unknown_links_limited(request, svc.limits.mail_links, address):
        account = await svc.accounts.reset_password(form.token, form.password)
    response = web.json_response({"status": "password_changed"})
    # The mailed link is the owner's way in whatever others try: this browser now signs in on its own budget.
    set_device_cookie(request, response, account)
    return response


async def accept_invitation(request: web.Request) -> web.Response:
    svc = services(request)
    form = await body(request, Invitation)
    address = client_address(request)
    async with unknown_links_limited(request, svc.limits.mail_links, address):
        account = await svc.accounts.accept_invitation(form.token, form.name, form.password)
    secret = await svc.accounts.start_session(account)
    response = web.json_response({"account": describe(account)}, status=201)
    set_session_cookie(request, response, secret)
    return response


async def export(request: web.Request) -> web.Response:
    account = await require_account(request)
    data = await services(request).accounts.export(account)
    return web.json_response(
        data,
        headers={"Content-Disposition": 'attachment; filename="classe-mes-donnees.json"'},
        dumps=lambda d: json.dumps(d, ensure_ascii=False, indent=2),
    )


async def delete_account(request: web.Request) -> web.Response:
    account = await require_account(request)
    form = await body(request, Confirmation)
    svc = services(request)
    async with failures_limited(request, (svc.limits.confirmations, account.id)):  # a stolen session guesses slowly
        if not await password_matches(account.password_hash, form.password):
            raise fail(403, "invalid_credentials", "Mot de passe incorrect.")
    await end_owned_classes(svc.classes, svc.server, account, "deleted")
    await svc.accounts.delete(account.id)
    response = web.json_response({"status": "deleted"})
    clear_session_cookie(response)
    return response


ROUTES = [
    ("GET", "/api/session", session),
    ("POST", "/api/signup", sign_up),
    ("POST", "/api/verify", verify),
    ("POST", "/api/login", sign_in),
    ("POST", "/api/logout", sign_out),
    ("POST", "/api/password/forgot", forgot_password),
    ("POST", "/api/password/reset", reset_password),
    ("POST", "/api/invitation", accept_invitation),
    ("GET", "/api/account/export", export),
    ("DELETE", "/api/account", delete_account),
]
