"""``/v1/auth``: password login for people; machines use tokens from ``npsd token create``."""

from __future__ import annotations

from fastapi import APIRouter

from npsd.auth import service
from npsd.auth.schemas import LoginRequest, LoginResponse
from npsd.http import AppSettings, DbSession
from npsd.timeutil import iso

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, session: DbSession, settings: AppSettings) -> LoginResponse:
    """Exchange an e-mail and password (set with `npsd user create`) for a bearer token.

    The token carries the user's organization and role and expires after
    `NPSD_LOGIN_TTL_HOURS`. Wrong credentials are a 401 that does not say which part was wrong.
    """
    issued = service.login(session, settings, body.email, body.password)
    return LoginResponse(accessToken=issued.token, expiresAt=iso(issued.expires_at) or "")
