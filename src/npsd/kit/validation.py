"""Input types shared by every domain: clean text, e-mail addresses, dates, custom objects.

These reject what the databases cannot store faithfully (NUL bytes, over-long strings, deep
nesting), so bad input is a 400 naming the field rather than a 500 from the driver.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
)

_EMAIL_RE = re.compile(
    r"^(?=.{3,320}$)"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u00a0-\uffff-]+)*"
    r"@(?:[A-Za-z0-9\u00a0-\uffff](?:[A-Za-z0-9\u00a0-\uffff-]{0,61}[A-Za-z0-9\u00a0-\uffff])?\.)+"
    r"[A-Za-z\u00a0-\uffff][A-Za-z0-9\u00a0-\uffff-]{0,61}[A-Za-z0-9\u00a0-\uffff]$"
)
MAX_CUSTOM_DEPTH = 8
MAX_CUSTOM_BYTES = 64 * 1024
# Numbers in ``custom`` must survive a round trip through PostgreSQL's jsonb and back to JSON:
# jsonb returns a float such as 1e30 as a huge integer, which JSON encoders then refuse.
MAX_CUSTOM_NUMBER = 2**63


def check_email(value: str) -> str:
    """Accept a syntactically valid address (RFC 5322 dot-atom, IDN domains); keep it as given.

    A compiled pattern rather than a DNS-aware validator: the bulk path checks 5,000 of these per request.
    """
    if not _EMAIL_RE.match(value):
        raise ValueError("must be a valid e-mail address")
    return value.strip()


def email_key(email: str) -> str:
    """The case-insensitive identity of an address."""
    return email.strip().lower()


def storable(value: str) -> str:
    """Text both databases store and every encoder writes back: no NUL, no lone surrogate
    (raises ValueError saying which, for the caller to name its field)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from exc
    return value


def _strip_email(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def to_utc(value: datetime) -> datetime:
    """Normalize to naive UTC, the storage form of every time column."""
    if value.tzinfo is not None:
        # subtracting the offset is the same as astimezone(UTC) and much cheaper per value
        # (a bulk upsert normalizes up to 10,000 of these)
        offset = value.utcoffset()
        value = (value - offset if offset else value).replace(tzinfo=None)
    if not 1970 <= value.year <= 2200:
        raise ValueError("must be a date between 1970 and 2200")
    return value


def _check_custom(value: Any, depth: int = 0) -> None:
    if depth > MAX_CUSTOM_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_CUSTOM_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            _check_custom(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_custom(item, depth + 1)
    elif isinstance(value, str):
        storable(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= MAX_CUSTOM_NUMBER:
        raise ValueError(f"numbers must be smaller than {MAX_CUSTOM_NUMBER} in magnitude")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("numbers must be finite")


def check_custom(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    _check_custom(value)
    if len(repr(value)) > MAX_CUSTOM_BYTES:
        raise ValueError(f"must be at most {MAX_CUSTOM_BYTES} bytes")
    return value


# Text both databases store faithfully. A bounded text type is written out as a type alias,
# ``Annotated[str, Field(max_length=N), Storable]``, so mypy checks the fields that use it.
Storable = AfterValidator(storable)


def text(max_length: int) -> Any:
    """A string of at most ``max_length`` characters without NUL bytes.

    The result is only usable at runtime (mypy sees a call, not a type); prefer an alias
    ``Annotated[str, Field(max_length=N), Storable]``.
    """
    return Annotated[str, Field(max_length=max_length), Storable]


Email = Annotated[
    str,
    BeforeValidator(_strip_email),
    Field(max_length=320),
    AfterValidator(check_email),
    AfterValidator(storable),
]
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]
Score = Annotated[StrictInt, Field(ge=0, le=10, description="Integer 0-10")]
Custom = Annotated[dict[str, Any] | None, AfterValidator(check_custom)]
Name = Annotated[str, Field(max_length=500), Storable]
ShortText = Annotated[str, Field(max_length=200), Storable]
LongText = Annotated[str, Field(max_length=65_536), Storable]


class ColumnInput(BaseModel):
    """A request body whose fields map to table columns (``COLUMNS``: API field -> column).

    ``column_values`` gives only what the client sent (explicit nulls included), so partial
    updates change exactly those columns; a create sets every field, defaults included.
    """

    COLUMNS: ClassVar[dict[str, str]] = {}
    SETS_EVERY_FIELD: ClassVar[bool] = False
    NOT_NULL: ClassVar[frozenset[str]] = frozenset()  # fields that may be left out but not sent as null

    @field_validator("*")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("must not be null")
        return value

    def column_values(self) -> dict[str, Any]:
        sent = self.model_fields_set
        return {
            col: getattr(self, f) for f, col in self.COLUMNS.items() if self.SETS_EVERY_FIELD or f in sent
        }
