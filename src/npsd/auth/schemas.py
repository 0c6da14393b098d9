"""Bodies of the authentication endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from npsd.validation import text


class LoginRequest(BaseModel):
    """E-mail and password of a user made with ``npsd user create``."""

    model_config = ConfigDict(extra="forbid")
    email: text(320)  # type: ignore[valid-type]  # looked up in the database: no NUL characters
    password: str = Field(max_length=1024)


class LoginResponse(BaseModel):
    accessToken: str
    tokenType: str = "Bearer"
    expiresAt: str
