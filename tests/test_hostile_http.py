"""Property test: hostile bodies and paths on every HTTP route get a clear 4xx, never a 5xx, on both databases.

Deep JSON, NUL characters (PostgreSQL refuses them in text), dates at the ends of the calendar,
CR/LF, huge strings and numbers: each once answered 500 with a traceback, anonymous routes included.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.store import AccountRole

from .test_hostile_inputs import ThreadedServer
from .web import PASSWORD


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    s = ThreadedServer.on(request.param, request, tmp_path_factory.mktemp("hostile-http"))
    s.run(s.services.accounts.create("prof@ac-lyon.fr", "Prof", PASSWORD, AccountRole.TEACHER, verified=True))
    s.open_class("link")
    yield s
    s.stop()


ROUTES = [
    ("POST", "/api/signup"),
    ("POST", "/api/verify"),
    ("POST", "/api/login"),
    ("POST", "/api/password/forgot"),
    ("POST", "/api/password/reset"),
    ("POST", "/api/invitation"),
    ("POST", "/api/classes"),
    ("PUT", "/api/classes/{class_id}"),
    ("PUT", "/api/classes/{class_id}/roster"),
    ("POST", "/api/join"),
    ("POST", "/api/reports"),
    ("DELETE", "/api/account"),
    ("GET", "/api/join/{text}"),
    ("GET", "/api/classes/{text}"),
    ("PUT", "/api/classes/{text}/roster"),
    ("POST", "/api/classes/{text}/link"),
]
FIELDS = [
    "email",
    "name",
    "password",
    "token",
    "title",
    "access",
    "emails",
    "code",
    "text",
    "diagnostics",
    "class_id",
    "starts_at",
    "duration_minutes",
    "co_teachers",
    "lobby",
]
DATES = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999",
    "1970-01-01T00:00:00Z",
    "2026-11-23T08:00:00+01:00",
    "-000001-01-01T00:00:00",
    "275760-09-13T00:00:00Z",
    "2026-02-30T00:00:00",
]
hostile_text = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.text(alphabet="\x00\r\n\t\u202e\u2066\ufeffa@é.", max_size=30),
    st.sampled_from(["prof@ac-lyon.fr\x00", "a\r\nBcc: x@example.org", "x@example.org\n", "Cible\x00"]),
    st.integers(1, 60_000).map(lambda n: "x" * n),
    st.sampled_from(DATES),
)
scalars = st.one_of(
    hostile_text,
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(hostile_text, c, max_size=3), max_leaves=8
)


def deep(depth: int) -> bytes:
    return b'{"title": ' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"title": hostile_text, "access": st.sampled_from(["link", "account"]), "starts_at": st.sampled_from(DATES)}
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"emails": st.lists(hostile_text, max_size=5)}).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([40, 1_000, 20_000]).map(deep),
    st.sampled_from([b"[" * 20_000, b'{"a":' * 20_000, b'"\\u0000"', b"9" * 5_000, b"\xff\xfe", b""]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, text=hostile_text)
def test_hostile_bodies_and_paths_never_get_a_server_error(
    server: ThreadedServer, route: tuple[str, str], body: bytes, text: str
) -> None:
    method, template = route
    path = template.format(class_id=server.class_id, text=urllib.request.quote(text[:200], safe=""))
    status, reply = server.request(method, path, body)
    assert status < 500, reply
    if status >= 400:
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str) and reply.get("message")
    for limit in fields(server.services.limits):  # keep exercising the handlers, not only the rate limiter
        getattr(server.services.limits, limit.name).local._buckets.clear()
    assert server.request("GET", f"/api/join/{server.code}", None)[0] == 200
