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
    config = folder / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                f"listening-ip={listen}",
                f"relay-ip={relay_to}",
                f"listening-port={port}",
                f"tls-listening-port={tls_port}",
                f"min-port={relay_min}",
                f"max-port={relay_min + 50}",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                "realm=classe.test",
                f"cert={cert}",
                f"pkey={key}",
                "no-cli",
                "no-dtls",
                "fingerprint",
                "no-multicast-peers",
                # Relay only to the media server: everything else denied (no open relay).
                "denied-peer-ip=0.0.0.0-255.255.255.255",
                f"allowed-peer-ip={relay_to}",
                "allow-loopback-peers",  # the media server is on loopback here
                f"pidfile={folder / 'turnserver.pid'}",
                "simple-log",
                f"log-file={folder / 'turnserver.log'}",
            ]
        )
        + "\n"
    )
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
