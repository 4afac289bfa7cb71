"""A browser-like HTTP client for the API: its own cookies, and the CSRF header on every change."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from .conftest import RunningServer


class Served(Protocol):
    url: str


class Browser:
    def __init__(self, classe: Served, source: str | None = None) -> None:
        """`source`: another loopback address (127.0.0.2…) to connect from, as another client would."""
        self.classe = classe
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)
        self.csrf = ""

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def call(self, method: str, path: str, json: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if not self.csrf and method != "GET":
            _, session = await self.call("GET", "/api/session")
            self.csrf = session["csrf"]
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        async with self.http.request(method, self.classe.url + path, json=json, headers=headers, **kwargs) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data

    async def ok(self, method: str, path: str, json: Any = None) -> Any:
        status, data = await self.call(method, path, json)
        assert status < 300, (status, data)
        return data

    async def sign_in(self, email: str, password: str) -> None:
        await self.ok("POST", "/api/login", {"email": email, "password": password})

    async def join_token(self, code: str, name: str | None = None) -> str:
        data = await self.ok("POST", "/api/join", {"code": code, "name": name})
        return str(data["token"])


PASSWORD = "correct horse battery staple"


async def teacher(classe: RunningServer, email: str = "prof@ac-lyon.fr", name: str = "Mme Durand") -> Browser:
    """A signed-in teacher, signed up and verified through the real mail flow."""
    browser = Browser(classe)
    status, _ = await browser.call("POST", "/api/signup", {"email": email, "name": name, "password": PASSWORD})
    assert status == 202
    secret = await classe.mailbox.link(email)
    await browser.ok("POST", "/api/verify", {"token": secret})
    await browser.sign_in(email, PASSWORD)
    return browser


def code_of(classroom: dict[str, Any]) -> str:
    return str(classroom["link"].rsplit("/", 1)[1])
