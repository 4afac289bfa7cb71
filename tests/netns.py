"""A student's machine on a network that drops outgoing UDP (a school firewall), made of a network
namespace and a veth pair, with nftables rules: only its own addresses and the host's end of the
pair are involved, nothing leaves the machine. Needs root, as CI runs the tests."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .browser import chromium_path

DROP_UDP = """
table inet classe_firewall {
  chain output {
    type filter hook output priority 0; policy accept;
    oifname != "lo" meta l4proto udp drop
  }
}
"""
# A firewall that lets STUN through (a first byte of 0-3, RFC 7983) and drops every other UDP
# datagram: ICE's connectivity checks succeed on the direct path, DTLS and media never pass.
STUN_ONLY = """
table inet classe_firewall {
  chain output {
    type filter hook output priority 0; policy accept;
    oifname != "lo" meta l4proto udp @th,64,8 > 3 drop
  }
}
"""


@dataclass
class Namespace:
    name: str
    host: str  # the host's address on the pair: where the student's machine reaches the server
    inside: str

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *command], check=True, capture_output=True, text=True)

    def chromium(self, folder: Path) -> str:
        """An executable that starts Chromium inside the namespace (for Playwright's executable_path)."""
        wrapper = folder / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {chromium_path()} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
        return str(wrapper)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def udp_blocked(subnet: int = 77, rules: str = DROP_UDP) -> Iterator[Namespace]:
    """A namespace whose outgoing UDP is dropped (TCP passes; `rules` may let some through),
    joined to the host by a veth pair 10.<subnet>.0.1 (host) - 10.<subnet>.0.2 (inside)."""
    tag = f"{os.getpid() % 10000}"
    ns = Namespace(f"classe-student-{tag}", f"10.{subnet}.0.1", f"10.{subnet}.0.2")
    outside, inside = f"vcl{tag}", f"vst{tag}"
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns.name)
        _ip("addr", "add", f"{ns.host}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        ns.run("ip", "addr", "add", f"{ns.inside}/30", "dev", inside)
        ns.run("ip", "link", "set", inside, "up")
        ns.run("ip", "link", "set", "lo", "up")
        firewall = ["ip", "netns", "exec", ns.name, "nft", "-f", "-"]
        subprocess.run(firewall, input=rules, check=True, capture_output=True, text=True)
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
