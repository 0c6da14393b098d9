"""``PUT /nps``: the Planhat bulk upsert of up to 5,000 records in one transaction.

Each item is keyed by ``_id``, then ``sourceId``, within the caller's organization: a match is
updated, anything else created. Every item is validated and planned before anything is written
(:class:`npsd.records.writes.Planner`), invalid ones are reported by index while the valid ones
are written together by :func:`npsd.records.writes.write_batch`.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from npsd.kit.errors import BadRequest
from npsd.kit.ids import is_id, new_ids
from npsd.kit.timeutil import utcnow
from npsd.records.lookup import rows_by
from npsd.records.schemas import NpsInput
from npsd.records.writes import ItemRejected, Planner, begin_write, parse_items, write_batch

MAX_BULK = 5000


@dataclass
class BulkOutcome:
    """What a bulk upsert did, item by item, gathered as the items are planned: the reply needs
    every list in item order, and the route picks 200 or 206 from :attr:`failed`."""

    created: int = 0
    created_errors: list[dict[str, Any]] = field(default_factory=list)
    inserts_keys: list[dict[str, Any]] = field(default_factory=list)
    updated: int = 0
    updated_errors: list[dict[str, Any]] = field(default_factory=list)
    updates_keys: list[dict[str, Any]] = field(default_factory=list)
    nonupdates: int = 0
    modified: list[str] = field(default_factory=list)
    upserted_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.created_errors or self.updated_errors)

    def body(self) -> dict[str, Any]:
        """The reply, with exactly the seed's keys in the seed's order."""
        return {
            "created": self.created,
            "createdErrors": self.created_errors,
            "insertsKeys": self.inserts_keys,
            "updated": self.updated,
            "updatedErrors": self.updated_errors,
            "updatesKeys": self.updates_keys,
            "nonupdates": self.nonupdates,
            "modified": self.modified,
            "upsertedIds": self.upserted_ids,
            "permissionErrors": [],
        }


class _CollectionPause:
    """Defers Python's cyclic garbage collection while bulk upserts run.

    A batch allocates tens of thousands of containers (rows, inputs, parameter tuples), which
    start collections over the whole heap again and again (a tenth of a batch's time), though
    none of it forms a cycle: it is all freed by reference counting once the request ends. The
    collector is process-wide, so concurrent batches share one pause, and it is only turned back
    on if it was on when the first of them began.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._resume:
                    gc.enable()


_collection_paused = _CollectionPause()


def _keyables(raw: Any) -> tuple[str | None, str | None]:
    """The ``_id`` and ``sourceId`` an item names (strings only; anything else names nothing)."""
    if not isinstance(raw, dict):
        return None, None
    rid, sid = raw.get("_id"), raw.get("sourceId")
    return (rid if isinstance(rid, str) else None), (sid if isinstance(sid, str) else None)


def bulk_upsert(session: Session, org_id: str, items: Any) -> BulkOutcome:
    """``PUT /nps``: create or update up to 5,000 records, keyed by ``_id`` then ``sourceId``.

    Keyables are looked up in the caller's organization only. Invalid items are reported
    (``createdErrors`` / ``updatedErrors``, by whether they matched a record) while the valid ones
    are applied; a client's ``_id`` that matches nothing never names a new record. A keyable that
    an earlier applied item of the batch already used makes the later item an error.
    """
    if not isinstance(items, list):
        raise BadRequest.field("body", "must be a JSON array of NPS records")
    if len(items) > MAX_BULK:
        raise BadRequest.field("body", f"must hold at most {MAX_BULK} items; got {len(items)}")
    begin_write(session, org_id)
    with _collection_paused():
        return _upsert(session, org_id, items)


def _upsert(session: Session, org_id: str, items: list[Any]) -> BulkOutcome:
    """Validate and plan every item, looking records up by their keyables in bulk first, then
    write the valid ones together (see :func:`bulk_upsert` for the rules)."""
    outcome = BulkOutcome()
    parsed = parse_items(items)
    keyables = [_keyables(raw) for raw in items]
    planner = Planner(session, org_id, utcnow())
    states = planner.batch.states
    by_id = rows_by(
        session, org_id, "id", {rid for rid, _ in keyables if rid is not None and is_id(rid)}, states
    )
    by_sid = rows_by(
        session,
        org_id,
        "source_id",
        {sid for _, sid in keyables if sid is not None and "\x00" not in sid and len(sid) <= 500},
        states,
    )
    planner.preload(
        [p for p in parsed if isinstance(p, NpsInput)],
        known_source_ids={sid: row["id"] for sid, row in by_sid.items()},
    )
    new_record_ids = iter(new_ids(len(items)))
    targeted: dict[str, int] = {}  # record id -> index of the applied item that updates it
    used_ids: dict[str, int] = {}  # client _id -> index of the applied item that sent it
    for index, (raw, data, (rid, sid)) in enumerate(zip(items, parsed, keyables, strict=True)):
        existing = (by_id.get(rid) if rid is not None else None) or (
            by_sid.get(sid) if sid is not None else None
        )
        errors = outcome.updated_errors if existing is not None else outcome.created_errors
        try:
            if isinstance(data, ItemRejected):
                raise data
            if rid is not None and rid in used_ids:
                raise ItemRejected(f"{rid!r} was already used by item {used_ids[rid]} of this batch", "_id")
            if existing is not None:
                if existing["id"] in targeted:
                    raise ItemRejected(
                        f"names the same record as item {targeted[existing['id']]} of this batch",
                        "_id" if rid is not None and rid in by_id else "sourceId",
                    )
                changed = planner.plan_update(existing, data)
                targeted[existing["id"]] = index
                keys = {"_id": rid} if rid is not None else {}
                if sid is not None:
                    keys["sourceId"] = sid
                outcome.updates_keys.append(keys)
                if changed:
                    outcome.updated += 1
                    outcome.modified.append(existing["id"])
                else:
                    outcome.nonupdates += 1
            else:
                if sid is not None and sid in planner.batch.claimed_source_ids:
                    raise ItemRejected(
                        f"{sid!r} was already used by an earlier item of this batch", "sourceId"
                    )
                record_id = next(new_record_ids)
                planner.plan_create(data, record_id)
                keys = {"_id": record_id}
                if sid is not None:
                    keys["sourceId"] = sid
                outcome.inserts_keys.append(keys)
                outcome.upserted_ids.append(record_id)
                outcome.created += 1
            if rid is not None:
                used_ids[rid] = index
        except ItemRejected as exc:
            errors.append({"index": index, "item": raw, "error": exc.text})
    write_batch(session, planner.batch)
    return outcome
