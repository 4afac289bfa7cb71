"""Join tokens: short-lived, signed statements of who may join which class in which role."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

ALGORITHM = "HS256"
AUDIENCE = "classe:join"


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


def mint_join_token(
    secret: str, class_id: str, name: str, role: Role, ttl: int, participant_id: str | None = None
) -> str:
    now = int(time.time())
    claims = {
        "sub": participant_id or secrets.token_hex(8),
        "cls": class_id,
        "role": role.value,
        "name": name,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


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
            str(claims["sub"]), str(claims["cls"]), Role(claims["role"]), str(claims["name"]), str(claims["jti"])
        )
    except (jwt.PyJWTError, ValueError) as exc:
        raise TokenError(str(exc)) from exc
