"""NPS records: create, update, delete, list and bulk upsert, each keeping every roll-up exact.

Creates and updates go through :func:`write_batch`, so the single-record endpoints and the bulk
upsert share one path (deletes through :func:`delete_records`): validate everything first, then write with a handful of set-based statements
(contacts, records, roll-up deltas, contact and company roll-ups) inside the request's
transaction. A batch is therefore applied whole or not at all, and a killed process leaves no
half-applied item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import JSON, ColumnElement, DateTime, Select, String, bindparam, delete, select, type_coerce
from sqlalchemy.orm import Session

from npsd.analytics.nps import category, in_category
from npsd.kit.db import chunks, lock_org_writes
from npsd.kit.errors import BadRequest, Conflict, NotFound, NpsdError, summary, validation_details
from npsd.kit.events import emit
from npsd.kit.ids import is_id, new_ids
from npsd.kit.models import Company, Enduser, NpsRecord
from npsd.kit.timeutil import iso, utcnow
from npsd.kit.validation import email_key
from npsd.records.fastsql import insert_many, update_many
from npsd.records.filing import file_addresses
from npsd.records.rollups import (
    CONTACT_STATE_COLUMNS,
    ENDUSER,
    ContactState,
    RollupKey,
    apply_deltas,
    contact_state,
    latest_params,
    plan_latest,
    refresh_companies,
    refresh_endusers,
    rollup_key,
    write_latest,
)
from npsd.records.schemas import NOT_NULL_COLUMNS, NpsInput

MAX_BULK = 5000
T = NpsRecord.__table__
COLUMNS = (
    T.c.id,
    T.c.email,
    T.c.score,
    T.c.comment,
    T.c.enduser_id,
    T.c.company_id,
    T.c.campaign_id,
    T.c.source,
    T.c.source_id,
    T.c.date_sent,
    T.c.date_reminder_sent,
    T.c.date_answered,
    T.c.custom,
    T.c.created_at,
    T.c.updated_at,
    T.c.version,
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
MUTABLE = (
    "email",
    "score",
    "comment",
    "enduser_id",
    "company_id",
    "campaign_id",
    "source",
    "source_id",
    "date_sent",
    "date_reminder_sent",
    "date_answered",
    "custom",
)

# output field -> column, for ``sort``
SORTABLE: dict[str, Any] = {
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
OUTPUT_FIELDS = frozenset(SORTABLE)


def to_output(
    row: Sequence[Any], stamp: Callable[[Any], str | None] = iso, load: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """A record row (in ``COLUMNS`` order) as the Planhat JSON object.

    ``stamp`` turns a stored time into the API's ISO form and ``load`` decodes ``custom``; the
    defaults take what SQLAlchemy returns, the list's SQLite fast path passes raw-value versions.
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


# On SQLite a stored time is the text ``YYYY-MM-DD HH:MM:SS.ffffff`` and ``custom`` is JSON text.
# The list reads them raw and reshapes the text, rather than parse every value into Python
# objects and format it again: on 10,000 rows that is a good part of the request.
RAW_COLUMNS = tuple(
    type_coerce(c, String).label(c.name) if isinstance(c.type, DateTime | JSON) else c for c in COLUMNS
)


def _raw_stamp(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) == 26:
        return f"{value[:10]}T{value[11:23]}Z"
    return iso(datetime.fromisoformat(value))


def _raw_json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def begin_write(session: Session, org_id: str) -> None:
    """Start a record write: queue behind the organization's other writers.

    (On PostgreSQL every statement is planned with its actual values: db.py turns psycopg's
    prepared statements off, whose generic plans turned 5,000-row batches from milliseconds into
    seconds once statistics were stale.)
    """
    lock_org_writes(session, org_id)


# ---------------------------------------------------------------------------------------------- lookups

# sourceIds are at most 500 characters; the prefix adds six. Longer keys cannot name a record.
MAX_KEY_LENGTH = 506


