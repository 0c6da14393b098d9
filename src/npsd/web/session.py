"""Who is using the dashboard: the session cookie, the role a page needs, and the CSRF token.

A dashboard session is a token like any other (``auth.service.login`` issues it, kind
``session``), kept in an HttpOnly cookie instead of a header. It is verified by the same code as
API tokens (``auth.deps.authenticate``): signature, expiry and revocation. Signing out revokes it
on the server, so a copied cookie is useless afterwards.

Every form carries a CSRF token derived from the session (HMAC of its ``jti`` with the server's
signing key): a POST without it, or with another session's, is refused (403) before any work.
The sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from npsd.auth.deps import Principal, authenticate
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.errors import Forbidden, Unauthorized
from npsd.kit.http import AppSettings
from npsd.kit.models import User

SESSION_COOKIE = "npsd_session"
LOGIN_CSRF_COOKIE = "npsd_login_csrf"
CSRF_FIELD = "csrf_token"
PAGE_USER_SCOPE_KEY = "npsd.page_user"
CSRF_HEADER = "x-csrf-token"
ROLE_LABELS = {"viewer": "Viewer", "editor": "Editor", "admin": "Admin"}


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in page."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("sign in required")
        self.expired = expired


@dataclass(frozen=True)
class PageUser:
    """The signed-in person: organization, role, address, and the CSRF token of this session."""

    principal: Principal
    email: str
    csrf_token: str

    @property
    def org_id(self) -> str:
        return self.principal.org_id

    @property
    def role(self) -> str:
        return self.principal.role

    def can(self, role: str) -> bool:
        return self.principal.can(role)


def csrf_token_for(settings: Settings, session_id: str) -> str:
    """The CSRF token of one session (or of one sign-in form): an HMAC only the server can make."""
    mac = hmac.new(settings.signing_key.encode(), b"csrf:" + session_id.encode(), hashlib.sha256)
    return mac.hexdigest()


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


async def submitted_csrf(request: Request) -> str:
    """The CSRF token sent with a POST: the form field, or the header htmx sends."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def same_token(expected: str, given: str) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


_emails: dict[str, str] = {}  # user id -> address; addresses never change, users are only removed


def _email_of(db: Database, user_id: str) -> str | None:
    with db.transaction(write=False) as session:
        return session.scalar(select(User.email).where(User.id == user_id))


@dataclass(frozen=True)
class PageRole:
    """The dependency of every dashboard page: a signed-in user with at least ``role``.

    No or an expired session: a redirect to the sign-in page. A lower role: 403, whatever the
    page showed. On POST the CSRF token is checked here, before the request's transaction.
    """

    role: str

    async def __call__(self, request: Request, settings: AppSettings) -> PageUser:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise SignInRequired()
        try:
            principal = await authenticate(request, settings, token)
        except Unauthorized as exc:
            raise SignInRequired(expired=True) from exc
        if principal.user_id is None:
            raise SignInRequired(expired=True)
        csrf = csrf_token_for(settings, principal.jti)
        if request.method not in ("GET", "HEAD") and not same_token(csrf, await submitted_csrf(request)):
            raise Forbidden.field(
                CSRF_FIELD, "the form's security token is missing or stale: reload the page"
            )
        email = _emails.get(principal.user_id)
        if email is None:
            db: Database = request.app.state.db
            email = await run_in_threadpool(_email_of, db, principal.user_id)
            if email is None:  # the user was removed
                raise SignInRequired(expired=True)
            _emails[principal.user_id] = email
        if not principal.can(self.role):
            raise Forbidden(f"this needs the {self.role} role; you are signed in as {principal.role}")
        user = PageUser(principal, email, csrf)
        request.scope[PAGE_USER_SCOPE_KEY] = user  # the error page still shows the navigation
        return user


def forget_user(user_id: str) -> None:
    """Drop a removed user's cached address (their sessions are revoked by the caller)."""
    _emails.pop(user_id, None)


PageViewer = Annotated[PageUser, Depends(PageRole("viewer"))]
PageEditor = Annotated[PageUser, Depends(PageRole("editor"))]
PageAdmin = Annotated[PageUser, Depends(PageRole("admin"))]
