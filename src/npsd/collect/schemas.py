"""Shapes of the collecting-answers API: invitations, their per-recipient results, unsubscribes.

Like the rest of ``/v1``, bodies reject unknown fields. A bad *recipient* does not fail the
request, though: it comes back as ``{"status": "invalid", "reason": ...}`` at its position, so a
client sending 5,000 addresses learns exactly which ones were not queued and why.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from npsd.kit.validation import Custom, Email, Name, UtcDatetime
from npsd.records.schemas import ObjectId

MAX_RECIPIENTS = 5000
_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
InvitationStatus = Literal["queued", "sent", "failed", "answered", "reminded", "cancelled"]
ResultStatus = Literal["queued", "throttled", "unsubscribed", "invalid", "duplicate"]


def _locale(value: str) -> str:
    if not _LOCALE_RE.match(value):
        raise ValueError("must be a language tag such as en, de-CH or pt-BR")
    return value


Locale = Annotated[str, Field(max_length=16), AfterValidator(_locale)]


class RecipientIn(BaseModel):
    """One address to invite."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name | None = Field(None, description="Used in the greeting of the e-mail")
    companyId: ObjectId | None = Field(
        None,
        description="Company of the respondent; must exist in your "
        "organization. Defaults to the contact's company",
    )
    locale: Locale | None = Field(
        None,
        description="Language of the e-mail and page (en, de, fr, es); defaults to the survey's language",
    )
    properties: Custom = Field(
        None, description="Free-form values kept with the invitation and copied to the answer's `custom`"
    )


class InvitationsCreate(BaseModel):
    """Up to 5,000 recipients and an optional time to send at (default: now)."""

    model_config = ConfigDict(extra="forbid")

    recipients: Annotated[
        list[Annotated[RecipientIn | Any, Field(union_mode="left_to_right")]],
        Field(
            min_length=1,
            max_length=MAX_RECIPIENTS,
            description="Each item a recipient object; an invalid one is reported, not fatal",
        ),
    ]
    sendAt: UtcDatetime | None = Field(None, description="When to send (ISO 8601); a past time sends now")


class InvitationResult(BaseModel):
    """What happened to one recipient, at its position in the request."""

    email: str | None = Field(description="The address as sent (null when it was not a string)")
    status: ResultStatus = Field(
        description=(
            "queued: an e-mail will be sent (see invitationId); throttled: surveyed too recently by any survey "
            "of your organization (see nextEligibleAt); unsubscribed: the address opted out; invalid: see "
            "reason; duplicate: the address appears earlier in this request or already has an open "
            "invitation to this survey"
        )
    )
    invitationId: str | None = None
    nextEligibleAt: str | None = None
    reason: str | None = None


class InvitationResults(BaseModel):
    results: list[InvitationResult]


class InvitationRead(BaseModel):
    """One invitation and where it stands."""

    id: str
    surveyId: str
    email: str
    name: str | None
    companyId: str | None
    enduserId: str | None
    locale: str | None
    properties: dict[str, Any] | None
    status: InvitationStatus = Field(
        description=(
            "queued (not sent yet), sent, reminded (sent, then reminded, no answer yet), answered, "
            "failed (see failedReason) or cancelled"
        )
    )
    sendAt: str
    sentAt: str | None
    remindedAt: str | None
    answeredAt: str | None
    cancelledAt: str | None
    failedReason: str | None
    responseId: str | None = Field(description="The answer's NPS record id (`/nps/{id}`), once answered")
    expiresAt: str = Field(description="The respondent link stops working after this time")
    createdAt: str
    updatedAt: str


class RemindersQueued(BaseModel):
    """How many reminders were queued to go out now."""

    queued: int


class LinkRead(BaseModel):
    """The survey's public link for the link channel (anonymous, or identified with `?email=`)."""

    url: str
    publicId: str


class UnsubscribeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class UnsubscribeRead(BaseModel):
    """An address that receives no more survey e-mails from your organization."""

    email: str | None = Field(
        description="The address you sent or asked for; null in the full list (only a one-way hash is kept)"
    )
    source: str = Field(description="link (the page), one-click (RFC 8058 mail client button) or api")
    invitationId: str | None = Field(description="The invitation whose link was used, if any")
    createdAt: str
