"""What a record row is and how it is shown: the one named row type every record read selects,
and the Planhat JSON object the API prints for it.

:class:`RecordRow` fixes the columns and their order once. :data:`COLUMNS` (the select list) is
built from its fields, so the list, the point reads, the write path's replies and the exports
(which index rows by the type's field positions) cannot disagree about where a column sits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import JSON, DateTime, String, type_coerce

from npsd.analytics.nps import category
from npsd.kit.models import NpsRecord
from npsd.kit.timeutil import iso

T = NpsRecord.__table__


class RecordRow(NamedTuple):
    """One NPS record as every record read selects it (:data:`COLUMNS`, in this order).

    Reads that take values raw (the list's SQLite fast path, the exports) keep the positions and
    carry text where the stored form is text: dates as ``YYYY-MM-DD HH:MM:SS.ffffff`` or ISO 8601,
    ``custom`` as JSON text.
    """

    id: str
    email: str
    score: int
    comment: str | None
    enduser_id: str
    company_id: str | None
    campaign_id: str | None
    source: str | None
    source_id: str | None
    date_sent: datetime | None
    date_reminder_sent: datetime | None
    date_answered: datetime
    custom: Any
    created_at: datetime
    updated_at: datetime
    version: int


COLUMN_NAMES: tuple[str, ...] = RecordRow._fields
COLUMNS = tuple(T.c[name] for name in COLUMN_NAMES)

# every field of the JSON object and the column it shows (``sort`` orders by that column)
FIELD_COLUMNS: dict[str, Any] = {
    "_id": T.c.id,
    "npsId": T.c.id,
    "email": T.c.email,
    "score": T.c.score,
    "nps": T.c.score,
    "scoreType": T.c.score,
    "comment": T.c.comment,
    "npsComment": T.c.comment,
    "euId": T.c.enduser_id,
    "cId": T.c.company_id,
    "campaignId": T.c.campaign_id,
    "source": T.c.source,
    "sourceId": T.c.source_id,
    "dateSent": T.c.date_sent,
    "npsSent": T.c.date_sent,
    "dateReminderSent": T.c.date_reminder_sent,
    "dateAnswered": T.c.date_answered,
    "npsDate": T.c.date_answered,
    "custom": T.c.custom,
    "createdAt": T.c.created_at,
    "updatedAt": T.c.updated_at,
    "__v": T.c.version,
}
# the fields ``select`` and ``sort`` accept: exactly those of the JSON object
OUTPUT_FIELDS = frozenset(FIELD_COLUMNS)


def record_row(values: Mapping[str, Any]) -> RecordRow:
    """The :class:`RecordRow` of a mapping that holds (at least) every column by name."""
    return RecordRow._make([values[name] for name in COLUMN_NAMES])


def to_output(
    row: Sequence[Any], stamp: Callable[[Any], str | None] = iso, load: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """A record row (a :class:`RecordRow`, or any sequence in its field order) as the Planhat
    JSON object.

    ``stamp`` turns a stored time into the API's ISO form and ``load`` decodes ``custom``; the
    defaults take what SQLAlchemy returns, the list's SQLite fast path passes raw-value versions.
    Unpacked by position rather than wrapped in the named type: the list formats 10,000 rows.
    """
    (
        rid,
        email,
        score,
        comment,
        euid,
        cid,
        campaign,
        source,
        source_id,
        sent,
        reminded,
        answered,
        custom,
        created,
        updated,
        version,
    ) = row
    answered_iso = stamp(answered)
    sent_iso = stamp(sent)
    return {
        "_id": rid,
        "email": email,
        "score": score,
        "comment": comment,
        "scoreType": category(score),
        "euId": euid,
        "cId": cid,
        "campaignId": campaign,
        "source": source,
        "sourceId": source_id,
        "dateSent": sent_iso,
        "dateReminderSent": stamp(reminded),
        "dateAnswered": answered_iso,
        "custom": load(custom) if load is not None else custom,
        "createdAt": stamp(created),
        "updatedAt": stamp(updated),
        "__v": version,
        "nps": score,
        "npsComment": comment,
        "npsDate": answered_iso,
        "npsSent": sent_iso,
        "npsId": rid,
    }


def output_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object of a record held as a mapping of its columns (the write path's rows)."""
    return to_output(record_row(values))


# On SQLite a stored time is the text ``YYYY-MM-DD HH:MM:SS.ffffff`` and ``custom`` is JSON text.
# The list reads them raw and reshapes the text, rather than parse every value into Python
# objects and format it again: on 10,000 rows that is a good part of the request.
RAW_COLUMNS = tuple(
    type_coerce(c, String).label(c.name) if isinstance(c.type, DateTime | JSON) else c for c in COLUMNS
)


def raw_stamp(value: str | None) -> str | None:
    """A time as SQLite stores it, in the API's ISO form (what :func:`iso` prints)."""
    if value is None:
        return None
    if len(value) == 26:
        return f"{value[:10]}T{value[11:23]}Z"
    return iso(datetime.fromisoformat(value))


def raw_json(value: str | None) -> Any:
    """``custom`` as SQLite stores it (JSON text), decoded."""
    return None if value is None else orjson.loads(value)
