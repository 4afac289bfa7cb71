"""Property tests: hostile HTTP requests and signaling messages get clear errors, never a crash or a change."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from signaling.accounts import AccountError
from signaling.api.context import SERVICES, Services
from signaling.app import SERVER, create_app
from signaling.config import Settings
from signaling.protocol import MODERATION_ACTIONS, SOURCES
from signaling.server import ClassServer
from signaling.store import AccountRole
from signaling.store.models import Base

from .conftest import Postgres, free_port, free_udp_port
from .test_signaling import json_values
from .web import PASSWORD


class ThreadedServer:
    """A real server on its own event loop in a thread, so that hypothesis can drive it example by example."""

    @classmethod
    def on(cls, database: str, request: pytest.FixtureRequest, folder: Path) -> ThreadedServer:
        """On SQLite in `folder`, or on a fresh database of the session's PostgreSQL."""
        url = None
        if database == "postgresql":
            pg: Postgres = request.getfixturevalue("postgres")
            url = pg.create_database()
        return cls(folder, url)

    def __init__(self, data_dir: Path, database_url: str | None = None) -> None:
        self.settings = Settings(
            port=free_port(),
            data_dir=data_dir,
            database_url=database_url,
            dev_mode=True,
            media_port=free_udp_port(),  # not the default 40000, which another server may hold
            media_port_min=43000,
            media_port_max=43999,
        )
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.started.wait(30)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.class_id = self.code = ""  # the class a signed-in teacher opened to aim at (open_class)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = create_app(self.settings)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.settings.port).start())
        self.services: Services = app[SERVICES]
        self.server: ClassServer = app[SERVER]
        self.started.set()
        self.loop.run_forever()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def request(self, method: str, path: str, data: bytes | None) -> tuple[int, Any]:
        csrf = next((c.value for c in self.cookies if c.name == "classe_csrf"), "")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def open_class(self, access: str) -> None:
        """Sign the (existing) teacher prof@ac-lyon.fr in and create a class for the routes to aim at."""
        self.request("GET", "/api/session", None)
        login = json.dumps({"email": "prof@ac-lyon.fr", "password": PASSWORD}).encode()
        assert self.request("POST", "/api/login", login)[0] == 200
        body = json.dumps({"title": "Cible", "access": access}).encode()
        status, classroom = self.request("POST", "/api/classes", body)
        assert status == 201
        self.class_id = classroom["id"]
        self.code = classroom["link"].rsplit("/", 1)[1]

    def counts(self) -> dict[str, int]:
        async def count() -> dict[str, int]:
            async with self.services.db.sessions() as tx:
                return {
                    t.name: int(await tx.scalar(select(func.count()).select_from(t)) or 0)
                    for t in Base.metadata.sorted_tables
                }

        return dict(self.run(count()))

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    s = ThreadedServer(tmp_path_factory.mktemp("hostile"))

    async def seed() -> str:
        accounts = s.services.accounts
        await accounts.create("prof@ac-lyon.fr", "Prof", PASSWORD, AccountRole.TEACHER, verified=True)
        try:
            await accounts.create("prof@ac-lyon.fr", "Prof", PASSWORD, AccountRole.TEACHER, verified=True)
        except AccountError:
            pass
        return "ok"

    s.run(seed())
    s.open_class("account")
    yield s
    s.stop()


