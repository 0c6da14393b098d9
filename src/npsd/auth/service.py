"""Organizations, users and API tokens: the rules shared by the CLI and the HTTP API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from npsd.auth import cache, tokens
from npsd.auth.passwords import hash_password, verify_password
from npsd.kit.config import Settings
from npsd.kit.errors import BadRequest, Conflict, NotFound, Unauthorized
from npsd.kit.ids import new_id
from npsd.kit.lookup import resolve
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


MAX_JTI = 64


def find_token(session: Session, org_id: str, jti: str) -> ApiToken:
    """The token ``jti`` of ``org_id``, or 404: another organization's token is exactly as unknown
    as a token that never existed (the API's ``DELETE /v1/tokens/{jti}`` and the dashboard)."""
    if len(jti) > MAX_JTI or "\x00" in jti:  # no token has such a key; PostgreSQL refuses NUL
        raise BadRequest.field("jti", f"must be a token id of at most {MAX_JTI} characters, without NUL")
    row = session.get(ApiToken, jti)
    if row is None or row.org_id != org_id:
        raise NotFound(f"no token {jti}")
    return row


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
    """A person who signs in with ``email`` and ``password``. Every problem with the input is
    reported at once (400 naming each field), so a form can show each next to its field."""
    problems: list[dict[str, str]] = []
    if role not in tokens.ROLE_RANK:
        problems.append({"field": "role", "issue": f"must be one of {', '.join(tokens.ROLES)}"})
    try:
        email = check_email(email.strip())
    except ValueError:
        problems.append({"field": "email", "issue": f"{email!r} is not a valid e-mail address"})
    else:
        if session.scalar(select(User.id).where(User.email == email_key(email))) is not None:
            problems.append({"field": "email", "issue": "a user with this e-mail already exists"})
    if len(password) < 8:
        problems.append({"field": "password", "issue": "must be at least 8 characters"})
    elif len(password) > 1024:
        problems.append({"field": "password", "issue": "must be at most 1024 characters"})
    if problems:
        raise BadRequest("; ".join(f"{p['field']}: {p['issue']}" for p in problems), problems)
    user = User(
        id=new_id(),
        org_id=org.id,
        email=email_key(email),
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


def list_users(session: Session, org_id: str) -> list[User]:
    """The organization's users, oldest first (their password hashes stay in the row)."""
    return list(
        session.scalars(select(User).where(User.org_id == org_id).order_by(User.created_at, User.email))
    )


def find_user(session: Session, org_id: str, user_id: str) -> User:
    """The user ``user_id`` of ``org_id``; another organization's user is a 404 like an unknown one."""
    return resolve(session, User, org_id, user_id, "user", prefixes=False)


def delete_user(session: Session, user: User, acting_user_id: str | None) -> list[str]:
    """Remove ``user`` and end their sessions at once; the ``jti`` of each ended session is returned.

    Refused (409) for the caller's own account, so nobody locks themself out by a slip, and for the
    organization's last admin, so someone can still manage users and tokens without the CLI.
    A session is checked against its ``api_token`` row on every request (the in-process cache
    is told here, other processes notice within ``cache.STATE_TTL``), so deleting the rows signs
    the person out of every browser and client immediately.
    """
    if acting_user_id is not None and user.id == acting_user_id:
        raise Conflict("you cannot remove your own account; another admin can")
    if user.role == "admin":
        admins = session.scalar(
            select(func.count()).select_from(User).where(User.org_id == user.org_id, User.role == "admin")
        )
        if (admins or 0) <= 1:
            raise Conflict("the organization's last admin cannot be removed")
    jtis = list(
        session.scalars(
            select(ApiToken.jti).where(ApiToken.user_id == user.id, ApiToken.org_id == user.org_id)
        )
    )
    # Explicit rather than left to ON DELETE CASCADE, so both databases do the same whatever
    # their foreign-key settings.
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.org_id == user.org_id))
    session.execute(delete(User).where(User.id == user.id, User.org_id == user.org_id))
    session.expunge(user)
    for jti in jtis:
        cache.forget(jti)
    return jtis


