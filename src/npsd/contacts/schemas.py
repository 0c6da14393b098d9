"""Planhat company and enduser shapes. Input accepts every output field; read-only ones are ignored."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from npsd.kit.validation import ColumnInput, Custom, Email, LongText, Name, ShortText, Storable
from npsd.records.schemas import ObjectId

_DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
)


def _domains(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        domain = value.strip().lower().lstrip("@")
        if not _DOMAIN_RE.match(domain):
            raise ValueError(f"{value!r} is not a domain name such as example.com")
        if domain not in out:
            out.append(domain)
    return out


Domains = Annotated[
    list[Annotated[str, Field(max_length=253)]], Field(max_length=100), AfterValidator(_domains)
]
ExternalKey = Annotated[str, Field(max_length=500), Storable]
Phone = Annotated[str, Field(max_length=100), Storable]


class CompanyInput(ColumnInput):
    """A company as sent by a client (POST needs ``name``; PUT changes only the fields sent)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name | None = None
    domains: Domains | None = None
    externalId: ExternalKey | None = None
    sourceId: ExternalKey | None = None
    status: ShortText | None = None
    phase: ShortText | None = None
    description: LongText | None = None
    custom: Custom = None
    # read-only
    id_: Any = Field(None, alias="_id", description="Read-only; ignored")
    nps: Any = Field(None, description="Read-only; computed from NPS records")
    npsResponses: Any = Field(None, description="Read-only")
    npsUpdatedAt: Any = Field(None, description="Read-only")
    createdAt: Any = Field(None, description="Read-only")
    updatedAt: Any = Field(None, description="Read-only")
    version_: Any = Field(None, alias="__v", description="Read-only")

    COLUMNS: ClassVar[dict[str, str]] = {
        "name": "name",
        "domains": "domains",
        "externalId": "external_id",
        "sourceId": "source_id",
        "status": "status",
        "phase": "phase",
        "description": "description",
        "custom": "custom",
    }


class CompanyRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str = Field(alias="_id")
    name: str
    domains: list[str]
    externalId: str | None
    sourceId: str | None
    status: str | None
    phase: str | None
    description: str | None
    custom: dict[str, Any] | None
    nps: float | None = Field(
        description="NPS (-100..100) over the latest answers of its contacts, last 360 days"
    )
    npsResponses: int
    npsUpdatedAt: str | None
    createdAt: str
    updatedAt: str
    version: int = Field(alias="__v")


class EnduserInput(ColumnInput):
    """A contact as sent by a client (POST needs ``email``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: Email | None = None
    name: Name | None = None
    firstName: ShortText | None = None
    lastName: ShortText | None = None
    position: ShortText | None = None
    phone: Phone | None = None
    primary: StrictBool | None = None
    archived: StrictBool | None = None
    companyId: ObjectId | None = None
    externalId: ExternalKey | None = None
    sourceId: ExternalKey | None = None
    custom: Custom = None
    # read-only
    id_: Any = Field(None, alias="_id", description="Read-only; ignored")
    companyName: Any = Field(None, description="Read-only")
    nps: Any = Field(None, description="Read-only; the latest answer's score")
    npsComment: Any = Field(None, description="Read-only")
    npsDate: Any = Field(None, description="Read-only")
    npsId: Any = Field(None, description="Read-only")
    createdAt: Any = Field(None, description="Read-only")
    updatedAt: Any = Field(None, description="Read-only")
    version_: Any = Field(None, alias="__v", description="Read-only")

    COLUMNS: ClassVar[dict[str, str]] = {
        "email": "email",
        "name": "name",
        "firstName": "first_name",
        "lastName": "last_name",
        "position": "position",
        "phone": "phone",
        "primary": "primary",
        "archived": "archived",
        "companyId": "company_id",
        "externalId": "external_id",
        "sourceId": "source_id",
        "custom": "custom",
    }


class EnduserRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str = Field(alias="_id")
    email: str
    name: str | None
    firstName: str | None
    lastName: str | None
    position: str | None
    phone: str | None
    primary: bool
    archived: bool
    companyId: str | None
    externalId: str | None
    sourceId: str | None
    custom: dict[str, Any] | None
    nps: int | None = Field(description="Score of the latest answer")
    npsComment: str | None
    npsDate: str | None
    npsId: str | None
    createdAt: str
    updatedAt: str
    version: int = Field(alias="__v")