# built once: constructing a select costs more than running it for one row
_BY_ID = select(*COLUMNS).where(T.c.org_id == bindparam("org"), T.c.id == bindparam("key"))
_BY_SOURCE_ID = select(*COLUMNS).where(T.c.org_id == bindparam("org"), T.c.source_id == bindparam("key"))


def find_record(session: Session, org_id: str, key: str) -> dict[str, Any]:
    """The record named by ``key`` (an id or ``srcid-<sourceId>``) in the organization, or 404.

    A key no record can have (NUL characters, too long, neither form) is a 400 naming ``id``,
    checked before the query: PostgreSQL refuses NUL in text parameters.
    """
    if "\x00" in key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest.field(
            "id",
            f"must be a 24-character hexadecimal id or srcid-<sourceId>, without NUL "
            f"characters and at most {MAX_KEY_LENGTH} characters long",
        )
    if key.startswith("srcid-"):
        stmt, value = _BY_SOURCE_ID, key[len("srcid-") :]
    elif is_id(key):
        stmt, value = _BY_ID, key
    else:
        raise BadRequest.field("id", "must be a 24-character hexadecimal id or srcid-<sourceId>")
    row = session.execute(stmt, {"org": org_id, "key": value}).first()
    if row is None:
        raise NotFound(f"no NPS record {key}")
    return dict(zip(COLUMN_NAMES, row, strict=True))


def _rows_by(
    session: Session, org_id: str, column: Any, values: set[str], states: dict[str, ContactState]
) -> dict[str, dict[str, Any]]:
    """The organization's records whose ``column`` is one of ``values``, keyed by that value.

    Their contacts' roll-up state comes in the same query (into ``states``), for the write.
    """
    found: dict[str, dict[str, Any]] = {}
    width = len(COLUMNS)
    for part in chunks(values):
        for row in session.execute(
            select(*COLUMNS, *CONTACT_STATE_COLUMNS)
            .join_from(T, ENDUSER, ENDUSER.c.id == T.c.enduser_id)
            .where(T.c.org_id == org_id, column.in_(part))
        ):
            rec = dict(zip(COLUMN_NAMES, row[:width], strict=True))
            found[rec[column.name]] = rec
            state = contact_state(row[width:])
            states[state.id] = state
    return found


# ---------------------------------------------------------------------------------------------- writes


