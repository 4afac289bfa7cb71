"""Property test: an admin's hostile requests (path parameters, query strings and bodies of any
shape) on every route of the console get a clear 4xx, never a 5xx, on both databases. The routes
are read from the app: one added later is covered without touching this file."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.store import AccountRole

from .test_console import app_routes
from .test_hostile_http import bodies, hostile_text
from .test_hostile_inputs import ThreadedServer
from .web import PASSWORD

QUERY_KEYS = ["state", "kind", "since", "until", "before", "q", "role"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    s = ThreadedServer.on(request.param, request, tmp_path_factory.mktemp("hostile-console"))
    s.run(s.services.accounts.create("admin@ac-lyon.fr", "Admin", PASSWORD, AccountRole.ADMIN, verified=True))
    s.run(s.services.accounts.create("prof@ac-lyon.fr", "Prof", PASSWORD, AccountRole.TEACHER, verified=True))
    s.request("GET", "/api/session", None)
    login = json.dumps({"email": "admin@ac-lyon.fr", "password": PASSWORD}).encode()
    assert s.request("POST", "/api/login", login)[0] == 200
    assert s.request("POST", "/api/reports", json.dumps({"text": "cible", "diagnostics": {}}).encode())[0] == 201
    yield s
    s.stop()


ROUTES = [route for route in app_routes() if route[1].startswith("/api/admin")]
queries = st.dictionaries(st.sampled_from(QUERY_KEYS), hostile_text, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, text=hostile_text, query=queries)
def test_hostile_admin_requests_never_get_a_server_error(
    server: ThreadedServer, route: tuple[str, str], body: bytes, text: str, query: dict[str, str]
) -> None:
    method, template = route
    parameter = urllib.parse.quote(text[:200], safe="")
    path = template.format(report_id=parameter, account_id=parameter, class_id=parameter)
    if query:
        path += "?" + urllib.parse.urlencode({k: v[:300] for k, v in query.items()})
    status, reply = server.request(method, path, None if method == "GET" else body)
    assert status < 500, reply
    if status >= 400:
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str) and reply.get("message")
    assert server.request("GET", "/api/admin/overview", None)[0] == 200  # still an admin, still answering
