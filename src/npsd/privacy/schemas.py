"""Erasure shapes (camelCase JSON; unknown fields are a 400)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from npsd.kit.validation import Email

ErasureState = Literal["queued", "running", "done", "failed"]


class ErasureCreate(BaseModel):
    """Whom to erase."""

    model_config = ConfigDict(extra="forbid")

    email: Email = Field(description="The person's address (matched case-insensitively)")


class ErasureCounts(BaseModel):
    """What the erasure removed (zeros until it is done)."""

    answers: int = Field(description="Answers (NPS records) in every survey")
    contacts: int = Field(description="The contact (enduser) with that address: 0 or 1")
    invitations: int = Field(description="Survey invitations to the address")
    idempotencyReplies: int = Field(description="Stored `Idempotency-Key` replies that held the address")
    webhookDeliveries: int = Field(description="Stored webhook deliveries whose body held the address")


class ErasureRead(BaseModel):
    """One erasure request and where it stands. The address itself is not kept."""

    id: str
    state: ErasureState = Field(description="queued, running, done or failed")
    source: str = Field(description="api or cli")
    counts: ErasureCounts
    error: str | None = Field(description="Why it failed (state failed); request it again")
    createdAt: str
    startedAt: str | None
    finishedAt: str | None