class ItemError(Exception):
    """One item of a batch cannot be applied; the rest still can."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status

    @property
    def text(self) -> str:
        """The message with the field in front, unless it already starts with it."""
        if self.field and not self.message.startswith(self.field):
            return f"{self.field} {self.message}"
        return self.message

    def to_http(self) -> NpsdError:
        details = [{"field": self.field, "issue": self.message}] if self.field else []
        return Conflict(self.text, details) if self.status == 409 else BadRequest(self.text, details)


@dataclass
class Batch:
    """Validated creates and updates, ready to be written together."""

    org_id: str
    now: datetime
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (before, after)
    claimed_source_ids: dict[str, str] = field(default_factory=dict)  # sourceId -> record id in batch
    states: dict[str, ContactState] = field(default_factory=dict)  # contacts known so far, by id
    # rows whose ``company_id`` is their contact's company, known only once contacts are resolved
    follow_contact: list[dict[str, Any]] = field(default_factory=list)


def parse_item(raw: Any) -> NpsInput:
    if not isinstance(raw, dict):
        raise ItemError("each item must be a JSON object", "item")
    try:
        return NpsInput.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        raise ItemError(summary(details), details[0]["field"] if details else None) from exc


NO_COLUMNS: frozenset[str] = frozenset()


def _column_values(data: NpsInput, not_null: frozenset[str]) -> dict[str, Any]:
    """The columns ``data`` sets; a null in a ``not_null`` column is an error naming the field sent."""
    values = data.column_values()
    for column in not_null:
        if column in values and values[column] is None:
            raise ItemError("must not be null", data.sent_name(column))
    return values


class Planner:
    """Turns validated inputs into a :class:`Batch`, with the look-ups done in bulk beforehand."""

    def __init__(self, session: Session, org_id: str, now: datetime) -> None:
        self.session = session
        self.org_id = org_id
        self.batch = Batch(org_id, now)
        self.known_source_ids: dict[str, str] = {}  # sourceId -> existing record id
        self.companies: set[str] = set()

    def preload(
        self, inputs: Sequence[NpsInput | None], known_source_ids: dict[str, str] | None = None
    ) -> None:
        """Fetch in a few queries what validating ``inputs`` needs: their companies and sourceIds.

        ``known_source_ids`` (sourceId -> record id) spares the query when the caller has them.
        """
        cids = {i.cId for i in inputs if i is not None and i.cId}
        for part in chunks(cids):
            self.companies.update(
                self.session.scalars(
                    select(Company.id).where(Company.org_id == self.org_id, Company.id.in_(part))
                )
            )
        if known_source_ids is not None:
            self.known_source_ids = known_source_ids
            return
        sids = {i.sourceId for i in inputs if i is not None and i.sourceId is not None}
        for part in chunks(sids):
            for rid, sid in self.session.execute(
                select(T.c.id, T.c.source_id).where(T.c.org_id == self.org_id, T.c.source_id.in_(part))
            ):
                self.known_source_ids[sid] = rid

    def _check_company(self, cid: str | None) -> None:
        if cid is not None and cid not in self.companies:
            raise ItemError("does not name a company of your organization", "cId")

    def _claim_source_id(self, sid: str | None, record_id: str) -> None:
        if sid is None:
            return
        owner = self.batch.claimed_source_ids.get(sid) or self.known_source_ids.get(sid)
        if owner is not None and owner != record_id:
            raise ItemError(f"{sid!r} is already used by record {owner}", "sourceId", 409)

    def plan_create(self, data: NpsInput, record_id: str) -> dict[str, Any]:
        """Plan a new record; ``email`` and ``score`` are required, ``dateAnswered`` defaults to now."""
        # a null email or score is reported as missing below; a null dateAnswered means now
        values = _column_values(data, NO_COLUMNS)
        if values.get("email") is None:
            raise ItemError("is required to create a record", "email")
        if values.get("score") is None:
            raise ItemError("is required to create a record", "score")
        self._check_company(values.get("company_id"))
        self._claim_source_id(values.get("source_id"), record_id)
        now = self.batch.now
        row = dict.fromkeys(COLUMN_NAMES)
        row.update(values)
        row.update(id=record_id, org_id=self.org_id, version=0, created_at=now, updated_at=now)
        if row["date_answered"] is None:
            row["date_answered"] = now
        if row["source_id"] is not None:
            self.batch.claimed_source_ids[row["source_id"]] = record_id
        if row["company_id"] is None:
            self.batch.follow_contact.append(row)
        self.batch.creates.append(row)
        return row

    def plan_update(self, before: dict[str, Any], data: NpsInput) -> bool:
        """Plan the update; False when it would change nothing (a Planhat "nonupdate").

        ``custom`` merges key by key. A new address moves the record to that address's contact
        (found or created), and to its company unless ``cId`` is sent too.
        """
        values = _column_values(data, NOT_NULL_COLUMNS)
        if "company_id" in values:
            self._check_company(values["company_id"])
        if "source_id" in values:
            self._claim_source_id(values["source_id"], before["id"])
        after = dict(before)
        for column, value in values.items():
            if column == "custom" and value is not None and before.get("custom"):
                after["custom"] = {**before["custom"], **value}
            else:
                after[column] = value
        if all(after[c] == before[c] for c in MUTABLE):
            return False
        if "email" in values and email_key(values["email"]) != email_key(before["email"]):
            after["enduser_id"] = None  # resolved to the new address's contact in write_batch()
            if "company_id" not in values:
                after["company_id"] = None  # a new contact then joins by domain, not the old company
                self.batch.follow_contact.append(after)
        if after["source_id"] is not None:
            self.batch.claimed_source_ids[after["source_id"]] = before["id"]
        after["version"] = before["version"] + 1
        after["updated_at"] = self.batch.now
        self.batch.updates.append((before, after))
        return True


def _contact_states(
    session: Session, org_id: str, column: Any, values: Collection[str]
) -> list[ContactState]:
    """The contacts whose ``column`` is one of ``values``, with what the roll-up needs of them."""
    found: list[ContactState] = []
    for part in chunks(values):
        for row in session.execute(
            select(*CONTACT_STATE_COLUMNS, Enduser.email_key).where(
                Enduser.org_id == org_id, column.in_(part)
            )
        ):
            state = contact_state(row[:6])
            state.email_key = row[6]
            found.append(state)
    return found


def _resolve_contacts(
    session: Session, batch: Batch, needs_contact: list[dict[str, Any]], states: dict[str, ContactState]
) -> list[dict[str, Any]]:
    """Give every row in ``needs_contact`` the contact of its address, found or new.

    A new contact joins the row's ``cId``, else the company whose ``domains`` hold the address's
    domain, else none. New contacts go into ``states`` and are returned as rows to insert, so
    they can be inserted with their latest answer already set.
    """
    wanted: dict[str, str | None] = {}  # address -> the company a new contact joins (its first row's)
    first_email: dict[str, str] = {}  # address -> as its first row spells it
    for row in needs_contact:
        key = email_key(row["email"])
        if key not in wanted:
            wanted[key] = row["company_id"]
            first_email[key] = row["email"]
    by_key: dict[str, ContactState] = {}
    missing: dict[str, str | None] = {}  # new address -> its company
    for key, filing in file_addresses(session, batch.org_id, wanted, CONTACT_STATE_COLUMNS[2:]).items():
        if filing.contact is None:
            missing[key] = filing.company_id
        else:
            by_key[key] = contact_state(filing.contact)
    new_rows = []
    for eid, (key, company) in zip(new_ids(len(missing)), missing.items(), strict=True):
        by_key[key] = ContactState(eid, company, None, is_new=True)
        new_rows.append(
            {
                "id": eid,
                "org_id": batch.org_id,
                "email": first_email[key],
                "email_key": key,
                "company_id": company,
                "primary": False,
                "archived": False,
                "version": 0,
                "created_at": batch.now,
                "updated_at": batch.now,
            }
        )
    for row in needs_contact:
        state = by_key[email_key(row["email"])]
        row["enduser_id"] = state.id
        states[state.id] = state
    return new_rows


def write_batch(session: Session, batch: Batch) -> None:
    """Write a planned batch and bring every roll-up up to date, in the current transaction.

    A fixed handful of set-based statements whatever the batch size: look up contacts (by
    address and by id) and company domains, insert new contacts with their latest answer,
    insert records, update records, add roll-up deltas, store the contacts' new latest answers
    and recompute the touched companies. A contact's latest answer is worked out from its stored
    one and the batch (:func:`plan_latest`); only a contact whose latest answer an update moved
    back is recomputed from its records.
    """
    org_id = batch.org_id
    states = batch.states
    needs_contact = [*batch.creates, *(a for _, a in batch.updates if a["enduser_id"] is None)]
    new_contacts = _resolve_contacts(session, batch, needs_contact, states) if needs_contact else []
    known = {eid for before, after in batch.updates for eid in (before["enduser_id"], after["enduser_id"])}
    known -= states.keys()
    if known:
        states.update((s.id, s) for s in _contact_states(session, org_id, Enduser.id, known))
    for row in batch.follow_contact:
        row["company_id"] = states[row["enduser_id"]].company_id
    written = [*batch.creates, *(after for _, after in batch.updates)]
    changed, recompute = plan_latest(states, written, [before for before, _ in batch.updates])
    if new_contacts:
        for row in new_contacts:
            row.update(latest_params(row["id"], changed.pop(row["id"], None)))
            del row["eid"]
        insert_many(session, Enduser.__table__, new_contacts)
    deltas: Counter[RollupKey] = Counter()
    if batch.creates:
        insert_many(session, T, batch.creates)
        for r in batch.creates:
            deltas[
                rollup_key(r["campaign_id"], r["company_id"], r["source"], r["date_answered"], r["score"])
            ] += 1
    if batch.updates:
        _update_records(session, org_id, batch.updates)
        for before, after in batch.updates:
            deltas[
                rollup_key(
                    before["campaign_id"],
                    before["company_id"],
                    before["source"],
                    before["date_answered"],
                    before["score"],
                )
            ] -= 1
            deltas[
                rollup_key(
                    after["campaign_id"],
                    after["company_id"],
                    after["source"],
                    after["date_answered"],
                    after["score"],
                )
            ] += 1
    apply_deltas(session, org_id, deltas)
    write_latest(session, org_id, changed)
    companies = {states[eid].company_id for eid in changed} | {c["company_id"] for c in new_contacts}
    companies |= refresh_endusers(session, org_id, recompute)
    refresh_companies(session, org_id, companies - {None})
    if batch.creates:
        emit(session, org_id, "response.created", lambda: [_output_of(r) for r in batch.creates])
    if batch.updates:
        emit(session, org_id, "response.updated", lambda: [_output_of(after) for _, after in batch.updates])


def _output_of(row: dict[str, Any]) -> dict[str, Any]:
    return to_output(tuple(row[name] for name in COLUMN_NAMES))


MAX_UPDATE_SHAPES = 8


def _update_records(
    session: Session, org_id: str, updates: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    """Write updated records, setting only the columns that changed.

    Rows are grouped by which columns changed, one ``executemany`` per group: a bulk update
    usually changes the same few columns everywhere, and leaving the others out of ``SET``
    spares the database the upkeep of the indexes on them. Past a few distinct groups the rest
    are written with every column in one more statement, so a batch stays a handful of statements.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for before, after in updates:
        columns = tuple(c for c in MUTABLE if after[c] != before[c])
        if columns not in groups and len(groups) >= MAX_UPDATE_SHAPES:
            columns = MUTABLE
        groups.setdefault(columns, []).append(after)
    for columns, rows in groups.items():
        update_many(
            session,
            T,
            (*columns, "version", "updated_at"),
            ("id", "org_id"),
            [{**row, "org_id": org_id} for row in rows],
        )


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
            except ItemError as exc:
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
    except ItemError as exc:
        raise exc.to_http() from exc
    if not changed:
        return before
    write_batch(session, planner.batch)
    return find_record(session, org_id, record_id)


