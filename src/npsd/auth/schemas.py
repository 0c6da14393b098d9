"""Bodies of the authentication endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from npsd.kit.validation import Storable


class LoginRequest(BaseModel):
    """E-mail and password of a user made with ``npsd user create``."""

    model_config = ConfigDict(extra="forbid")
    # looked up in the database: no NUL characters
    email: Annotated[str, Field(max_length=320), Storable]
    password: str = Field(max_length=1024)


class LoginResponse(BaseModel):
    accessToken: str
    tokenType: str = "Bearer"
    expiresAt: str


class TokenCreate(BaseModel):
    """A new API token of the caller's organization."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "editor", "viewer"]
    name: Annotated[str, Field(max_length=200), Storable] | None = None
    ttlDays: int = Field(90, ge=1, le=3650, description="Lifetime in days")


class TokenRead(BaseModel):
    jti: str
    name: str | None
    role: str
    kind: str = Field(description="api (made by `npsd token create` or POST /v1/tokens) or session (login)")
    createdAt: str
    expiresAt: str
    lastUsedAt: str | None = Field(description="Updated at most every 5 minutes")
    revokedAt: str | None


class TokenCreated(TokenRead):
    token: str = Field(description="The bearer token; shown only in this reply")


class UserCreate(BaseModel):
    """A new person of the caller's organization, who signs in with this address and password."""

    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, Field(max_length=320), Storable]
    role: Literal["admin", "editor", "viewer"]
    password: str = Field(max_length=1024, description="At least 8 characters")


class UserRead(BaseModel):
    id: str
    email: str = Field(description="Stored lower-case; sign-in ignores case")
    role: str
    createdAt: str


_ProfileText = Annotated[str, Field(max_length=2000), Storable]


class OrganizationProfile(BaseModel):
    """How the organization speaks to respondents: the sender of its survey e-mails, the logo and
    colour of its mails and respondent pages, the link to its privacy policy. `PUT` replaces
    the whole profile: a field left out or null is cleared (`name` is required)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(max_length=200), Storable] = Field(
        description="The organization's name, unique on this server; used in the default survey question"
    )
    senderName: _ProfileText | None = Field(
        None, description="Display name of the From header of survey e-mails (with senderEmail)"
    )
    senderEmail: _ProfileText | None = Field(
        None, description="Address survey e-mails come from; null: the server's NPSD_SMTP_FROM"
    )
    logoUrl: _ProfileText | None = Field(
        None, description="http(s) URL of the logo shown atop mails and respondent pages"
    )
    brandColor: _ProfileText | None = Field(None, description="Colour of buttons and header, #rrggbb")
    privacyUrl: _ProfileText | None = Field(
        None, description="http(s) URL of the privacy policy, linked from mails and pages"
    )


class OrganizationRead(OrganizationProfile):
    id: str
    createdAt: str
