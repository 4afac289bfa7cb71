"""Join tokens: short-lived, signed statements of who may join which class in which role."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

ALGORITHM = "HS256"
AUDIENCE = "classe:join"
ACCOUNT_ID = re.compile(r"[0-9a-f]{32}")


class Role(StrEnum):
    TEACHER = "teacher"
    STUDENT = "student"


class TokenError(ValueError):
    """The token is forged, expired, or not a join token."""


@dataclass(frozen=True, slots=True)
class JoinGrant:
    participant_id: str
    class_id: str
    role: Role
    name: str
    token_id: str
    # Who is behind the participant (an account, or a guest's browser), as an opaque per-class id:
    # a removed participant is kept out by this, whatever name or link they come back with.
    identity: str = ""
    lobby: bool = False  # wait in the lobby until a teacher admits
    gated: bool = False  # wait until a teacher has opened the class
    # The account the token was issued to (none for a guest): a token issued just before the account
    # was suspended or deleted must not let it in (signaling/connection.py asks the database).
    account: str | None = None


def opaque_id(secret: str, *parts: str) -> str:
    """A stable id that reveals nothing of what it is derived from."""
    return hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:16]


def mint_join_token(
    secret: str,
    class_id: str,
    name: str,
    role: Role,
    ttl: int,
    participant_id: str | None = None,
    *,
    identity: str | None = None,
    lobby: bool = False,
    gated: bool = False,
    account: str | None = None,
) -> str:
    now = int(time.time())
    sub = participant_id or secrets.token_hex(8)
    claims = {
        "sub": sub,
        "cls": class_id,
        "role": role.value,
        "name": name,
        "idn": identity or sub,
        "lobby": lobby,
        "gated": gated,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(12),
    }
    if account is not None:
        claims["acc"] = account
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _account(value: object) -> str | None:
    if value is None or (isinstance(value, str) and ACCOUNT_ID.fullmatch(value)):
        return value
    raise ValueError("acc is not an account id")


def verify_join_token(secret: str, token: str) -> JoinGrant:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "cls", "role", "name", "exp", "jti"]},
        )
        return JoinGrant(
            str(claims["sub"]),
            str(claims["cls"]),
            Role(claims["role"]),
            str(claims["name"]),
            str(claims["jti"]),
            identity=str(claims.get("idn") or claims["sub"]),
            lobby=claims.get("lobby") is True,
            gated=claims.get("gated") is True,
            account=_account(claims.get("acc")),
        )
    except (jwt.PyJWTError, ValueError) as exc:
        raise TokenError(str(exc)) from exc
