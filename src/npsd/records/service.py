"""NPS records, the face the routes and the other areas call: create, update, delete, find,
list and bulk upsert, each keeping every roll-up exact.

The work lives in modules named for their jobs: :mod:`~npsd.records.output` (the row type and
its JSON shape), :mod:`~npsd.records.lookup` (finding records by key),
:mod:`~npsd.records.writes` (the write planner and the set-based write),
:mod:`~npsd.records.bulk` (``PUT /nps``) and :mod:`~npsd.records.queries` (the list query).
The single-record operations below are thin compositions of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import new_ids
from npsd.kit.timeutil import utcnow
from npsd.records.bulk import bulk_upsert
from npsd.records.lookup import find_record
from npsd.records.output import COLUMN_NAMES, OUTPUT_FIELDS, T, to_output
from npsd.records.queries import ListQuery, count_records, filtered, list_records, ordered
from npsd.records.schemas import NpsInput
from npsd.records.writes import ItemRejected, Planner, begin_write, delete_records, write_batch

__all__ = [
    "OUTPUT_FIELDS",
    "ListQuery",
    "T",
    "bulk_upsert",
    "count_records",
    "create_record",
    "create_records",
    "delete_record",
    "delete_records",
    "filtered",
    "find_record",
    "list_records",
    "ordered",
    "to_output",
    "update_record",
]


def create_record(session: Session, org_id: str, data: NpsInput) -> dict[str, Any]:
    """``POST /nps``: always a new record (an existing ``sourceId`` is a 409).

    Returns the stored row as a mapping of ``COLUMN_NAMES``.
    """
    result = create_records(session, [(org_id, data)])[0]
    if isinstance(result, Exception):
        raise result
    return result


def create_records(
    session: Session, items: Sequence[tuple[str, NpsInput]]
) -> list[dict[str, Any] | Exception]:
    """Create several independent records in the current transaction, one write per organization.

    Each item succeeds (its stored row, as a mapping of ``COLUMN_NAMES``) or fails on its own
    (the 400/409 it would get alone: e.g. the second of two items claiming one ``sourceId``).
    """
    results: list[dict[str, Any] | Exception] = [BadRequest("not applied")] * len(items)
    by_org: dict[str, list[int]] = {}
    for index, (org_id, _) in enumerate(items):
        by_org.setdefault(org_id, []).append(index)
    for org_id, indexes in by_org.items():
        begin_write(session, org_id)
        planner = Planner(session, org_id, utcnow())
        planner.preload([items[i][1] for i in indexes])
        rows: list[tuple[int, dict[str, Any]]] = []
        for index, record_id in zip(indexes, new_ids(len(indexes)), strict=True):
            try:
                rows.append((index, planner.plan_create(items[index][1], record_id)))
            except ItemRejected as exc:
                results[index] = exc.to_http()
        write_batch(session, planner.batch)
        for index, row in rows:
            results[index] = {name: row[name] for name in COLUMN_NAMES}  # as written: no read-back
    return results


def update_record(session: Session, org_id: str, record_id: str, data: NpsInput) -> dict[str, Any]:
    """``PUT /nps/{id}``: partial update; ``custom`` merges key by key and ``__v`` increments.

    The record is read again once the organization's write lock is held, so two concurrent
    updates of one record apply one after the other. Returns the stored row (``COLUMN_NAMES``).
    """
    begin_write(session, org_id)
    before = find_record(session, org_id, record_id)
    planner = Planner(session, org_id, utcnow())
    planner.preload([data])
    try:
        changed = planner.plan_update(before, data)
    except ItemRejected as exc:
        raise exc.to_http() from exc
    if not changed:
        return before
    write_batch(session, planner.batch)
    return find_record(session, org_id, record_id)


def delete_record(session: Session, org_id: str, record_id: str) -> int:
    """``DELETE /nps/{id}``: one record; 404 if it is gone (deleted meanwhile)."""
    begin_write(session, org_id)
    n = delete_records(session, org_id, T.c.id == record_id)
    if n == 0:
        raise NotFound(f"no NPS record {record_id}")
    return n
