"""The deployment files in deploy/ are what runs: systemd accepts the unit without a warning, Caddy
and nginx accept their configurations, nginx as configured carries a whole join (the API and the
signaling WebSocket over TLS) to one real server and to the right one of two nodes, and the
compose file names only real settings and files. (coturn runs from deploy/turnserver.conf in every
TURN test: tests/coturn.py.)"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from signaling.config import Settings

from .conftest import Mailbox, RunningServer, free_port, running_server
from .coturn import self_signed
from .redis_server import RedisServer, nodes_calm
from .test_access import new_class
from .web import code_of, teacher

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NO_VERIFY = ssl.create_default_context()
NO_VERIFY.check_hostname = False
NO_VERIFY.verify_mode = ssl.CERT_NONE


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} is not installed: `./dev test` installs it (apt-get install {name})")
    return found


def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    # Only the installation path differs: systemd checks that the command exists.
    classe = Path(sys.executable).parent / "classe"  # the entry point installed beside this Python
    assert classe.is_file()
    unit = tmp_path / "classe.service"
    unit.write_text((DEPLOY / "classe.service").read_text().replace("/opt/classe/bin/classe", str(classe)))
    result = subprocess.run([tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_caddy_accepts_its_configuration(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "127.0.0.1")
    text = (DEPLOY / "Caddyfile").read_text()
    text = text.replace("/etc/ssl/classe/fullchain.pem", str(cert)).replace("/etc/ssl/classe/privkey.pem", str(key))
    (tmp_path / "Caddyfile").write_text(text)
    result = subprocess.run(
        [tool("caddy"), "validate", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    assert result.returncode == 0 and "Valid configuration" in result.stdout + result.stderr, result.stderr


@contextmanager
def nginx(folder: Path, site: str, upstreams: dict[str, int], port: int = 0) -> Iterator[int]:
    """nginx running deploy/<site> with this test's certificate, ports and upstreams: its HTTPS port."""
    cert, key = self_signed(folder, "127.0.0.1")
    port, plain = port or free_port(), free_port()
    text = (DEPLOY / site).read_text()
    for path in re.findall(r"ssl_certificate (\S+);", text):
        text = text.replace(path, str(cert))
    for path in re.findall(r"ssl_certificate_key (\S+);", text):
        text = text.replace(path, str(key))
    text = re.sub(r"listen 443 ssl", f"listen 127.0.0.1:{port} ssl", text)
    text = re.sub(r"listen 80;", f"listen 127.0.0.1:{plain};", text)
    for old, new in upstreams.items():
        assert old in text, f"{site} has no {old}"
        text = text.replace(old, f"127.0.0.1:{new}")
    (folder / "site.conf").write_text(text)
    (folder / "nginx.conf").write_text(
        f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {folder}; proxy_temp_path {folder};\n"
        f"include {folder}/site.conf;\n}}\n"
    )
    binary = tool("nginx")
    check = subprocess.run([binary, "-t", "-c", str(folder / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, "-c", str(folder / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True, text=True).stdout.count("\n") < 2:
            assert process.poll() is None and time.monotonic() < deadline, (folder / "error.log").read_text()
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def join_through(proxy: str, code: str) -> dict[str, Any]:
    """A pupil's page behind the proxy: its session, `POST /api/join`, and the WebSocket named; the
    server's answer to `join` (the class not opened yet: `waiting`)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{proxy}/api/session", ssl=NO_VERIFY) as r:
            csrf = (await r.json())["csrf"]
        form = {"code": code, "name": "Inès"}
        async with http.post(f"{proxy}/api/join", json=form, headers={"X-CSRF-Token": csrf}, ssl=NO_VERIFY) as r:
            assert r.status == 200, await r.text()
            grant = await r.json()
        ws_url = grant["ws_url"] or proxy.replace("https://", "wss://") + "/ws"
        async with http.ws_connect(ws_url, ssl=NO_VERIFY) as ws:
            await ws.send_json({"type": "join", "protocol": 1, "token": grant["token"]})
            while True:
                message = await ws.receive_json(timeout=10)
                if message["type"] in ("joined", "waiting", "error"):
                    return {"ws_url": ws_url, **message}


@pytest.mark.parametrize("settings_overrides", [{"trust_forwarded_for": True}])
async def test_a_pupil_joins_through_nginx_as_configured(classe: RunningServer, tmp_path: Path) -> None:
    async with await teacher(classe) as t:
        code = code_of(await new_class(t, lobby=False))
    with nginx(tmp_path, "nginx.conf", {"127.0.0.1:8080": classe.settings.port}) as port:
        joined = await join_through(f"https://127.0.0.1:{port}", code)
    assert joined["type"] == "waiting" and joined["reason"] == "not_started", joined


async def test_nginx_sends_each_pupil_to_the_node_hosting_the_class(
    tmp_path: Path, mailbox: Mailbox, database_url: str, redis_server: RedisServer
) -> None:
    proxy_port = free_port()
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("classe-1", "classe-2"):
            (tmp_path / name).mkdir()
            overrides = {
                "redis_url": redis_server.url,
                "token_secret": "a-token-secret-for-the-proxy-test",
                "node_id": name,
                "node_url": f"https://127.0.0.1:{proxy_port}/node/{name}",
                "trust_forwarded_for": True,
            }
            node = running_server(tmp_path / name, mailbox, database_url, overrides)
            nodes.append(await stack.enter_async_context(node))
        async with await teacher(nodes[0]) as t:
            codes = [code_of(await new_class(t, lobby=False, title=f"Classe {i}")) for i in range(2)]
        upstreams = {"127.0.0.1:8081": nodes[0].settings.port, "127.0.0.1:8082": nodes[1].settings.port}
        (tmp_path / "nginx").mkdir()
        with nginx(tmp_path / "nginx", "nginx-nodes.conf", upstreams, port=proxy_port):
            proxy = f"https://127.0.0.1:{proxy_port}"
            await nodes_calm(redis_server.url, 2)  # a node busy on CPU would be passed over
            first = await join_through(proxy, codes[0])
            await nodes_calm(redis_server.url, 2)
            second = await join_through(proxy, codes[1])
    # Each class on its node (the second went to the idle one), each WebSocket through its path.
    assert first["type"] == second["type"] == "waiting", (first, second)
    assert {first["ws_url"], second["ws_url"]} == {
        f"wss://127.0.0.1:{proxy_port}/node/classe-1/ws",
        f"wss://127.0.0.1:{proxy_port}/node/classe-2/ws",
    }


def test_the_compose_file_names_real_settings_and_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("classe-")}
    assert len(nodes) == 2
    sites = (DEPLOY / "nginx-nodes.conf").read_text()
    for name, service in nodes.items():
        env = service["environment"]
        for key in env:
            assert key.startswith("CLASSE_") and key[7:].lower() in Settings.model_fields, key
        assert env["CLASSE_NODE_ID"] == name and env["CLASSE_NODE_URL"].endswith(f"/node/{name}")
        assert f"location /node/{name}/ {{ proxy_pass http://127.0.0.1:{env['CLASSE_PORT']}/; }}" in sites
    # On the host's network, the two nodes must not claim the same port (each defaults to the same).
    for key in ("CLASSE_PORT", "CLASSE_MEDIA_PORT", "CLASSE_METRICS_PORT"):
        assert len({service["environment"].get(key) for service in nodes.values()} - {None}) == 2, key
    entry = " ".join(nodes["classe-1"]["entrypoint"])
    for key in re.findall(r"(CLASSE_\w+)=", entry):
        assert key[7:].lower() in Settings.model_fields, key
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and source != "./tls":
                assert (DEPLOY / source).is_file(), source
    assert (DEPLOY / compose["services"]["classe-1"]["build"]).resolve() == DEPLOY.parent
