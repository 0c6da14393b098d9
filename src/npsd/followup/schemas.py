"""Shapes of ``/v1/answers``: an answer with its tags, notes and follow-up (camelCase JSON;
unknown fields are a 400)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from npsd.kit.validation import Email, Storable
from npsd.records.schemas import NpsRead

Status = Literal["open", "contacted", "resolved"]
STATUSES: tuple[str, ...] = ("open", "contacted", "resolved")
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_NOTE_LENGTH = 5000
# What a tag may not hold: ``;`` separates tags in exports, and a control character (a line
# break, a tab) would split or hide one in a spreadsheet cell or a badge.
TAG_SEPARATOR = ";"


def tag_key(tag: str) -> str:
    """The form under which two tags are the same tag (``Billing`` and ``billing``)."""
    return tag.casefold()


def _tag(value: str) -> str:
    tag = value.strip()
    if not tag:
        raise ValueError("must not be blank")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"must be at most {MAX_TAG_LENGTH} characters")
    if TAG_SEPARATOR in tag:
        raise ValueError("must not contain ';' (it separates tags in exports)")
    if any(unicodedata.category(ch) == "Cc" for ch in tag):
        raise ValueError("must not contain control characters such as line breaks or tabs")
    return tag


def _distinct_tags(tags: list[str]) -> list[str]:
    kept: dict[str, str] = {}
    for tag in tags:
        kept.setdefault(tag_key(tag), tag)  # the first spelling wins
    if len(kept) > MAX_TAGS:
        raise ValueError(f"must hold at most {MAX_TAGS} different tags")
    return list(kept.values())


def _note(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be blank")
    return text


Tag = Annotated[str, Field(max_length=200), Storable, AfterValidator(_tag)]
NoteText = Annotated[str, Field(min_length=1, max_length=MAX_NOTE_LENGTH), Storable, AfterValidator(_note)]


class TagsInput(BaseModel):
    """The whole set of an answer's tags: it replaces the tags the answer had."""

    model_config = ConfigDict(extra="forbid")

    tags: Annotated[list[Tag], Field(max_length=100), AfterValidator(_distinct_tags)] = Field(
        description=f"Each 1-{MAX_TAG_LENGTH} characters after trimming, without ';' or control "
        f"characters; duplicates (ignoring case) are dropped, the first spelling kept; at most "
        f"{MAX_TAGS} different tags. An empty list removes every tag."
    )


class NoteInput(BaseModel):
    """A note on an answer."""

    model_config = ConfigDict(extra="forbid")

    text: NoteText = Field(description=f"1-{MAX_NOTE_LENGTH} characters, trimmed")


class FollowUpInput(BaseModel):
    """A new follow-up status, and optionally a new assignee."""

    model_config = ConfigDict(extra="forbid")

    status: Status = Field(description="open, contacted or resolved")
    assigneeEmail: Email | None = Field(
        None,
        description="The address of a user of your organization; null removes the assignee; "
        "left out, the assignee stays as it is",
    )


class NoteRead(BaseModel):
    id: str
    text: str
    authorEmail: str = Field(
        description="The address of the user who wrote it (as it was then); for an API token "
        "without a user, the token's name, or `api`"
    )
    createdAt: str


class FollowUpChange(BaseModel):
    status: Status
    assigneeEmail: str | None
    changedBy: str = Field(description="Who made the change (an address, or an API token's name)")
    changedAt: str


class FollowUpRead(BaseModel):
    status: Status | None = Field(description="null until someone sets a status")
    assigneeEmail: str | None
    updatedAt: str | None
    updatedBy: str | None
    history: list[FollowUpChange] = Field(description="Every change, newest first")


class TagDetail(BaseModel):
    """One tag of an answer with who added it and when."""

    tag: str = Field(description="The tag, as in `tags`")
    addedBy: str | None = Field(
        description="The address of the user who added the tag; null when no user is known: "
        "added with an API token without a user, or by a user since deleted"
    )
    addedAt: str = Field(
        description="When the tag was added (ISO 8601, UTC). Putting the tags again keeps the "
        "time and author of the tags the answer keeps"
    )


class AnswerRead(NpsRead):
    """An answer as `GET /nps/{id}` shows it, with what the team did with it."""

    tags: list[str] = Field(description="Sorted alphabetically, ignoring case")
    tagDetails: list[TagDetail] = Field(
        description="The same tags in the same order as `tags`, each with who added it (`addedBy`) "
        "and when (`addedAt`)"
    )
    notes: list[NoteRead] = Field(description="Newest first")
    followUp: FollowUpRead
