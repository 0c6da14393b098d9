"""Signing in and out of the dashboard.

An unknown address and a wrong password get the same answer in the same time (the password
check runs against a dummy hash when the address is unknown, ``auth/passwords.py``). Attempts
are limited per address and per client (in this process; behind several processes each counts
its own), so guessing is slow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from npsd.auth import service as auth_service
from npsd.kit.errors import Unauthorized
from npsd.kit.http import AppSettings, DbSession
from npsd.kit.limits import SlidingWindow
from npsd.kit.validation import email_key
from npsd.web.forms import form_text
from npsd.web.render import PageRoute, render
from npsd.web.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    PageViewer,
    csrf_token_for,
    new_login_nonce,
    same_token,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ADDRESS_LIMIT = (10, 15 * 60)  # failed attempts per address per 15 minutes
CLIENT_LIMIT = (30, 15 * 60)  # failed attempts per client address per 15 minutes


@dataclass
class LoginLimits:
    """The sign-in attempt counters of one app (kept in ``app.state``, so each app counts its own)."""

    by_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(*ADDRESS_LIMIT))
    by_client: SlidingWindow = field(default_factory=lambda: SlidingWindow(*CLIENT_LIMIT))


def login_limits(request: Request) -> LoginLimits:
    limits = getattr(request.app.state, "login_limits", None)
    if limits is None:
        limits = request.app.state.login_limits = LoginLimits()
    return limits


MAX_FIELD = 1024


def safe_next(raw: Any) -> str:
    """Where to go after signing in: a dashboard path only, never another site."""
    target = raw if isinstance(raw, str) else ""
    if not target.startswith("/app") or target.startswith("//") or "\\" in target or "\n" in target:
        return "/app"
    return target[:2000]


def _login_form(
    request: Request,
    settings: AppSettings,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    nonce = new_login_nonce()
    response = render(
        request,
        "login.html",
        {
            "csrf_token": csrf_token_for(settings, "login:" + nonce),
            "next": safe_next(request.query_params.get("next") if values is None else values.get("next")),
            "values": values or {},
            "errors": errors or {},
            "expired": request.query_params.get("expired") == "1",
            "signed_out": request.query_params.get("signed_out") == "1",
        },
        status=status,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=settings.base_url.startswith("https"),
        path="/app/login",
    )
    return response


@router.get("/app/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    settings: AppSettings,
    next: str | None = None,
    expired: str | None = None,
    signed_out: str | None = None,
) -> Response:
    """The sign-in form (fields "Email" and "Password")."""
    return _login_form(request, settings)


@router.post("/app/login", response_class=HTMLResponse)
async def login_submit(request: Request, settings: AppSettings, session: DbSession) -> Response:
    """Check the address and password; on success set the session cookie and go on."""
    form = await request.form()
    values = {"email": form_text(form, "email"), "next": form_text(form, "next")}
    password = form_text(form, "password")
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not nonce or not same_token(csrf_token_for(settings, "login:" + nonce), form_text(form, CSRF_FIELD)):
        return _login_form(
            request,
            settings,
            values=values,
            status=403,
            errors={"": "The form expired or was not sent from this page. Please try again."},
        )
    email = values.get("email", "").strip()
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter your email address."
    elif len(email) > MAX_FIELD or "\x00" in email:
        errors["email"] = "This is not an email address."
    if not password:
        errors["password"] = "Enter your password."
    elif len(password) > MAX_FIELD:
        errors["password"] = "The password is too long."
    if errors:
        return _login_form(request, settings, values=values, errors=errors, status=400)
    client = request.client.host if request.client else "unknown"
    limits = login_limits(request)
    address = email_key(email)
    wait = limits.by_address.wait(address) or limits.by_client.wait(client)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        return _login_form(
            request,
            settings,
            values=values,
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
            errors={
                "": f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            },
        )
    try:
        issued = auth_service.login(session, settings, email, password)
    except Unauthorized:
        # Only failures count: people who type their password right are never locked out.
        limits.by_address.hit(address)
        limits.by_client.hit(client)
        return _login_form(
            request, settings, values=values, status=401, errors={"": "Wrong email or password."}
        )
    response = RedirectResponse(safe_next(values.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=int(timedelta(hours=settings.login_ttl_hours).total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https"),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/app/login")
    return response


@router.post("/app/logout")
def logout(user: PageViewer, session: DbSession, settings: AppSettings) -> Response:
    """End the session on the server (its token is revoked), then forget the cookie."""
    auth_service.revoke_token(session, user.principal.jti)
    response = RedirectResponse("/app/login?signed_out=1", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=settings.base_url.startswith("https"), httponly=True, samesite="lax"
    )
    return response
