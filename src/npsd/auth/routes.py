"""``/v1/auth``: password login for people; ``/v1/tokens``: API tokens for machines (admin);
``/v1/users``: the people who sign in (admin); ``/v1/organization``: the organization's profile."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from npsd.auth import service
from npsd.auth.deps import Admin, Viewer
from npsd.auth.schemas import (
    LoginRequest,
    LoginResponse,
    OrganizationProfile,
    OrganizationRead,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
)
from npsd.kit.http import AppSettings, DbSession, TransactionRoute
from npsd.kit.listing import ParamStr
from npsd.kit.models import ApiToken, Organization, User
from npsd.kit.timeutil import iso

router = APIRouter(route_class=TransactionRoute, prefix="/v1/auth", tags=["auth"])
tokens_router = APIRouter(route_class=TransactionRoute, prefix="/v1/tokens", tags=["auth"])
users_router = APIRouter(route_class=TransactionRoute, prefix="/v1/users", tags=["auth"])
organization_router = APIRouter(
    route_class=TransactionRoute, prefix="/v1/organization", tags=["organization"]
)


@router.post("/login", response_model=LoginResponse)
def login(body: LoginRequest, session: DbSession, settings: AppSettings) -> LoginResponse:
    """Exchange an e-mail and password (set with `npsd user create`) for a bearer token.

    The token carries the user's organization and role and expires after
    `NPSD_LOGIN_TTL_HOURS`. Wrong credentials are a 401 that does not say which part was wrong.
    """
    issued = service.login(session, settings, body.email, body.password)
    return LoginResponse(accessToken=issued.token, expiresAt=iso(issued.expires_at) or "")


def _token_out(row: ApiToken) -> TokenRead:
    return TokenRead(
        jti=row.jti,
        name=row.name,
        role=row.role,
        kind=row.kind,
        createdAt=iso(row.created_at) or "",
        expiresAt=iso(row.expires_at) or "",
        lastUsedAt=iso(row.last_used_at),
        revokedAt=iso(row.revoked_at),
    )


@tokens_router.get("", response_model=list[TokenRead])
def list_tokens(principal: Admin, session: DbSession) -> list[TokenRead]:
    """The tokens of your organization, oldest first (the secret itself is never shown again)."""
    org = session.get(Organization, principal.org_id)
    assert org is not None
    return [_token_out(t) for t in service.list_tokens(session, org)]


@tokens_router.post("", response_model=TokenCreated, status_code=201)
def create_token(
    body: TokenCreate, principal: Admin, session: DbSession, settings: AppSettings
) -> TokenCreated:
    """Issue a token for your organization, like `npsd token create`. The token is in this reply only."""
    org = session.get(Organization, principal.org_id)
    assert org is not None
    issued = service.create_token(
        session, settings, org, body.role, timedelta(days=body.ttlDays), name=body.name
    )
    row = session.get(ApiToken, issued.jti)
    assert row is not None
    return TokenCreated(**_token_out(row).model_dump(), token=issued.token)


@tokens_router.delete("/{jti}", status_code=204, response_class=Response)
def revoke_token(
    jti: Annotated[ParamStr, Path(max_length=64)], principal: Admin, session: DbSession
) -> Response:
    """Revoke a token of your organization; it is refused from then on (other servers: within 2 s)."""
    row = service.find_token(session, principal.org_id, jti)
    service.revoke_token(session, row.jti)
    return Response(status_code=204)


def user_out(user: User) -> UserRead:
    return UserRead(id=user.id, email=user.email, role=user.role, createdAt=iso(user.created_at) or "")


@users_router.get("", response_model=list[UserRead])
def list_users(principal: Admin, session: DbSession) -> list[UserRead]:
    """The people of your organization who sign in with a password, oldest first."""
    return [user_out(u) for u in service.list_users(session, principal.org_id)]


@users_router.post("", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, principal: Admin, session: DbSession) -> UserRead:
    """Add a person with a role, like `npsd user create`. Addresses are unique across the server
    (sign-in asks for no organization): an address already in use is a 400 naming `email`."""
    org = session.get(Organization, principal.org_id)
    assert org is not None
    return user_out(service.create_user(session, org, body.email, body.role, body.password))


@users_router.delete("/{id}", status_code=204, response_class=Response)
def delete_user(
    id: Annotated[str, Path(description="User id (24 hexadecimal characters)")],
    principal: Admin,
    session: DbSession,
) -> Response:
    """Remove a person; their sessions end at once (other servers: within 2 s). You cannot remove
    yourself, nor the organization's last admin (409)."""
    user = service.find_user(session, principal.org_id, id)
    service.delete_user(session, user, principal.user_id)
    return Response(status_code=204)


def organization_out(org: Organization) -> OrganizationRead:
    return OrganizationRead(
        id=org.id,
        name=org.name,
        senderName=org.sender_name,
        senderEmail=org.sender_email,
        logoUrl=org.logo_url,
        brandColor=org.brand_color,
        privacyUrl=org.privacy_url,
        createdAt=iso(org.created_at) or "",
    )


@organization_router.get("", response_model=OrganizationRead)
def get_organization(principal: Viewer, session: DbSession) -> OrganizationRead:
    """Your organization's profile: the name, sender, logo, brand colour and privacy link that
    survey e-mails, reminders and respondent pages show."""
    org = session.get(Organization, principal.org_id)
    assert org is not None
    return organization_out(org)


@organization_router.put("", response_model=OrganizationRead)
def put_organization(body: OrganizationProfile, principal: Admin, session: DbSession) -> OrganizationRead:
    """Replace your organization's profile (admin). Fields left out or null are cleared.

    Mails sent from then on come from `senderName <senderEmail>` (else the server's
    `NPSD_SMTP_FROM`), show the logo and colour and link the privacy policy; the default survey
    question names the organization. Every invalid field is named in one 400; a name another
    organization has is a 409 naming `name`.
    """
    org = session.get(Organization, principal.org_id)
    assert org is not None
    service.update_profile(
        session,
        org,
        service.Profile(
            name=body.name,
            sender_name=body.senderName,
            sender_email=body.senderEmail,
            logo_url=body.logoUrl,
            brand_color=body.brandColor,
            privacy_url=body.privacyUrl,
        ),
    )
    return organization_out(org)