def delete_records(session: Session, org_id: str, condition: ColumnElement[bool]) -> int:
    """Delete the organization's records matching ``condition`` and fix every roll-up.

    Also the contacts' and surveys' cascades; the caller holds the organization's write lock.
    """
    rows = [
        dict(zip(COLUMN_NAMES, row, strict=True))
        for row in session.execute(select(*COLUMNS).where(T.c.org_id == org_id, condition))
    ]
    if not rows:
        return 0
    deltas: Counter[RollupKey] = Counter()
    for r in rows:
        deltas[
            rollup_key(r["campaign_id"], r["company_id"], r["source"], r["date_answered"], r["score"])
        ] -= 1
    for part in chunks([r["id"] for r in rows]):
        session.execute(delete(T).where(T.c.org_id == org_id, T.c.id.in_(part)))
    apply_deltas(session, org_id, deltas)
    refresh_companies(session, org_id, refresh_endusers(session, org_id, {r["enduser_id"] for r in rows}))
    emit(session, org_id, "response.deleted", lambda: [_output_of(r) for r in rows])
    return len(rows)


def delete_record(session: Session, org_id: str, record_id: str) -> int:
    """``DELETE /nps/{id}``: one record; 404 if it is gone (deleted meanwhile)."""
    begin_write(session, org_id)
    n = delete_records(session, org_id, T.c.id == record_id)
    if n == 0:
        raise NotFound(f"no NPS record {record_id}")
    return n


