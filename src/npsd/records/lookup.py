"""Finding records by key: one by its path key (``GET``/``PUT``/``DELETE /nps/{key}``), or many at
once by id or ``sourceId`` (the bulk upsert's keyables).

What a path key names is :func:`npsd.kit.lookup.parse_key`'s rule, the same as for contacts and
companies; only the query differs (plain columns, built once, instead of an entity).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from npsd.kit.db import one_of
from npsd.kit.errors import NotFound
from npsd.kit.lookup import parse_key
from npsd.records.fastsql import decoded
from npsd.records.output import COLUMN_NAMES, COLUMNS, T
from npsd.records.rollups import CONTACT_STATE_COLUMNS, ENDUSER, ContactState, contact_state

# built once: constructing a select costs more than running it for one row
_BY_COLUMN = {
    column: select(*COLUMNS).where(T.c.org_id == bindparam("org"), T.c[column] == bindparam("key"))
    for column in ("id", "source_id")
}


def find_record(session: Session, org_id: str, key: str) -> dict[str, Any]:
    """The record named by ``key`` (an id or ``srcid-<sourceId>``) in the organization, as a
    mapping of ``COLUMN_NAMES``, or 404 (400 naming ``id`` for a key no record can have)."""
    column, value = parse_key(key, ("srcid-",))
    row = session.execute(_BY_COLUMN[column], {"org": org_id, "key": value}).first()
    if row is None:
        raise NotFound(f"no NPS record {key}")
    return dict(zip(COLUMN_NAMES, row, strict=True))


def rows_by(
    session: Session, org_id: str, column: str, values: Collection[str], states: dict[str, ContactState]
) -> dict[str, dict[str, Any]]:
    """The organization's records whose ``column`` is one of ``values``, keyed by that value.

    Their contacts' roll-up state comes in the same query (into ``states``), for the write. One
    statement whatever the number of values (:func:`one_of`).
    """
    if not values:
        return {}
    selected, decode = decoded(session, (*COLUMNS, *CONTACT_STATE_COLUMNS))
    stmt = (
        select(*selected)
        .join_from(T, ENDUSER, ENDUSER.c.id == T.c.enduser_id)
        .where(T.c.org_id == org_id, one_of(session, T.c[column], values))
    )
    found: dict[str, dict[str, Any]] = {}
    width = len(COLUMNS)
    for row in decode(session.execute(stmt).all()):
        rec = dict(zip(COLUMN_NAMES, row[:width], strict=True))
        found[rec[column]] = rec
        state = contact_state(row[width:])
        states[state.id] = state
    return found