ROUTES = [
    ("POST", "/api/signup"),
    ("POST", "/api/verify"),
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
    ("DELETE", "/api/classes/{text}"),
    ("POST", "/api/classes/{text}/link"),
]
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            [
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
                "starts_at",
                "duration_minutes",
                "co_teachers",
                "lobby",
            ]
        ),
        json_values,
        max_size=5,
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, text=st.text(min_size=1, max_size=40))
def test_hostile_http_requests_get_clear_errors_and_change_nothing(
    server: ThreadedServer, route: tuple[str, str], body: bytes, text: str
) -> None:
    method, template = route
    path = template.format(class_id=server.class_id, text=urllib.request.quote(text, safe=""))
    before = server.counts()
    status, reply = server.request(method, path, body)
    assert status < 500, reply
    if status >= 400:
        assert isinstance(reply, dict) and isinstance(reply.get("error"), str) and reply.get("message")
        assert server.counts() == before
    server.services.limits.class_links.local._buckets.clear()  # keep exercising the handlers, not only the limiter
    server.services.limits.mail_links.local._buckets.clear()
    server.services.limits.mail.local._buckets.clear()
    server.services.limits.reports.local._buckets.clear()
    assert server.request("GET", f"/api/classes/{server.class_id}", None)[0] == 200


messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["chat", "hand", "media", "moderate", "publish", "unpublish", "subscribe_answer", "join", "view"]
        )
    },
    optional={
        "id": st.integers(0, 99),
        "text": json_values,
        "raised": json_values,
        "source": st.sampled_from(["microphone", "camera"]) | json_values,
        "enabled": json_values,
        "action": st.sampled_from(MODERATION_ACTIONS) | json_values,
        "participant_id": json_values,
        "all": st.booleans(),
        "value": json_values,
        "locks": st.dictionaries(st.sampled_from(["microphone", "camera", "screen", "chat"]), json_values)
        | json_values,
        "sdp": json_values,
        "mid": json_values,
        "tracks": json_values,
        "token": json_values,
        "tiles": st.lists(
            st.fixed_dictionaries(
                {"track_id": st.text(max_size=8) | json_values, "width": st.integers(-5, 20000) | json_values},
                optional={"height": st.integers(-5, 20000) | json_values},
            )
            | json_values,
            max_size=70,
        )
        | json_values,
        "pinned": json_values,
        "audio_only": json_values,
    },
)


def snapshot(server: ThreadedServer) -> Any:
    room = server.server.rooms.get("dev:fuzz")
    if room is None:
        return None
    return (
        sorted(room.participants),
        room.state.locked,
        room.state.lobby,
        sorted(room.state.locks),
        sorted(room.state.banned),
        len(room.state.chat),
        sorted((p.id, p.hand, tuple(p.enabled.items())) for p in room.participants.values()),
    )


async def exchange(url: str, role: str, message: dict[str, Any]) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/dev/token", json={"class_id": "fuzz", "name": role, "role": role}) as r:
            token = (await r.json())["token"]
        async with http.ws_connect(f"{url}/ws") as ws:
            await ws.send_json({"type": "join", "protocol": 1, "token": token})
            joined = await ws.receive_json(timeout=10)
            assert joined["type"] == "joined", joined
            await ws.send_json(message)
            await ws.send_json({"type": "ping", "id": "end"})
            replies = []
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:  # closed after a fatal error
                    assert replies and replies[-1].get("fatal") is True, replies
                    return replies
                reply = json.loads(msg.data)
                if reply["type"] == "pong" and reply.get("ref") == "end":
                    return replies
                if reply["type"] not in ("videos", "speakers"):  # what the page receives, told when it changes
                    replies.append(reply)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages, role=st.sampled_from(["student", "teacher"]))
def test_hostile_signaling_messages_get_clear_errors_and_change_nothing(
    server: ThreadedServer, message: dict[str, Any], role: str
) -> None:
    before = server.run(_snapshot(server))
    replies = asyncio.run(exchange(server.url, role, message))
    errors = [r for r in replies if r["type"] == "error"]
    assert all(e["code"] != "internal_error" for e in errors), errors
    if errors:
        assert all(isinstance(e["message"], str) and e["message"] for e in errors)
        if role == "student":
            # The connection under test has left again: what remains must be exactly as before.
            assert server.run(_settled(server, before)) == before
    server.run(_reset(server))


