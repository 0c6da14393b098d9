"""Organizations, users and API tokens: the rules shared by the CLI and the HTTP API."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from npsd.auth import cache, tokens
from npsd.auth.passwords import hash_password, verify_password
from npsd.kit.config import Settings
from npsd.kit.errors import BadRequest, Unauthorized
from npsd.kit.ids import new_id
from npsd.kit.models import ApiToken, Organization, User
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import check_email, email_key


def ensure_org(session: Session, name: str) -> Organization:
    """The organization called ``name``, created if missing (idempotent)."""
    name = _org_name(name)
    org = session.scalar(select(Organization).where(Organization.name == name))
    if org is None:
        org = Organization(id=new_id(), name=name, created_at=utcnow())
        session.add(org)
        session.flush()
    return org


def find_org(session: Session, name: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.name == _org_name(name)))


def _org_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise BadRequest.field("name", "organization name must not be empty")
    if len(name) > 200 or "\x00" in name:
        raise BadRequest.field("name", "organization name must be at most 200 characters, without NUL")
    return name


def check_role(role: str) -> str:
    if role not in tokens.ROLE_RANK:
        raise BadRequest.field("role", f"must be one of {', '.join(tokens.ROLES)}")
    return role


def create_token(
    session: Session,
    settings: Settings,
    org: Organization,
    role: str,
    ttl: timedelta,
    name: str | None = None,
    user: User | None = None,
    kind: str = "api",
) -> tokens.IssuedToken:
    """Issue a token and record its ``jti`` so it can be listed and revoked."""
    check_role(role)
    issued = tokens.issue(settings, org_id=org.id, role=role, ttl=ttl, subject=user.id if user else org.id)
    session.add(
        ApiToken(
            jti=issued.jti,
            org_id=org.id,
            user_id=user.id if user else None,
            name=name,
            role=role,
            kind=kind,
            created_at=utcnow(),
            expires_at=issued.expires_at,
        )
    )
    session.flush()
    return issued


def list_tokens(session: Session, org: Organization) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.org_id == org.id).order_by(ApiToken.created_at))
    )


def revoke_token(session: Session, jti: str) -> bool:
    """Mark the token revoked (idempotent); False when no token has this ``jti``."""
    if not jti or len(jti) > 32 or "\x00" in jti:
        return False
    row = session.get(ApiToken, jti)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    cache.forget(jti)
    return True


def create_user(session: Session, org: Organization, email: str, role: str, password: str) -> User:
    check_role(role)
    try:
        email = check_email(email.strip())
    except ValueError as exc:
        raise BadRequest.field("email", f"{email!r} is not a valid e-mail address") from exc
    if len(password) < 8:
        raise BadRequest.field("password", "must be at least 8 characters")
    if len(password) > 1024:
        raise BadRequest.field("password", "must be at most 1024 characters")
    key = email_key(email)
    if session.scalar(select(User).where(User.email == key)) is not None:
        raise BadRequest.field("email", "a user with this e-mail already exists")
    user = User(
        id=new_id(),
        org_id=org.id,
        email=key,
        password_hash=hash_password(password),
        role=role,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def login(session: Session, settings: Settings, email: str, password: str) -> tokens.IssuedToken:
    """Exchange e-mail and password for a session token with the user's role."""
    user = session.scalar(select(User).where(User.email == email_key(email)))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise Unauthorized("wrong e-mail or password")
    org = session.get(Organization, user.org_id)
    assert org is not None
    return create_token(
        session,
        settings,
        org,
        user.role,
        timedelta(hours=settings.login_ttl_hours),
        name=f"login {user.email}",
        user=user,
        kind="session",
    )