# ------------------------------------------------------------------------------ organization profile

_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_URL = 2000


@dataclass(frozen=True)
class Profile:
    """What respondents see of an organization: in survey mails, reminders and respondent pages.

    Every field but ``name`` may be None: mails then come from ``NPSD_SMTP_FROM`` and pages
    show no logo, npsd's colours and no privacy link.
    """

    name: str
    sender_name: str | None = None
    sender_email: str | None = None
    logo_url: str | None = None
    brand_color: str | None = None
    privacy_url: str | None = None


def profile_of(org: Organization) -> Profile:
    return Profile(
        name=org.name,
        sender_name=org.sender_name,
        sender_email=org.sender_email,
        logo_url=org.logo_url,
        brand_color=org.brand_color,
        privacy_url=org.privacy_url,
    )


def load_profile(session: Session, org_id: str) -> Profile:
    """The profile of ``org_id`` (the organization exists: callers hold one of its rows)."""
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFound("no such organization")
    return profile_of(org)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _check_url(field: str, value: str | None, problems: list[dict[str, str]]) -> str | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not host
        or len(value) > MAX_URL
        or any(not ch.isprintable() or ch.isspace() for ch in value)
    ):
        problems.append(
            {"field": field, "issue": f"must be an http:// or https:// URL of at most {MAX_URL} characters"}
        )
    return value


def update_profile(session: Session, org: Organization, profile: Profile) -> Profile:
    """Replace the organization's profile (``PUT /v1/organization``, the dashboard's settings page).

    Every problem is reported at once (400 naming each field), so a form can show each next to
    its field; another organization's name is a 409 naming ``name``. Blank optional fields are
    stored as null. The brand colour is stored lower-case: it goes into mails' and pages' styles,
    so nothing but ``#rrggbb`` is accepted.
    """
    problems: list[dict[str, str]] = []
    try:
        name = _org_name(profile.name)
    except BadRequest as exc:
        problems.extend(exc.details)
        name = profile.name
    sender_name = _blank_to_none(profile.sender_name)
    if sender_name is not None and (
        len(sender_name) > 200 or any(not ch.isprintable() for ch in sender_name)
    ):
        problems.append({"field": "senderName", "issue": "must be one line of at most 200 characters"})
    sender_email = _blank_to_none(profile.sender_email)
    if sender_email is not None:
        try:
            sender_email = check_email(sender_email)
            if len(sender_email) > 320:
                raise ValueError
        except ValueError:
            problems.append(
                {"field": "senderEmail", "issue": f"{sender_email!r} is not a valid e-mail address"}
            )
    logo_url = _check_url("logoUrl", profile.logo_url, problems)
    privacy_url = _check_url("privacyUrl", profile.privacy_url, problems)
    brand_color = _blank_to_none(profile.brand_color)
    if brand_color is not None:
        if _COLOR_RE.match(brand_color):
            brand_color = brand_color.lower()
        else:
            problems.append(
                {"field": "brandColor", "issue": "must be a colour written #rrggbb, e.g. #0b57d0"}
            )
    if not problems and name != org.name:
        taken = session.scalar(
            select(Organization.id).where(Organization.name == name, Organization.id != org.id)
        )
        if taken is not None:
            raise Conflict("another organization has this name", [{"field": "name", "issue": "is taken"}])
    if problems:
        raise BadRequest("; ".join(f"{p['field']}: {p['issue']}" for p in problems), problems)
    org.name = name
    org.sender_name = sender_name
    org.sender_email = sender_email
    org.logo_url = logo_url
    org.brand_color = brand_color
    org.privacy_url = privacy_url
    try:
        with session.begin_nested():  # a concurrent rename to the same name: 409, not a 500
            session.flush()
    except IntegrityError:
        raise Conflict(
            "another organization has this name", [{"field": "name", "issue": "is taken"}]
        ) from None
    return profile_of(org)
