"""Where /metrics is served, and to whom; and the HTTP requests it counts.

The metrics tell who uses the service and how (classes by id, load, failures): not for anyone on
the Internet. They are served on a listener of their own (`metrics_host`:`metrics_port`, loopback
by default), which the reverse proxy does not forward to. On the main port, /metrics answers 404
unless `metrics_token` is set, and then only to `Authorization: Bearer <metrics_token>`: for a
Prometheus that can only reach the public port. Once a token is set, the metrics listener asks
for it too.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .config import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Requests by (route pattern, method, status): a route's pattern, never the path (it may hold a
# class link, and a scanner's paths would make a label without bound).
Requests = Counter[tuple[str, str, str]]
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: 404, or 405 for a method the route does not take


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def counting(requests: Requests) -> Middleware:
    """Middleware, outermost: every answer by route, method and status (a WebSocket is counted
    when it closes, with its 101)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method if request.method in METHODS else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            requests[route_of(request), method, str(exc.status)] += 1
            raise
        except Exception:
            requests[route_of(request), method, "500"] += 1
            raise
        requests[route_of(request), method, str(response.status)] += 1
        return response

    return count


def _exposition(registry: CollectorRegistry) -> web.Response:
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    # aiohttp decodes headers with surrogateescape: bytes that are not UTF-8 come back as they came.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode())


def _unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text="metrics: Authorization: Bearer <metrics_token> required\n",
        headers={"WWW-Authenticate": 'Bearer realm="classe-metrics"'},
    )


def metrics_handler(registry: CollectorRegistry, token: str | None, open_without_token: bool) -> Handler:
    """/metrics: with a token, for whoever gives it; without, on the metrics listener only (404
    on the main port, as if there were no such page)."""

    async def metrics(request: web.Request) -> web.Response:
        if token is None:
            if not open_without_token:
                raise web.HTTPNotFound()
        elif not _authorized(request, token):
            raise _unauthorized()
        return _exposition(registry)

    return metrics


async def open_listener(registry: CollectorRegistry, settings: Settings) -> web.AppRunner | None:
    """The metrics listener (`metrics_port`, 0: none). A port already in use stops the start,
    as the main port does."""
    if not settings.metrics_port:
        return None
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry, settings.metrics_token, open_without_token=True))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(
            f"classe: metrics_port {settings.metrics_port}: {exc.strerror} (set metrics_port, or 0 for none)"
        ) from None
    return runner
