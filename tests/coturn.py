"""A real coturn (Debian's `coturn`) for the tests, on loopback, in the deployment docs/operations.md
describes: shared-secret credentials, UDP and TCP on one port, TLS on another, relaying only to the
media server's address."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import free_port


@dataclass
class Coturn:
    secret: str
    port: int  # UDP and TCP
    tls_port: int
    relay_to: str  # the only peer address it relays to (the media server's)

    def urls(self, host: str = "127.0.0.1") -> list[str]:
        return [
            f"turn:{host}:{self.port}?transport=udp",
            f"turn:{host}:{self.port}?transport=tcp",
            f"turns:{host}:{self.tls_port}?transport=tcp",
        ]


def self_signed(folder: Path, address: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turn.classe.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "turn.pem", folder / "turn.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


SAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "turnserver.conf"
# What only the tests add: the media server is on loopback, no DTLS listener, a log to read.
TEST_ONLY = ["allow-loopback-peers", "no-dtls", "simple-log"]


def sample_config(settings: dict[str, str]) -> str:
    """deploy/turnserver.conf with `settings` in place of its values; each of them must be there."""
    lines, replaced = [], set()
    for line in SAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.startswith("#") and "=" in line and key in settings:
            line = f"{key}={settings[key]}"
            replaced.add(key)
        lines.append(line)
    missing = set(settings) - replaced
    assert not missing, f"deploy/turnserver.conf lacks {sorted(missing)}"
    return "\n".join(lines) + "\n"


@contextmanager
def running_coturn(
    folder: Path, secret: str, listen: str = "127.0.0.1", relay_to: str = "127.0.0.1"
) -> Iterator[Coturn]:
    """coturn listening on `listen`, relaying from and to `relay_to` only (the media server's address)."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("coturn is not installed: `./dev test` installs it (apt-get install coturn)")
    cert, key = self_signed(folder, listen)
    port, tls_port = free_port(listen), free_port(listen)
    relay_min = 50_000 + port % 5_000
    # The sample of the deployment files, with this test's addresses, ports, secret and certificate.
    settings = {
        "listening-ip": listen,
        "listening-port": str(port),
        "tls-listening-port": str(tls_port),
        "cert": str(cert),
        "pkey": str(key),
        "static-auth-secret": secret,
        "realm": "classe.test",
        "allowed-peer-ip": relay_to,
        "min-port": str(relay_min),
        "max-port": str(relay_min + 50),
    }
    extra = [*TEST_ONLY, f"relay-ip={relay_to}", f"pidfile={folder / 'turnserver.pid'}"]
    extra.append(f"log-file={folder / 'turnserver.log'}")
    config = folder / "turnserver.conf"
    config.write_text(sample_config(settings) + "\n".join(extra) + "\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((listen, tls_port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = next(iter(folder.glob("turnserver*.log")), None)
                    raise RuntimeError(f"coturn did not start: {log.read_text()[-2000:] if log else ''}") from None
                time.sleep(0.05)
        yield Coturn(secret, port, tls_port, relay_to)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
