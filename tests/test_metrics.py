"""/metrics: who may read it (the metrics listener; on the main port only with the bearer token),
the catalogue in docs/operations.md against what a running server exposes, the Grafana dashboard's
queries against the same, and HTTP labels that stay bounded whatever paths clients ask for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import RunningServer
from .peers import Peer

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "classe.json"
TOKEN = "a-metrics-token-for-the-tests"
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


async def get(url: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


def exposed(text: str) -> dict[str, str]:
    """Every metric family of an exposition, by name (as written: counters end in _total), with its type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def catalogue() -> dict[str, str]:
    """The metrics catalogue of docs/operations.md: name -> type."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### Metrics catalogue", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(classe_\w+)` \| (\w+) \|", section, re.M))


async def test_metrics_are_served_on_their_own_listener_and_not_on_the_main_port(classe: RunningServer) -> None:
    status, text, _ = await get(classe.metrics_url)
    assert status == 200 and "classe_live_classes 0.0" in text
    status, text, _ = await get(f"{classe.url}/metrics")
    assert status == 404 and "classe_" not in text
    status, text, _ = await get(f"{classe.url}/metrics", "any-token-at-all-here")
    assert status == 404 and "classe_" not in text


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": TOKEN}])
async def test_with_a_token_metrics_are_served_to_its_bearer_only(classe: RunningServer) -> None:
    for url in (f"{classe.url}/metrics", classe.metrics_url):
        for token in (None, "wrong-token-of-some-length", TOKEN[:-1], TOKEN + "x"):
            status, text, headers = await get(url, token)
            assert status == 401 and "classe_" not in text, (url, token)
            assert headers["WWW-Authenticate"].startswith("Bearer")
        status, text, _ = await get(url, TOKEN)
        assert status == 200 and "classe_live_classes 0.0" in text


def test_a_short_token_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from signaling.config import Settings

    with pytest.raises(ValidationError, match="metrics_token"):
        Settings(metrics_token="short")


async def test_the_catalogue_in_the_docs_lists_what_the_server_exposes(classe: RunningServer) -> None:
    peer = Peer(classe.url, "catalogue", "Prof", role="teacher")
    try:
        await peer.join()  # a live class: every family has its samples, none is missed
        _, text, _ = await get(classe.metrics_url)
    finally:
        await peer.close()
    documented, served = catalogue(), exposed(text)
    assert len(documented) > 40
    assert sorted(documented.keys() - served.keys()) == [], "documented, not served"
    assert sorted(served.keys() - documented.keys()) == [], "served, not documented"
    assert documented == served, "types differ"


def queries(node: Any) -> list[str]:
    """Every PromQL expression of a Grafana dashboard (panels' targets, and template variables)."""
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        if isinstance(node.get("query"), str) and "classe_" in node["query"]:
            found.append(node["query"])
        return found + [q for value in node.values() for q in queries(value)]
    if isinstance(node, list):
        return [q for value in node for q in queries(value)]
    return []


async def test_every_metric_the_dashboard_uses_is_exposed(classe: RunningServer) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["panels"] and dashboard["uid"]
    _, text, _ = await get(classe.metrics_url)
    served = exposed(text)
    names = set(served)
    names |= {name + suffix for name, kind in served.items() if kind == "histogram" for suffix in HISTOGRAM_SERIES}
    used = {name for query in queries(dashboard) for name in re.findall(r"\bclasse_\w+", query)}
    assert len(used) >= 15
    assert sorted(used - names) == []
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    assert all(p.get("targets") for p in panels), [p["title"] for p in panels if not p.get("targets")]
    wanted = ("join", "refus", "live classes", "participants", "packets", "drop", "ice", "http", "shed", "nodes")
    titles = " ".join(p["title"].lower() for p in panels)
    assert all(word in titles for word in wanted), titles


async def test_http_requests_are_counted_by_route_pattern_never_by_path(classe: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/c/a-secret-class-code", "/no/such/page-3f9a", "/static/../../etc/passwd", "/api/classes"):
            async with http.get(classe.url + path) as response:
                await response.read()
        async with http.request("PROPFIND", classe.url + "/api/join") as response:  # a method no route takes
            await response.read()
    _, text, _ = await get(classe.metrics_url)
    requests = [line for line in text.splitlines() if line.startswith("classe_http_requests_total{")]
    assert 'classe_http_requests_total{method="GET",route="/c/{code}",status="200"} 1.0' in requests
    assert 'classe_http_requests_total{method="GET",route="/api/classes",status="401"} 1.0' in requests
    assert any('route="unmatched",status="404"' in line for line in requests)
    assert any('method="other"' in line for line in requests)
    assert not any(secret in text for secret in ("a-secret-class-code", "page-3f9a", "passwd", "PROPFIND"))