@dataclass
class BulkOutcome:
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
    outcome = BulkOutcome()
    parsed: list[NpsInput | ItemError] = []
    for raw in items:
        try:
            parsed.append(parse_item(raw))
        except ItemError as exc:
            parsed.append(exc)
    keyables = [_keyables(raw) for raw in items]
    planner = Planner(session, org_id, utcnow())
    states = planner.batch.states
    by_id = _rows_by(session, org_id, T.c.id, {rid for rid, _ in keyables if is_id(rid)}, states)
    by_sid = _rows_by(
        session,
        org_id,
        T.c.source_id,
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
            if isinstance(data, ItemError):
                raise data
            if rid is not None and rid in used_ids:
                raise ItemError(f"{rid!r} was already used by item {used_ids[rid]} of this batch", "_id")
            if existing is not None:
                if existing["id"] in targeted:
                    raise ItemError(
                        f"names the same record as item {targeted[existing['id']]} of this batch",
                        "_id" if rid is not None and rid in by_id else "sourceId",
                    )
                changed = planner.plan_update(existing, data)
                targeted[existing["id"]] = index
                outcome.updates_keys.append(
                    {k: v for k, v in (("_id", rid), ("sourceId", sid)) if v is not None}
                )
                if changed:
                    outcome.updated += 1
                    outcome.modified.append(existing["id"])
                else:
                    outcome.nonupdates += 1
            else:
                if sid is not None and sid in planner.batch.claimed_source_ids:
                    raise ItemError(f"{sid!r} was already used by an earlier item of this batch", "sourceId")
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
        except ItemError as exc:
            errors.append({"index": index, "item": raw, "error": exc.text})
    write_batch(session, planner.batch)
    return outcome


# ---------------------------------------------------------------------------------------------- reads


@dataclass
class ListQuery:
    company_ids: list[str] | None = None
    campaign_ids: list[str] | None = None
    email: str | None = None
    score_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    updated_since: datetime | None = None
    expiry_days: int | None = 360
    sort: str | None = None
    limit: int = 100
    offset: int = 0
    select: list[str] | None = None


def filtered(org_id: str, q: ListQuery, now: datetime) -> Select[Any]:
    """The record query for ``q`` (no paging), shared by the list and the export."""
    stmt = select(*COLUMNS).where(T.c.org_id == org_id)
    if q.company_ids:
        stmt = stmt.where(T.c.company_id.in_(q.company_ids))
    if q.campaign_ids:
        stmt = stmt.where(T.c.campaign_id.in_(q.campaign_ids))
    if q.email:
        stmt = stmt.where(
            T.c.enduser_id.in_(
                select(Enduser.id).where(Enduser.org_id == org_id, Enduser.email_key == email_key(q.email))
            )
        )
    if q.score_type:
        stmt = stmt.where(in_category(T.c.score, q.score_type))
    if q.since is not None:
        stmt = stmt.where(T.c.date_answered >= q.since)
    if q.until is not None:
        stmt = stmt.where(T.c.date_answered <= q.until)
    if q.updated_since is not None:
        stmt = stmt.where(T.c.updated_at >= q.updated_since)
    if q.expiry_days:
        stmt = stmt.where(T.c.date_answered >= now - timedelta(days=q.expiry_days))
    return stmt


def ordered(stmt: Select[Any], sort: str | None) -> Select[Any]:
    """Apply ``sort`` (``field`` or ``-field``) with ``_id`` as the tie-breaker, for stable paging."""
    if not sort:
        return stmt.order_by(T.c.date_answered.desc(), T.c.id.desc())
    descending = sort.startswith("-")
    name = sort[1:] if descending else sort
    column = SORTABLE[name]
    if descending:
        return stmt.order_by(column.desc(), T.c.id.desc())
    return stmt.order_by(column.asc(), T.c.id.asc())


def list_records(session: Session, org_id: str, q: ListQuery) -> list[dict[str, Any]]:
    stmt = ordered(filtered(org_id, q, utcnow()), q.sort).limit(q.limit).offset(q.offset)
    if session.get_bind().dialect.name == "sqlite":
        rows = [
            to_output(row, _raw_stamp, _raw_json)
            for row in session.execute(stmt.with_only_columns(*RAW_COLUMNS)).all()
        ]
    else:
        rows = [to_output(row) for row in session.execute(stmt).all()]
    if q.select:
        keep = {"_id", *q.select}
        rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
    return rows
