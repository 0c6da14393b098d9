"""The record write path: plan creates and updates, then write them with every roll-up exact.

Creates and updates go through :func:`write_batch`, so the single-record endpoints, the group
commit of ``POST /nps`` and the bulk upsert share one path (deletes through
:func:`delete_records`): validate everything first (:class:`Planner`, which does its look-ups in
bulk), then write with a handful of set-based statements (contacts, records, roll-up deltas,
contact and company roll-ups) inside the caller's transaction. A batch is therefore applied
whole or not at all, and a killed process leaves no half-applied item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from npsd.kit.db import lock_org_writes, one_of
from npsd.kit.errors import BadRequest, Conflict, NpsdError, summary, validation_details
from npsd.kit.events import emit
from npsd.kit.ids import new_ids
from npsd.kit.models import Company, Enduser
from npsd.kit.validation import email_key
from npsd.records.fastsql import insert_many, update_many
from npsd.records.filing import file_addresses
from npsd.records.output import COLUMN_NAMES, COLUMNS, T, output_of
from npsd.records.rollups import (
    CONTACT_STATE_COLUMNS,
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


def begin_write(session: Session, org_id: str) -> None:
    """Start a record write: queue behind the organization's other writers (on PostgreSQL an
    advisory lock held to the end of the transaction; SQLite writers are serialized already).

    Every write plans from what it reads after this point, so two concurrent writers never both
    create one contact or both claim one ``sourceId``.
    """
    lock_org_writes(session, org_id)


class ItemRejected(Exception):
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


class Update(NamedTuple):
    """One planned update: the row as stored, as it will be, and the columns sent that change
    (in ``FIELD_COLUMNS`` order, so one set of columns is one tuple), worked out once when it is
    planned. When the address moves, the contact's columns change too, known only once contacts
    are resolved (see :func:`_update_records`)."""

    before: dict[str, Any]
    after: dict[str, Any]
    changed: tuple[str, ...]


@dataclass
class Batch:
    """Validated creates and updates, ready to be written together."""

    org_id: str
    now: datetime
    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    claimed_source_ids: dict[str, str] = field(default_factory=dict)  # sourceId -> record id in batch
    states: dict[str, ContactState] = field(default_factory=dict)  # contacts known so far, by id
    # rows whose ``company_id`` is their contact's company, known only once contacts are resolved
    follow_contact: list[dict[str, Any]] = field(default_factory=list)


_ITEMS: TypeAdapter[list[NpsInput]] = TypeAdapter(list[NpsInput])


def parse_items(raws: list[Any]) -> list[NpsInput | ItemRejected]:
    """Each item of a batch validated: its input, or why it cannot be applied.

    One validator call for the whole batch (per-item calls cost a fifth more on 5,000 items);
    only when some item fails is each validated alone, so every failure gets its own message.
    """
    try:
        return list(_ITEMS.validate_python(raws))
    except ValidationError:
        pass
    parsed: list[NpsInput | ItemRejected] = []
    for raw in raws:
        try:
            parsed.append(parse_item(raw))
        except ItemRejected as exc:
            parsed.append(exc)
    return parsed


def parse_item(raw: Any) -> NpsInput:
    """One item validated, or :class:`ItemRejected` naming the first field at fault."""
    if not isinstance(raw, dict):
        raise ItemRejected("each item must be a JSON object", "item")
    try:
        return NpsInput.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(list(exc.errors()))
        raise ItemRejected(summary(details), details[0]["field"] if details else None) from exc


def _column_values(data: NpsInput, not_null: frozenset[str]) -> dict[str, Any]:
    """The columns ``data`` sets; a null in a ``not_null`` column is an error naming the field sent."""
    values = data.column_values()
    for column in not_null:
        if column in values and values[column] is None:
            raise ItemRejected("must not be null", data.sent_name(column))
    return values


class Planner:
    """Turns validated inputs into a :class:`Batch`, with the look-ups done in bulk beforehand."""

    def __init__(self, session: Session, org_id: str, now: datetime) -> None:
        self.session = session
        self.org_id = org_id
        self.batch = Batch(org_id, now)
        self.known_source_ids: dict[str, str] = {}  # sourceId -> existing record id
        self.companies: set[str] = set()
        # every column of a new record that no input sets: copied per create, not built field by field
        self._new_row: dict[str, Any] = {
            **dict.fromkeys(COLUMN_NAMES),
            "org_id": org_id,
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }

    def preload(
        self, inputs: Sequence[NpsInput | None], known_source_ids: dict[str, str] | None = None
    ) -> None:
        """Fetch in a few queries what validating ``inputs`` needs: their companies and sourceIds.

        ``known_source_ids`` (sourceId -> record id) spares the query when the caller has them.
        """
        session, org_id = self.session, self.org_id
        cids = {i.cId for i in inputs if i is not None and i.cId}
        if cids:
            self.companies.update(
                session.scalars(
                    select(Company.id).where(Company.org_id == org_id, one_of(session, Company.id, cids))
                )
            )
        if known_source_ids is not None:
            self.known_source_ids = known_source_ids
            return
        sids = {i.sourceId for i in inputs if i is not None and i.sourceId is not None}
        if sids:
            for rid, sid in session.execute(
                select(T.c.id, T.c.source_id).where(
                    T.c.org_id == org_id, one_of(session, T.c.source_id, sids)
                )
            ):
                self.known_source_ids[sid] = rid

    def _check_company(self, cid: str | None) -> None:
        if cid is not None and cid not in self.companies:
            raise ItemRejected("does not name a company of your organization", "cId")

    def _claim_source_id(self, sid: str | None, record_id: str) -> None:
        if sid is None:
            return
        owner = self.batch.claimed_source_ids.get(sid) or self.known_source_ids.get(sid)
        if owner is not None and owner != record_id:
            raise ItemRejected(f"{sid!r} is already used by record {owner}", "sourceId", 409)

    def plan_create(self, data: NpsInput, record_id: str) -> dict[str, Any]:
        """Plan a new record; ``email`` and ``score`` are required, ``dateAnswered`` defaults to now."""
        # a null email or score is reported as missing below; a null dateAnswered means now
        values = data.column_values()
        if values.get("email") is None:
            raise ItemRejected("is required to create a record", "email")
        if values.get("score") is None:
            raise ItemRejected("is required to create a record", "score")
        self._check_company(values.get("company_id"))
        sid = values.get("source_id")
        self._claim_source_id(sid, record_id)
        row = {**self._new_row, **values, "id": record_id}
        if row["date_answered"] is None:
            row["date_answered"] = self.batch.now
        if sid is not None:
            self.batch.claimed_source_ids[sid] = record_id
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
        # only the columns sent can differ: compare those, not every column (``values`` lists
        # them in one fixed order, so one set of changed columns is always one tuple)
        changed = tuple(c for c in values if after[c] != before[c])
        if not changed:
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
        after["org_id"] = self.org_id  # a key of the UPDATE (the stored row does not carry it)
        self.batch.updates.append(Update(before, after, changed))
        return True


def _contact_states(
    session: Session, org_id: str, column: Any, values: Collection[str]
) -> list[ContactState]:
    """The contacts whose ``column`` is one of ``values``, with what the roll-up needs of them."""
    found: list[ContactState] = []
    for row in session.execute(
        select(*CONTACT_STATE_COLUMNS, Enduser.email_key).where(
            Enduser.org_id == org_id, one_of(session, column, values)
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
    keys = [email_key(row["email"]) for row in needs_contact]
    for row, key in zip(needs_contact, keys, strict=True):
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
    for row, key in zip(needs_contact, keys, strict=True):
        state = by_key[key]
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
    needs_contact = [*batch.creates, *(u.after for u in batch.updates if u.after["enduser_id"] is None)]
    new_contacts = _resolve_contacts(session, batch, needs_contact, states) if needs_contact else []
    known = {eid for u in batch.updates for eid in (u.before["enduser_id"], u.after["enduser_id"])}
    known -= states.keys()
    if known:
        states.update((s.id, s) for s in _contact_states(session, org_id, Enduser.id, known))
    for row in batch.follow_contact:
        row["company_id"] = states[row["enduser_id"]].company_id
    written = [*batch.creates, *(u.after for u in batch.updates)]
    changed, recompute = plan_latest(states, written, [u.before for u in batch.updates])
    if new_contacts:
        for row in new_contacts:
            row.update(latest_params(row["id"], changed.pop(row["id"], None)))
            del row["eid"]
        insert_many(session, Enduser.__table__, new_contacts)
    deltas: Counter[RollupKey] = Counter()
    if batch.creates:
        insert_many(session, T, batch.creates, one_statement=True)  # comment index triggers
        for r in batch.creates:
            deltas[
                rollup_key(r["campaign_id"], r["company_id"], r["source"], r["date_answered"], r["score"])
            ] += 1
    if batch.updates:
        _update_records(session, batch.updates)
        for before, after, _ in batch.updates:
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
    companies = {cid for eid in changed if (cid := states[eid].company_id) is not None}
    companies.update(c["company_id"] for c in new_contacts if c["company_id"] is not None)
    companies |= refresh_endusers(session, org_id, recompute)
    refresh_companies(session, org_id, companies)
    if batch.creates:
        emit(
            session,
            org_id,
            "response.created",
            lambda: [output_of(r) for r in batch.creates],
            [r["id"] for r in batch.creates],
        )
    if batch.updates:
        emit(
            session,
            org_id,
            "response.updated",
            lambda: [output_of(u.after) for u in batch.updates],
            [u.after["id"] for u in batch.updates],
        )


MAX_UPDATE_SHAPES = 8


def _update_records(session: Session, updates: list[Update]) -> None:
    """Write updated records, setting only the columns that changed.

    Rows are grouped by which columns changed, one statement per group: a bulk update
    usually changes the same few columns everywhere, and leaving the others out of ``SET``
    spares the database the upkeep of the indexes on them. Past a few distinct groups the rest
    are written with every column in one more statement, so a batch stays a handful of statements.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for before, after, columns in updates:
        if "email" in columns:  # the contact and company may have moved with the address
            columns = tuple(c for c in MUTABLE if after[c] != before[c])
        if columns not in groups and len(groups) >= MAX_UPDATE_SHAPES:
            columns = MUTABLE
        groups.setdefault(columns, []).append(after)
    for columns, rows in groups.items():
        update_many(
            session, T, (*columns, "version", "updated_at"), ("id", "org_id"), rows, one_statement=True
        )


def delete_records(
    session: Session, org_id: str, condition: ColumnElement[bool], *, events: bool = True
) -> int:
    """Delete the organization's records matching ``condition`` and fix every roll-up.

    Also the contacts' and surveys' cascades; the caller holds the organization's write lock.
    ``events=False`` records no ``response.deleted`` events: erasure (whose events would carry
    the erased address; it sends ``person.erased`` instead) and retention (policy, not change).
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
    session.execute(delete(T).where(T.c.org_id == org_id, one_of(session, T.c.id, [r["id"] for r in rows])))
    apply_deltas(session, org_id, deltas)
    refresh_companies(session, org_id, refresh_endusers(session, org_id, {r["enduser_id"] for r in rows}))
    if events:
        emit(session, org_id, "response.deleted", lambda: [output_of(r) for r in rows])
    return len(rows)
