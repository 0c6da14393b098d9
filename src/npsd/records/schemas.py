"""Planhat NPS record shapes.

Input accepts every field the API outputs (Planhat clients send back what they read): read-only
fields (``_id`` outside bulk upsert, ``euId``, ``scoreType``, ``__v``, ``createdAt``, ``updatedAt``,
``npsId``) are ignored and the legacy aliases ``nps``, ``npsComment``, ``npsDate``, ``npsSent`` map
to ``score``, ``comment``, ``dateAnswered``, ``dateSent``. Any other field is a 400 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from npsd.kit.ids import is_id
from npsd.kit.validation import Custom, Email, LongText, Score, ShortText, Storable, UtcDatetime


def _object_id(value: str) -> str:
    if not is_id(value):
        raise ValueError("must be a 24-character hexadecimal id")
    return value


def _milliseconds(value: datetime) -> datetime:
    # The API prints milliseconds; storing more would make a value read back and sent again
    # look like a change (a spurious ``__v`` bump, a wrong ``nonupdates`` count).
    extra = value.microsecond % 1000
    return value.replace(microsecond=value.microsecond - extra) if extra else value


ObjectId = Annotated[str, AfterValidator(_object_id)]
Date = Annotated[UtcDatetime, AfterValidator(_milliseconds)]
CampaignId = Annotated[str, Field(max_length=64), Storable]
SourceId = Annotated[str, Field(max_length=500), Storable]

# input field -> column; the first name wins when a client sends both a field and its alias
FIELD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("email", "email"),
    ("score", "score"),
    ("nps", "score"),
    ("comment", "comment"),
    ("npsComment", "comment"),
    ("cId", "company_id"),
    ("campaignId", "campaign_id"),
    ("source", "source"),
    ("sourceId", "source_id"),
    ("dateSent", "date_sent"),
    ("npsSent", "date_sent"),
    ("dateReminderSent", "date_reminder_sent"),
    ("dateAnswered", "date_answered"),
    ("npsDate", "date_answered"),
    ("custom", "custom"),
)
NOT_NULL_COLUMNS = frozenset({"email", "score", "date_answered"})


class NpsInput(BaseModel):
    """One NPS record as sent by a client; every field optional (create checks ``email`` and ``score``)."""

    # Only the API names are accepted: ``id_`` / ``version_`` are Python spellings, not fields.
    model_config = ConfigDict(extra="forbid", validate_by_name=False, validate_by_alias=True)

    email: Email | None = None
    score: Score | None = None
    comment: LongText | None = None
    cId: ObjectId | None = Field(None, description="Company id; must exist in your organization")
    campaignId: CampaignId | None = Field(None, description="Survey id (SalesOS) or campaign id (Planhat)")
    source: ShortText | None = None
    sourceId: SourceId | None = Field(None, description="Id in the source system; unique per organization")
    dateSent: Date | None = None
    dateReminderSent: Date | None = None
    dateAnswered: Date | None = Field(None, description="Defaults to now on create")
    custom: Custom = None
    # legacy aliases
    nps: Score | None = Field(None, description="Alias of score")
    npsComment: LongText | None = Field(None, description="Alias of comment")
    npsDate: Date | None = Field(None, description="Alias of dateAnswered")
    npsSent: Date | None = Field(None, description="Alias of dateSent")
    # read-only, accepted and ignored (``_id`` is the bulk upsert keyable)
    id_: Any = Field(None, alias="_id", description="Ignored, except as the bulk-upsert keyable")
    euId: Any = Field(None, description="Read-only; ignored")
    scoreType: Any = Field(None, description="Read-only; derived from score")
    version_: Any = Field(None, alias="__v", description="Read-only; ignored")
    createdAt: Any = Field(None, description="Read-only; ignored")
    updatedAt: Any = Field(None, description="Read-only; ignored")
    npsId: Any = Field(None, description="Read-only; ignored")

    def column_values(self) -> dict[str, Any]:
        """The columns this input sets, with aliases resolved (explicit nulls included)."""
        sent = self.model_fields_set
        values: dict[str, Any] = {}
        for name, column in FIELD_COLUMNS:
            if name in sent and column not in values:
                values[column] = getattr(self, name)
        return values

    def sent_name(self, column: str) -> str:
        """The field name the client used for ``column`` (for error messages)."""
        sent = self.model_fields_set
        return next((name for name, col in FIELD_COLUMNS if col == column and name in sent), column)


class NpsRead(BaseModel):
    """An NPS record as returned by every `/nps` endpoint (``_id`` and legacy aliases included)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id")
    email: str
    score: int
    comment: str | None
    scoreType: str = Field(description="promoter (9-10), passive (7-8) or detractor (0-6)")
    euId: str
    cId: str | None
    campaignId: str | None
    source: str | None
    sourceId: str | None
    dateSent: str | None
    dateReminderSent: str | None
    dateAnswered: str
    custom: dict[str, Any] | None
    createdAt: str
    updatedAt: str
    version: int = Field(alias="__v")
    nps: int
    npsComment: str | None
    npsDate: str
    npsSent: str | None
    npsId: str


class DeleteResult(BaseModel):
    """The Planhat (MongoDB-style) delete reply: ``{"n": 1, "ok": 1, "deletedCount": 1}``."""

    n: int
    ok: int
    deletedCount: int


class ItemError(BaseModel):
    """One bulk item that was not applied: its position in the array, the item as sent, and why."""

    index: int
    item: Any
    error: str


class BulkResult(BaseModel):
    """The Planhat bulk upsert reply, exactly the seed's keys."""

    created: int
    createdErrors: list[ItemError]
    insertsKeys: list[dict[str, Any]]
    updated: int
    updatedErrors: list[ItemError]
    updatesKeys: list[dict[str, Any]]
    nonupdates: int
    modified: list[str]
    upsertedIds: list[str]
    permissionErrors: list[Any]


BULK_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "maxItems": 5000,
                    "items": {"$ref": "#/components/schemas/NpsInput"},
                }
            }
        },
    }
}