async def hostile_views(url: str) -> list[dict[str, Any]]:
    """A student's page sends views that are huge, malformed, about unknown tracks, and a flood."""
    tile = {"track_id": "x" * 128, "width": 16384, "height": 16384}
    unknown = [{**tile, "track_id": f"{i:03}" + "y" * 125} for i in range(64)]
    frames: list[Any] = [
        {"type": "view", "tiles": unknown, "pinned": "z" * 128, "audio_only": False},  # all unknown: accepted
        {"type": "view", "tiles": [tile] * 65},  # one tile too many
        {"type": "view", "tiles": [{**tile, "width": 16385}]},
        {"type": "view", "tiles": [{**tile, "track_id": ""}]},
        {"type": "view", "tiles": [{**tile, "height": None}]},
        {"type": "view", "tiles": [[tile]]},
        {"type": "view", "tiles": {"a": tile}},
        {"type": "view", "tiles": [], "pinned": {"id": 1}},
        {"type": "view", "tiles": [], "audio_only": 1},
        {"type": "view", "tiles": [tile] * 600},  # over 64 KiB
        *({"type": "view", "id": n, "tiles": [], "pinned": None, "audio_only": n % 2 == 0} for n in range(30)),
    ]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/dev/token", json={"class_id": "fuzz", "name": "v", "role": "student"}) as r:
            token = (await r.json())["token"]
        async with http.ws_connect(f"{url}/ws") as ws:
            await ws.send_json({"type": "join", "protocol": 1, "token": token})
            assert (await ws.receive_json(timeout=10))["type"] == "joined"
            for frame in frames:
                await ws.send_json(frame)
            await ws.send_json({"type": "ping", "id": "end"})
            replies = []
            while True:
                reply = await ws.receive_json(timeout=10)  # never closed: no error here is fatal
                if reply["type"] == "pong" and reply.get("ref") == "end":
                    return replies
                replies.append(reply)


def test_hostile_views_get_clear_errors_and_a_flood_is_rate_limited(server: ThreadedServer) -> None:
    replies = asyncio.run(hostile_views(server.url))
    errors = [r for r in replies if r["type"] == "error"]
    assert all(e.get("fatal") is None for e in errors), errors
    assert [e["code"] for e in errors[:9]] == ["bad_message"] * 9
    limited = [e["ref"] for e in errors[9:]]
    assert all(e["code"] == "rate_limited" for e in errors[9:])
    assert limited == list(range(9, 30))  # the first view and 9 of the flood fit the budget of 10
    # Nothing the page names exists: it receives nothing, and is told so once (after joining).
    assert [r for r in replies if r["type"] == "videos"] == [{"type": "videos", "receiving": []}]
    server.run(_reset(server))


async def _snapshot(server: ThreadedServer) -> Any:
    return snapshot(server)


async def _settled(server: ThreadedServer, expected: Any) -> Any:
    """The state once the closed connection's cleanup has run (it may take a few loop turns)."""
    for _ in range(60):
        if snapshot(server) == expected:
            break
        await asyncio.sleep(0.05)
    return snapshot(server)


async def _reset(server: ThreadedServer) -> None:
    """Examples are independent: forget the fuzz class between them."""
    await server.server.end("dev:fuzz")


