"""Who is calling: the token from any of the accepted headers, verified and checked for revocation."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from npsd.auth import tokens
from npsd.errors import Forbidden, Unauthorized
from npsd.http import AppSettings, DbSession
from npsd.models import ApiToken
from npsd.timeutil import utcnow

# Declared for the OpenAPI document; the actual parsing below accepts all three forms.
bearer_scheme = HTTPBearer(auto_error=False, description="JWT from `npsd token create` or /v1/auth/login")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same token (SalesOS style)")
LAST_USED_GRANULARITY = timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: one organization, one role."""

    org_id: str
    role: str
    jti: str
    user_id: str | None

    def can(self, role: str) -> bool:
        return tokens.ROLE_RANK[self.role] >= tokens.ROLE_RANK[role]


def extract_token(request: Request) -> str:
    """``Authorization: Bearer``, ``X-API-Key`` or HTTP Basic with the token as user name (Planhat)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return value
        if scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise Unauthorized("malformed Basic credentials") from exc
            user, _, password = decoded.partition(":")
            if user or password:
                return user or password
        raise Unauthorized("malformed Authorization header")
    api_key = request.headers.get("x-api-key")
    if api_key:
        return api_key.strip()
    raise Unauthorized("missing credentials: send Authorization: Bearer <token>")


def current_principal(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    _bearer: Annotated[object, Depends(bearer_scheme)] = None,
    _api_key: Annotated[object, Depends(api_key_scheme)] = None,
) -> Principal:
    token = extract_token(request)
    try:
        claims = tokens.decode(settings, token)
    except tokens.InvalidToken as exc:
        raise Unauthorized(str(exc)) from exc
    row = session.get(ApiToken, claims["jti"])
    if row is None or row.revoked_at is not None or row.org_id != claims["org"] or row.role != claims["role"]:
        raise Unauthorized("token has been revoked or is unknown")
    now = utcnow()
    if row.expires_at < now - timedelta(seconds=5):
        raise Unauthorized("token has expired")
    if request.method not in ("GET", "HEAD") and (
        row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY
    ):
        row.last_used_at = now  # written with the request's own (write) transaction
    principal = Principal(org_id=row.org_id, role=row.role, jti=row.jti, user_id=row.user_id)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(role: str) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``role`` or higher through (403 otherwise)."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(role):
            raise Forbidden(f"this action needs the {role} role; your token has {principal.role}")
        return principal

    return check


Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Editor = Annotated[Principal, Depends(require_role("editor"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
