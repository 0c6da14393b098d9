"""JWT issue and verification.

HS256 only (a fixed algorithm list, so ``alg: none`` and RS/HS confusion are refused), with a
``kid`` derived from the key, and ``exp``, ``iat``, ``aud``, ``iss`` and ``jti`` required. The
``jti`` is looked up in ``api_token`` on every request, which is what makes tokens revocable.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from npsd.kit.config import Settings

ALGORITHM = "HS256"
ROLES = ("viewer", "editor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
LEEWAY = 5  # seconds of clock skew tolerated on exp / nbf / iat


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime  # naive UTC


def key_id(settings: Settings) -> str:
    return hashlib.sha256(settings.signing_key.encode()).hexdigest()[:12]


def new_jti() -> str:
    return secrets.token_hex(16)


def issue(
    settings: Settings, *, org_id: str, role: str, ttl: timedelta, subject: str, jti: str | None = None
) -> IssuedToken:
    """Sign a token for ``org_id`` with ``role``; the caller records its ``jti``."""
    now = datetime.now(UTC)
    expires = now + ttl
    jti = jti or new_jti()
    claims = {
        "sub": subject,
        "org": org_id,
        "role": role,
        "jti": jti,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    token = jwt.encode(claims, settings.signing_key, algorithm=ALGORITHM, headers={"kid": key_id(settings)})
    return IssuedToken(token, jti, expires.replace(tzinfo=None, microsecond=0))


class InvalidToken(Exception):
    """The token is not one npsd issued, or no longer valid."""


def decode(settings: Settings, token: str) -> dict[str, Any]:
    """Verify signature, algorithm, kid and registered claims; return the claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != ALGORITHM or header.get("kid") != key_id(settings):
        raise InvalidToken("token was not issued by this server")
    try:
        claims = jwt.decode(
            token,
            settings.signing_key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "aud", "iss", "jti", "sub"]},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidToken("token is not valid yet") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken("invalid token") from exc
    if claims.get("role") not in ROLE_RANK or not isinstance(claims.get("org"), str):
        raise InvalidToken("invalid token")
    return claims


def parse_ttl(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` to a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError(
            f"invalid TTL {text!r}: use a positive number followed by s, m, h, d or w (e.g. 90d)"
        )
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])
