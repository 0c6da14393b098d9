"""Who is calling: the token from any of the accepted headers, verified and checked for revocation."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy import update
from starlette.concurrency import run_in_threadpool

from npsd.auth import cache, tokens
from npsd.kit import idempotency
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.errors import Forbidden, Unauthorized
from npsd.kit.http import ORG_SCOPE_KEY, AppSettings
from npsd.kit.models import ApiToken
from npsd.kit.timeutil import utcnow

# Declared for the OpenAPI document; the actual parsing below accepts all three forms.
bearer_scheme = HTTPBearer(auto_error=False, description="JWT from `npsd token create` or /v1/auth/login")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The same token (SalesOS style)"
)
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


def _verified_claims(settings: Settings, token: str) -> dict[str, Any]:
    claims = cache.get_claims(settings.signing_key, token)
    if claims is None:
        try:
            claims = tokens.decode(settings, token)
        except tokens.InvalidToken as exc:
            raise Unauthorized(str(exc)) from exc
        cache.put_claims(settings.signing_key, token, claims)
        return claims
    now = time.time()  # a remembered token is still checked against the clock
    if claims["exp"] < now - tokens.LEEWAY:
        raise Unauthorized("token has expired")
    if claims.get("nbf", 0) > now + tokens.LEEWAY:
        raise Unauthorized("token is not valid yet")
    return claims


def _load_state(db: Database, jti: str) -> cache.TokenState | None:
    """Read the token's row, and note its use (at most every few minutes, in its own transaction)."""
    with db.transaction(write=False) as session:
        row = session.get(ApiToken, jti)
        state = (
            None
            if row is None
            else cache.TokenState(
                row.org_id,
                row.role,
                row.user_id,
                row.revoked_at is not None,
                row.expires_at,
                row.last_used_at,
            )
        )
    now = utcnow()
    if (
        state is not None
        and not state.revoked
        and (state.last_used_at is None or now - state.last_used_at > LAST_USED_GRANULARITY)
    ):
        with db.transaction(write=True) as session:
            session.execute(update(ApiToken).where(ApiToken.jti == jti).values(last_used_at=now))
        state = cache.TokenState(state.org_id, state.role, state.user_id, False, state.expires_at, now)
    cache.put_state(jti, state)
    return state


async def current_principal(
    request: Request,
    settings: AppSettings,
    _bearer: Annotated[object, Depends(bearer_scheme)] = None,
    _api_key: Annotated[object, Depends(api_key_scheme)] = None,
) -> Principal:
    """Verify the caller's token. Runs on the event loop: the database is read (in a worker
    thread) only when the token's row is not in the short-lived cache (see auth/cache.py)."""
    return await authenticate(request, settings, extract_token(request))


async def authenticate(request: Request, settings: Settings, token: str) -> Principal:
    """The principal of ``token`` (from a header, or the dashboard's session cookie): signature,
    expiry and revocation checked; sets the request's organization for the database's write turn."""
    claims = _verified_claims(settings, token)
    jti = claims["jti"]
    fresh, state = cache.get_state(jti)
    if not fresh:
        db: Database = request.app.state.db
        async with db.serialized(True, scope=request.scope):  # it may note the token's use
            state = await run_in_threadpool(_load_state, db, jti)
    if state is None or state.revoked or state.org_id != claims["org"] or state.role != claims["role"]:
        raise Unauthorized("token has been revoked or is unknown")
    if state.expires_at < utcnow() - timedelta(seconds=tokens.LEEWAY):
        raise Unauthorized("token has expired")
    principal = Principal(org_id=state.org_id, role=state.role, jti=jti, user_id=state.user_id)
    request.scope[ORG_SCOPE_KEY] = principal.org_id
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class RoleCheck:
    """The dependency that lets only ``role`` or higher through (403 otherwise), then takes the
    request's ``Idempotency-Key`` for the caller's organization (see ``kit/idempotency.py``).

    A route's first role check is its strictest and comes before its session
    (tests/test_architecture.py), so no key is claimed for a caller that a later check refuses.
    """

    role: str

    async def __call__(self, request: Request, principal: CurrentPrincipal) -> Principal:
        if not principal.can(self.role):
            raise Forbidden(f"this action needs the {self.role} role; your token has {principal.role}")
        # Only now is the caller known and allowed: its Idempotency-Key may keep or replay a reply.
        await idempotency.claim(request, principal.org_id)
        return principal


def require_role(role: str) -> RoleCheck:
    """A dependency that lets only ``role`` or higher through (see :class:`RoleCheck`)."""
    return RoleCheck(role)


Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Editor = Annotated[Principal, Depends(require_role("editor"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
