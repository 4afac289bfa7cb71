"""Settings sources, and the plain HTTP endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.cli import _settings, parser
from signaling.config import Settings

from .conftest import RunningServer


def test_settings_from_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "classe.toml"
    config.write_text(
        "port = 9001\nmedia_port_min = 50000\nmedia_port_max = 50099\n"
        'ice_servers = [{urls = ["turn:turn.example.org"]}]\n'
    )
    monkeypatch.setenv("CLASSE_MEDIA_PORT_MAX", "50199")
    settings = Settings(config_file=config)
    assert (settings.port, settings.media_port_min, settings.media_port_max) == (9001, 50000, 50199)
    assert settings.ice_servers[0].urls == ["turn:turn.example.org"]


def test_defaults_contact_no_third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLASSE_CONFIG_FILE", raising=False)
    settings = Settings()
    assert settings.ice_servers == [] and settings.turn_urls == []
    assert settings.media_addresses == ["127.0.0.1"]


async def test_health_metrics_and_dev_tokens(classe: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{classe.url}/healthz") as r:
            assert r.status == 200 and (await r.json()) == {"status": "ok"}
        async with http.get(classe.metrics_url) as r:
            text = await r.text()
            assert 'classe_dropped_packets_total{reason="malformed_rtp"} 0.0' in text
            assert "classe_participants 0.0" in text
        for bad in ({}, {"class_id": "", "name": "x"}, {"class_id": "c", "name": "x", "role": "admin"}):
            async with http.post(f"{classe.url}/api/dev/token", json=bad) as r:
                assert r.status == 400
        async with http.post(f"{classe.url}/api/dev/token", data=b"\xff") as r:
            assert r.status == 400
        async with http.get(f"{classe.url}/") as r:
            assert r.status == 200 and "/static/js/pages/home.js" in await r.text()


def test_every_setting_is_a_flag_of_classe_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLASSE_CONFIG_FILE", raising=False)
    serve = parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    for name in Settings.model_fields:
        if name != "config_file":
            assert "--" + name.replace("_", "-") in flags, name
    config = tmp_path / "classe.toml"
    config.write_text('port = 9001\nteacher_domains = ["ac-paris.fr"]\n')
    args = parser().parse_args(
        [
            "serve",
            "--config",
            str(config),
            "--port",
            "9002",
            "--teacher-domains",
            '["ac-lyon.fr", "*.ac-lyon.fr"]',
            "--no-smtp-starttls",
            "--invitations-per-day",
            "20",
            "--institution-name",
            "Collège Jean Moulin",
        ]
    )
    settings = _settings(args)
    assert (settings.port, settings.teacher_domains) == (9002, ["ac-lyon.fr", "*.ac-lyon.fr"])
    assert (settings.smtp_starttls, settings.invitations_per_day) == (False, 20)
    assert settings.institution_name == "Collège Jean Moulin" and settings.dev_mode is False
    with pytest.raises(SystemExit, match="teacher_domains"):
        _settings(parser().parse_args(["serve", "--teacher-domains", '["ac-*.fr"]']))


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"turn_urls": ["turn:turn.example.org:443?transport=tcp"]}, "turn_secret"),
        ({"turn_urls": ["https://turn.example.org"], "turn_secret": "s"}, "not a turn"),
        ({"turn_urls": ["turns:turn.example.org:443?transport=tcp"], "turn_secret": "s"}, None),
        ({"media_addresses": ["0.0.0.0"]}, "media_announced_address"),  # a candidate nobody can reach
        ({"media_addresses": ["0.0.0.0"], "media_announced_address": "203.0.113.7"}, None),
    ],
)
def test_network_settings_are_checked_at_start(fields: dict[str, Any], refused: str | None) -> None:
    if refused is None:
        Settings(**fields)
    else:
        with pytest.raises(ValueError, match=refused):
            Settings(**fields)
