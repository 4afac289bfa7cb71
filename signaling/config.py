"""Server settings: embedded defaults, overridden by a TOML file, then by CLASSE_* variables."""

from __future__ import annotations

import re
import secrets
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class IceServer(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


# The academies' and overseas vice-rectorats' mail domains, and the ministry's: listed one by one,
# because a pattern such as "ac-*.fr" would also admit ac-anything.fr, which anyone may register.
ACADEMIC_DOMAINS = (
    "ac-aix-marseille.fr",
    "ac-amiens.fr",
    "ac-besancon.fr",
    "ac-bordeaux.fr",
    "ac-clermont.fr",
    "ac-corse.fr",
    "ac-creteil.fr",
    "ac-dijon.fr",
    "ac-grenoble.fr",
    "ac-guadeloupe.fr",
    "ac-guyane.fr",
    "ac-lille.fr",
    "ac-limoges.fr",
    "ac-lyon.fr",
    "ac-martinique.fr",
    "ac-mayotte.fr",
    "ac-montpellier.fr",
    "ac-nancy-metz.fr",
    "ac-nantes.fr",
    "ac-nice.fr",
    "ac-normandie.fr",
    "ac-orleans-tours.fr",
    "ac-paris.fr",
    "ac-poitiers.fr",
    "ac-reims.fr",
    "ac-rennes.fr",
    "ac-reunion.fr",
    "ac-strasbourg.fr",
    "ac-toulouse.fr",
    "ac-versailles.fr",
    "ac-noumea.nc",
    "ac-polynesie.pf",
    "ac-wf.wf",
    "education.gouv.fr",
)
_DOMAIN_ENTRY = re.compile(r"^(\*\.)?[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# A node's URL: http(s), a host (a name, IPv4 or [IPv6]), maybe a port and a path; no query, no
# fragment, nothing that could end a Content-Security-Policy source (it is written into one).
NODE_URL = re.compile(r"^https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?$")
# Bounded: every page's Content-Security-Policy names each node's origin.
MAX_NODE_URL = 200
MAX_WELCOME_MESSAGE = 1000


def teacher_domain_entries(value: list[str]) -> list[str]:
    """The allow-list as it is matched: lower-case, exact domains or "*." and a domain. The old shell
    patterns ("ac-*.fr") are refused rather than silently matching nothing, or too much."""
    entries = [entry.strip().lower() for entry in value]
    for entry in entries:
        if not _DOMAIN_ENTRY.match(entry) or ".." in entry or "." not in entry.removeprefix("*."):
            raise ValueError(f"teacher_domains: {entry[:80]!r} is not a domain (or '*.' and a domain)")
    return entries


def _generated_node_id() -> str:
    """Stable for the life of the process: the machine's name (readable in metrics) and a random part."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40].strip(".-") or "node"
    return f"{host}-{secrets.token_hex(3)}"


class Settings(BaseSettings):
    """Everything an operator can set. Nothing here points outside the machine by default."""

    model_config = SettingsConfigDict(env_prefix="CLASSE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8080
    # Media: the addresses to gather ICE host candidates on, and the UDP port to open in a firewall:
    # one port shared by every participant, or, with media_port = 0, a range in which each peer
    # connection binds a port of its own (two per participant).
    media_addresses: list[str] = ["127.0.0.1"]
    media_port: int = Field(default=40000, ge=0, le=65535)
    media_port_min: int = 40000
    media_port_max: int = 40999
    media_announced_address: str | None = None
    # Past what the process can forward, shed media by priority (thumbnails first, never the
    # teacher's voice) rather than let every class's media queue: docs/operations.md, "Overload".
    shed_under_load: bool = True
    # STUN/TURN servers given to the server and to browsers: none by default (no third party).
    ice_servers: list[IceServer] = Field(default_factory=list)
    # A coturn server of the institution's, with short-lived credentials per participant (coturn's
    # use-auth-secret / static-auth-secret): its URLs (turn:host:3478?transport=udp,
    # turn:host:443?transport=tcp, turns:host:443?transport=tcp), the shared secret, and how long a
    # credential lasts. docs/operations.md, "Students behind firewalls".
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str | None = None
    turn_credential_seconds: int = Field(default=4 * 3600, gt=0)
    # Signs join tokens and derives participant ids. Generated per process by default; set it to
    # share tokens across processes (several nodes, with redis_url, refuse to start without it).
    token_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    token_ttl_seconds: int = 120
    # Dev mode lets anyone mint a join token at /api/dev/token, with no lobby: for load tests only.
    dev_mode: bool = False
    # Storage and mail. The embedded defaults keep everything under data_dir: an SQLite file, and an
    # outbox folder where mail is written instead of sent when no SMTP server is set.
    data_dir: Path = Path("data")
    database_url: str | None = None
    public_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False
    mail_from: str = "Classe <no-reply@localhost>"
    # Named in roster invitations, next to the teacher, so that families know who writes to them.
    institution_name: str | None = None
    # Roster mails (invitations and notices) one teacher may have sent in 24 hours: a roster is
    # not a mail relay.
    invitations_per_day: int = Field(default=300, ge=0)
    # Who may hold a teacher account: e-mail domains matched exactly; an entry "*.example.fr" admits
    # the sub-domains of example.fr (not example.fr itself). By default: the academies and the ministry.
    teacher_domains: list[str] = Field(default_factory=lambda: list(ACADEMIC_DOMAINS))
    # Shown on the home and sign-in pages (plain text): none by default. It and teacher_domains can
    # be changed live from the administration console, for every node; these are the defaults.
    welcome_message: str | None = None
    # Retention (GDPR): what is deleted, after how long.
    account_retention_days: int = 365
    unverified_account_days: int = 7
    invitation_days: int = 30
    class_link_days: int = 365
    report_retention_days: int = 90
    # The console's audit log (who did what to which account, report or class, and when).
    audit_retention_days: int = 365
    # Mail written to data_dir/outbox (no SMTP server) holds addresses and links: deleted after this.
    outbox_retention_days: int = 7
    session_days: int = 14
    purge_interval_seconds: float = 3600.0
    # A class's live state (who was removed, locks) is forgotten this long after its last participant left.
    class_idle_seconds: float = 4 * 3600.0
    # Cookies get the Secure flag when public_url is https, or when this is set.
    secure_cookies: bool | None = None
    # Behind a reverse proxy: take the client address from X-Forwarded-For (rate limits and limits per address).
    trust_forwarded_for: bool = False
    ice_timeout_seconds: float = 30.0
    negotiation_timeout_seconds: float = 15.0
    max_tracks_per_participant: int = 4
    max_participants_per_class: int = 300
    # The lobby: people waiting do not count against the class size, but one link holder cannot fill it.
    max_lobby: int = 100
    max_lobby_per_address: int = 30  # one class behind one school NAT
    # A lesson whose last teacher left ends for everyone (error no_teacher) after this long without one.
    teacher_absence_seconds: float = 600.0
    # A WebSocket that has not sent `join` by then is closed; open WebSockets per client address.
    join_timeout_seconds: float = 10.0
    max_connections_per_address: int = 200
    # On SIGTERM (or SIGINT), how long the participants told to rejoin elsewhere (`server_stopping`)
    # have to leave before the server closes what is left and exits.
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    # The operator's Unix socket (`classe drain`): data_dir/admin.sock by default.
    admin_socket: Path | None = None
    # The log (docs/operations.md, "Logs"): text lines, or one JSON object per line for collectors.
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics (docs/operations.md, "Metrics"): served on a listener of their own, on
    # loopback by default (0: none; with workers, worker i uses metrics_port + i). On the main port,
    # /metrics answers 404 unless metrics_token is set, and then only to `Authorization: Bearer
    # <metrics_token>` (which the metrics listener asks too, once it is set).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9480, ge=0, le=65535)
    metrics_token: str | None = Field(default=None, min_length=16)
    camera_max_bitrate: int = 1_500_000
    screen_max_bitrate: int = 2_500_000
    # What one subscriber can be sent again on its NACKs, in bits per second (beyond: refused, counted).
    max_retransmission_bitrate: int = Field(default=2_000_000, gt=0)
    # What each subscriber receives (docs/protocol.md, "Which videos"): the audio of this many loudest
    # speakers plus every teacher's microphone (0: all audio), and at most this many videos (0: all).
    audio_forward_loudest: int = Field(default=3, ge=0)
    video_last_n: int = Field(default=10, ge=0)
    # A camera that nobody shows at least this wide (css px) is asked (REMB) to send at most thumbnail_bitrate.
    thumbnail_bitrate: int = Field(default=200_000, gt=0)
    large_tile_width: int = Field(default=480, ge=0)
    # Bandwidth adaptation (docs/architecture.md, "The room allocator"): what all the subscribers of one
    # class may be sent together, in bits per second (a server on a small uplink; 0: no limit), and a
    # cap on each subscriber's downlink estimate (0: none).
    room_egress_bitrate: int = Field(default=0, ge=0)
    max_downlink_bitrate: int = Field(default=0, ge=0)
    # Several nodes (docs/operations.md, "Several nodes"): the Redis server of the class directory
    # (none: this process is the only node), this node's name, the URL browsers reach this node's
    # signaling at (a name of its own, or a path the reverse proxy routes to it), and how long a node
    # or class lease lasts without renewal (a node that dies is noticed after this).
    redis_url: str | None = None
    node_id: str = Field(default_factory=_generated_node_id)
    node_url: str | None = None
    node_lease_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    # Server processes on this machine (signaling/workers.py): each a node of the Redis directory,
    # with an HTTP port of its own (port + 1 + i) and its own media port(s). More than 1 needs redis_url.
    workers: int = Field(default=1, ge=1, le=64)
    config_file: Path | None = None

    @field_validator("teacher_domains")
    @classmethod
    def _exact_domains(cls, value: list[str]) -> list[str]:
        return teacher_domain_entries(value)

    @field_validator("welcome_message")
    @classmethod
    def _welcome_message(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_WELCOME_MESSAGE:
            raise ValueError(f"welcome_message: at most {MAX_WELCOME_MESSAGE} characters")
        return value or None

    @field_validator("turn_urls")
    @classmethod
    def _turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"turn_urls: {url!r} is not a turn: or turns: URL")
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        """Written into Redis keys and metric labels: letters, digits, '.', '_' and '-'."""
        if not NODE_ID.match(value):
            raise ValueError(f"node_id: {value!r} must be 1-63 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("node_url")
    @classmethod
    def _node_url(cls, value: str | None) -> str | None:
        # "{worker}" stands for the worker's number with several workers (signaling/workers.py).
        url = value.replace("{worker}", "0") if value is not None else None
        if url is not None and (len(url) > MAX_NODE_URL or not NODE_URL.match(url)):
            raise ValueError(
                f"node_url: {url[:80]!r} is not an http:// or https:// URL without query or fragment, "
                f"of at most {MAX_NODE_URL} characters"
            )
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _several_nodes(self) -> Settings:
        """Nodes that do not share the token secret refuse each other's join tokens; a node that
        binds every address cannot guess the URL browsers reach it at."""
        if not self.redis_url:
            return self
        if "token_secret" not in self.model_fields_set:
            raise ValueError(
                "redis_url needs token_secret set explicitly (the same on every node): "
                "a join token minted by one node must be accepted by the node that hosts the class"
            )
        if self.node_url is None and self.host in ("0.0.0.0", "::"):
            raise ValueError("redis_url with host 0.0.0.0 or :: needs node_url: the URL browsers reach this node at")
        return self

    @model_validator(mode="after")
    def _workers(self) -> Settings:
        """Each worker needs a URL of its own: node_url names them all with "{worker}"."""
        several = self.workers > 1
        if self.node_url is not None and several != ("{worker}" in self.node_url):
            raise ValueError(
                "node_url: with workers > 1 it must contain {worker} (each worker's number), and only then: "
                "e.g. https://classe.example.org/worker/{worker}"
            )
        return self

    @model_validator(mode="after")
    def _consistent_network(self) -> Settings:
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls needs turn_secret (coturn's static-auth-secret)")
        if any(address in ("0.0.0.0", "::") for address in self.media_addresses) and not self.media_announced_address:
            raise ValueError(
                "media_addresses binds every address: set media_announced_address to the one browsers reach"
            )
        return self

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'classe.db'}"

    @property
    def admin_socket_path(self) -> Path:
        return self.admin_socket or self.data_dir / "admin.sock"

    @property
    def origin(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def node_address(self) -> str:
        """Where browsers reach this node's signaling: node_url, or this process's own listener."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.node_url or f"http://{host}:{self.port}"

    @property
    def cookies_secure(self) -> bool:
        return self.secure_cookies if self.secure_cookies is not None else self.origin.startswith("https:")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFromInit(settings_cls, init_settings))


class _TomlFromInit(PydanticBaseSettingsSource):
    """Reads the TOML file named by `config_file` (from the command line or CLASSE_CONFIG_FILE)."""

    def __init__(self, settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._init = init

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        path = self._init().get("config_file") or os.environ.get("CLASSE_CONFIG_FILE")
        if not path:
            return {}
        return TomlConfigSettingsSource(self.settings_cls, toml_file=Path(path))()
