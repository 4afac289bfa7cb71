"""Short-lived TURN credentials for one participant, in coturn's shared-secret ("TURN REST API")
scheme, as BigBlueButton and Jitsi deploy coturn.

coturn is started with `use-auth-secret` and `static-auth-secret=<turn_secret>`; the server mints
for each participant it lets in a username `<expiry>:<participant id>` and the password
base64(HMAC-SHA1(secret, username)). coturn checks the HMAC and refuses the username once its
expiry has passed: a credential given to someone later removed, or copied out of a browser, opens
the relay for `turn_credential_seconds` at most, and a participant in the lobby or refused is
given none (they are minted only in `joined`). Nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any


def credentials(secret: str, participant: str, expires: int) -> tuple[str, str]:
    """The (username, password) coturn accepts until `expires` (Unix time, seconds)."""
    username = f"{expires}:{participant}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def turn_server(urls: list[str], secret: str, participant: str, now: float, seconds: int) -> dict[str, Any]:
    """One `ice_servers` entry (RTCIceServer's shape) with credentials for `participant`."""
    username, password = credentials(secret, participant, int(now) + seconds)
    return {"urls": list(urls), "username": username, "credential": password}