# An offer as aiortc writes it (audio mid 0, VP8 with RTX mid 1), to cut up and spoil.
OFFER = """v=0
o=- 3913737837 3913737837 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=mid:0
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc:1001 cname:x
a=rtpmap:96 opus/48000/2
a=ice-ufrag:ROzk
a=ice-pwd:LH2g9ACrTkU00hZWNKOHCU
a=fingerprint:sha-256 3E:A3:81:4A:CE:B8:12:71:98:D4:2E:71:B1:C9:96:D5:80:CC:D0:3B:3A:91:77:54:03:22:89:24:03:66:3A:20
a=setup:actpass
m=video 9 UDP/TLS/RTP/SAVPF 97 98
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=mid:1
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:x
a=ssrc:2002 cname:x
a=rtpmap:97 VP8/90000
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtpmap:98 rtx/90000
a=fmtp:98 apt=97
a=ice-ufrag:ROzk
a=ice-pwd:LH2g9ACrTkU00hZWNKOHCU
a=fingerprint:sha-256 3E:A3:81:4A:CE:B8:12:71:98:D4:2E:71:B1:C9:96:D5:80:CC:D0:3B:3A:91:77:54:03:22:89:24:03:66:3A:20
a=setup:actpass
""".splitlines()
HOSTILE_SDP_LINES = [
    "m=audio",
    "m=video",
    "m=audio 9",
    "m=audio 9 UDP/TLS/RTP/SAVPF",
    "m=audio 9 UDP/TLS/RTP/SAVPF 300",
    "m=video 9 UDP/TLS/RTP/SAVPF -1",
    "m=audio x UDP/TLS/RTP/SAVPF 96",
    "m=audio 99999 UDP/TLS/RTP/SAVPF 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=rtpmap:300 opus/48000/2",
    "a=rtpmap:96",
    "a=rtpmap:97 VP8",
    "a=rtpmap:96 opus/x/2",
    "a=fmtp:98 apt=300",
    "a=rtcp-fb:300 nack",
    "a=mid:",
    "a=mid:0",
    "a=group:BUNDLE 0 1 2",
    "a=ssrc:x cname:y",
    "a=ssrc-group:FID 1",
    "a=extmap:300 urn:x",
    "a=extmap:1",
    "a=fingerprint:sha-256 00",
    "a=fingerprint:",
    "a=setup:none",
    "a=candidate:x",
    "a=candidate:1 1 udp 1 127.0.0.1 x typ host",
    "a=inactive",
    "a=ice-ufrag:",
    "c=IN IP4",
    "a=rtcp:x",
]
spoiled_offers = st.one_of(
    st.lists(st.sampled_from(OFFER + HOSTILE_SDP_LINES), min_size=1, max_size=40),
    st.tuples(st.integers(0, len(OFFER) - 1), st.sampled_from(HOSTILE_SDP_LINES)).map(
        lambda change: [*OFFER[: change[0]], change[1], *OFFER[change[0] + 1 :]]
    ),
    st.tuples(st.integers(0, len(OFFER) - 1), st.sampled_from(HOSTILE_SDP_LINES)).map(
        lambda change: [*OFFER[: change[0]], change[1], *OFFER[change[0] :]]
    ),
).map(lambda lines: "\r\n".join(lines) + "\r\n")
announced_tracks = st.lists(
    st.fixed_dictionaries({"mid": st.sampled_from(["0", "1", "2"]), "source": st.sampled_from(SOURCES)}), max_size=3
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sdp=spoiled_offers, tracks=announced_tracks)
@example(sdp="v=0\r\ns=-\r\nt=0 0\r\nm=audio\r\na=mid:0\r\n", tracks=[{"mid": "0", "source": "microphone"}])
@example(
    sdp="\r\n".join(OFFER).replace("SAVPF 96", "SAVPF 300").replace("rtpmap:96", "rtpmap:300"),
    tracks=[{"mid": "0", "source": "microphone"}],
)
def test_malformed_sdp_is_bad_sdp_never_an_internal_error(
    server: ThreadedServer, sdp: str, tracks: list[dict[str, str]]
) -> None:
    replies = asyncio.run(exchange(server.url, "student", {"type": "publish", "id": 1, "sdp": sdp, "tracks": tracks}))
    errors = [r for r in replies if r["type"] == "error"]
    # `locked`: a student announcing a screen share is refused before the offer is read.
    assert all(e["code"] in ("bad_sdp", "bad_message", "too_many_tracks", "locked") for e in errors), errors
    assert replies and replies[0]["type"] in ("publish_answer", "error"), replies
    server.run(_reset(server))
