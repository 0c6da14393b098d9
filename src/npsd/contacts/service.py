"""Companies and endusers (contacts): CRUD, matching contacts to companies, and their NPS roll-ups."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from npsd.kit.db import lock_org_writes, not_from_an_index, one_of
from npsd.kit.errors import BadRequest, Conflict
from npsd.kit.ids import new_id
from npsd.kit.listing import Page
from npsd.kit.models import Company, CompanyDomain, Enduser, NpsRecord, Survey
from npsd.kit.timeutil import iso, utcnow
from npsd.kit.validation import email_key
from npsd.records.filing import file_addresses
from npsd.records.rollups import (
    RollupKey,
    apply_deltas,
    refresh_companies,
    rollup_key,
)
from npsd.records.service import ListQuery, delete_records, list_records

# ------------------------------------------------------------------------------------------- output


def company_out(c: Company) -> dict[str, Any]:
    return {
        "_id": c.id,
        "name": c.name,
        "domains": c.domains or [],
        "externalId": c.external_id,
        "sourceId": c.source_id,
        "status": c.status,
        "phase": c.phase,
        "description": c.description,
        "custom": c.custom,
        "nps": c.nps,
        "npsResponses": c.nps_responses,
        "npsUpdatedAt": iso(c.nps_updated_at),
        "createdAt": iso(c.created_at),
        "updatedAt": iso(c.updated_at),
        "__v": c.version,
    }


def enduser_out(e: Enduser) -> dict[str, Any]:
    return {
        "_id": e.id,
        "email": e.email,
        "name": e.name,
        "firstName": e.first_name,
        "lastName": e.last_name,
        "position": e.position,
        "phone": e.phone,
        "primary": e.primary,
        "archived": e.archived,
        "companyId": e.company_id,
        "externalId": e.external_id,
        "sourceId": e.source_id,
        "custom": e.custom,
        "nps": e.nps,
        "npsComment": e.nps_comment,
        "npsDate": iso(e.nps_date),
        "npsId": e.nps_id,
        "createdAt": iso(e.created_at),
        "updatedAt": iso(e.updated_at),
        "__v": e.version,
    }


COMPANY_SORT = {
    "_id": Company.id,
    "name": Company.name,
    "externalId": Company.external_id,
    "sourceId": Company.source_id,
    "status": Company.status,
    "phase": Company.phase,
    "description": Company.description,
    "nps": Company.nps,
    "npsResponses": Company.nps_responses,
    "npsUpdatedAt": Company.nps_updated_at,
    "createdAt": Company.created_at,
    "updatedAt": Company.updated_at,
    "__v": Company.version,
    "domains": Company.domains,
    "custom": Company.custom,
}
ENDUSER_SORT = {
    "_id": Enduser.id,
    "email": Enduser.email_key,
    "name": Enduser.name,
    "firstName": Enduser.first_name,
    "lastName": Enduser.last_name,
    "position": Enduser.position,
    "phone": Enduser.phone,
    "primary": Enduser.primary,
    "archived": Enduser.archived,
    "companyId": Enduser.company_id,
    "externalId": Enduser.external_id,
    "sourceId": Enduser.source_id,
    "custom": Enduser.custom,
    "nps": Enduser.nps,
    "npsComment": Enduser.nps_comment,
    "npsDate": Enduser.nps_date,
    "npsId": Enduser.nps_id,
    "createdAt": Enduser.created_at,
    "updatedAt": Enduser.updated_at,
    "__v": Enduser.version,
}


def _ordered(stmt: Any, page: Page, columns: dict[str, Any], id_column: Any) -> Any:
    if not page.sort:
        return stmt.order_by(id_column.asc())
    descending = page.sort.startswith("-")
    column = columns[page.sort.lstrip("-")]
    if descending:
        return stmt.order_by(column.desc(), id_column.desc())
    return stmt.order_by(column.asc(), id_column.asc())


def _select(rows: list[dict[str, Any]], page: Page) -> list[dict[str, Any]]:
    if not page.select:
        return rows
    keep = {"_id", *page.select}
    return [{k: v for k, v in row.items() if k in keep} for row in rows]


def _unique_violation(exc: IntegrityError, what: str) -> Conflict:
    text = str(exc.orig).lower()
    for column, field in (("external_id", "externalId"), ("source_id", "sourceId"), ("email", "email")):
        if column in text:
            return Conflict(
                f"another {what} already has this {field}", [{"field": field, "issue": "already used"}]
            )
    return Conflict(f"conflicts with another {what}")


# ------------------------------------------------------------------------------------------ companies


def _set_domains(session: Session, company: Company, domains: list[str]) -> None:
    session.execute(
        delete(CompanyDomain).where(
            CompanyDomain.org_id == company.org_id, CompanyDomain.company_id == company.id
        )
    )
    if domains:
        session.execute(
            insert(CompanyDomain),
            [{"org_id": company.org_id, "domain": d, "company_id": company.id} for d in domains],
        )


def create_company(session: Session, org_id: str, values: dict[str, Any]) -> Company:
    if not values.get("name"):
        raise BadRequest.field("name", "is required")
    now = utcnow()
    company = Company(
        id=new_id(),
        org_id=org_id,
        nps_responses=0,
        version=0,
        created_at=now,
        updated_at=now,
        **{"domains": [], **values},
    )
    company.domains = company.domains or []
    session.add(company)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _unique_violation(exc, "company") from exc
    _set_domains(session, company, company.domains)
    return company


def update_company(session: Session, company: Company, values: dict[str, Any]) -> Company:
    if "name" in values and not values["name"]:
        raise BadRequest.field("name", "must not be empty")
    changed = False
    for column, value in values.items():
        if column == "custom" and value is not None and company.custom:
            value = {**company.custom, **value}
        if column == "domains" and value is None:
            value = []
        if getattr(company, column) != value:
            setattr(company, column, value)
            changed = True
    if changed:
        company.version += 1
        company.updated_at = utcnow()
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as exc:
            raise _unique_violation(exc, "company") from exc
        if "domains" in values:
            _set_domains(session, company, company.domains)
    return company


def list_companies(session: Session, org_id: str, page: Page) -> list[dict[str, Any]]:
    stmt = _ordered(select(Company).where(Company.org_id == org_id), page, COMPANY_SORT, Company.id)
    rows = [company_out(c) for c in session.scalars(stmt.limit(page.limit).offset(page.offset))]
    return _select(rows, page)


def delete_company(session: Session, company: Company, cascade: bool) -> None:
    """Delete a company with its contacts; with NPS records only when ``cascade``.

    Contacts go with their company (as in Planhat); their answers are history a client should not
    lose by accident, hence the 409 without ``cascade``.
    """
    org_id = company.org_id
    lock_org_writes(session, org_id)
    members = select(Enduser.id).where(Enduser.org_id == org_id, Enduser.company_id == company.id)
    condition = or_(NpsRecord.company_id == company.id, NpsRecord.enduser_id.in_(members))
    has_records = session.scalar(select(exists().where(NpsRecord.org_id == org_id, condition)))
    if has_records and not cascade:
        raise Conflict(
            "this company has NPS records; delete them first or pass cascade=true",
            [{"field": "cascade", "issue": "required to delete a company with NPS records"}],
        )
    if has_records:
        delete_records(session, org_id, condition)
    session.execute(delete(Enduser).where(Enduser.org_id == org_id, Enduser.company_id == company.id))
    session.delete(company)
    session.flush()


# ------------------------------------------------------------------------------------------- endusers


def _check_company(session: Session, org_id: str, company_id: str | None) -> None:
    if (
        company_id is not None
        and session.scalar(select(Company.id).where(Company.org_id == org_id, Company.id == company_id))
        is None
    ):
        raise BadRequest.field("companyId", "does not name a company of your organization")


def _derive_name(values: dict[str, Any], enduser: Enduser | None = None) -> None:
    if "name" not in values and ("first_name" in values or "last_name" in values):
        first = values.get("first_name", enduser.first_name if enduser else None)
        last = values.get("last_name", enduser.last_name if enduser else None)
        values["name"] = " ".join(p for p in (first, last) if p) or None


def create_enduser(session: Session, org_id: str, values: dict[str, Any]) -> Enduser:
    if not values.get("email"):
        raise BadRequest.field("email", "is required")
    lock_org_writes(session, org_id)
    _check_company(session, org_id, values.get("company_id"))
    key = email_key(values["email"])
    filing = file_addresses(session, org_id, {key: values.get("company_id")})[key]
    if filing.contact is not None:
        raise Conflict(
            "a contact with this e-mail already exists", [{"field": "email", "issue": "already used"}]
        )
    values["company_id"] = filing.company_id
    _derive_name(values)
    now = utcnow()
    values.setdefault("primary", False)
    values.setdefault("archived", False)
    values = {
        k: (v if v is not None or k not in ("primary", "archived") else False) for k, v in values.items()
    }
    enduser = Enduser(
        id=new_id(), org_id=org_id, email_key=key, version=0, created_at=now, updated_at=now, **values
    )
    session.add(enduser)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise _unique_violation(exc, "contact") from exc
    return enduser


def update_enduser(session: Session, enduser: Enduser, values: dict[str, Any]) -> Enduser:
    lock_org_writes(session, enduser.org_id)
    if "email" in values:
        if values["email"] is None:
            raise BadRequest.field("email", "must not be null")
        key = email_key(values["email"])
        if key != enduser.email_key and session.scalar(
            select(Enduser.id).where(Enduser.org_id == enduser.org_id, Enduser.email_key == key)
        ):
            raise Conflict(
                "a contact with this e-mail already exists", [{"field": "email", "issue": "already used"}]
            )
        enduser.email_key = key
    for flag in ("primary", "archived"):
        if flag in values and values[flag] is None:
            values[flag] = False
    if "company_id" in values:
        _check_company(session, enduser.org_id, values["company_id"])
    _derive_name(values, enduser)
    old_company = enduser.company_id
    changed = False
    for column, value in values.items():
        if column == "custom" and value is not None and enduser.custom:
            value = {**enduser.custom, **value}
        if getattr(enduser, column) != value:
            setattr(enduser, column, value)
            changed = True
    if changed:
        enduser.version += 1
        enduser.updated_at = utcnow()
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as exc:
            raise _unique_violation(exc, "contact") from exc
        if old_company != enduser.company_id:
            _move_records(session, enduser, old_company, enduser.updated_at)
            refresh_companies(session, enduser.org_id, {c for c in (old_company, enduser.company_id) if c})
            session.refresh(enduser)
    return enduser


def _move_records(session: Session, enduser: Enduser, old_company: str | None, now: datetime) -> None:
    """Make the contact's answers that belonged to its old company (or to none) follow it.

    Moving a contact is usually a correction of where it belongs, so its answers move with it:
    ``GET /nps?companyId=``, the per-company metrics (``nps_rollup``) and the company's ``nps``
    then agree. Answers recorded explicitly against some other company stay where they are. The
    moved records get a new ``updatedAt`` and ``__v`` so incremental syncs pick the change up.
    """
    records = NpsRecord.__table__
    org_id = enduser.org_id
    was = records.c.company_id.is_(None) if old_company is None else records.c.company_id == old_company
    # found by the contact (its index): a null company is in no index (migration 0015)
    condition = and_(not_from_an_index(records.c.org_id == org_id), records.c.enduser_id == enduser.id, was)
    rows = session.execute(
        select(records.c.campaign_id, records.c.source, records.c.date_answered, records.c.score).where(
            condition
        )
    ).all()
    if not rows:
        return
    deltas: Counter[RollupKey] = Counter()
    for campaign, source, answered, score in rows:
        deltas[rollup_key(campaign, old_company, source, answered, score)] -= 1
        deltas[rollup_key(campaign, enduser.company_id, source, answered, score)] += 1
    session.execute(
        update(records)
        .where(condition)
        .values(company_id=enduser.company_id, updated_at=now, version=records.c.version + 1)
    )
    apply_deltas(session, org_id, deltas)


def list_endusers(
    session: Session, org_id: str, page: Page, company_ids: list[str] | None = None, email: str | None = None
) -> list[dict[str, Any]]:
    stmt = select(Enduser).where(Enduser.org_id == org_id)
    if company_ids:
        stmt = stmt.where(Enduser.company_id.in_(company_ids))
    if email:
        stmt = stmt.where(Enduser.email_key == email_key(email))
    stmt = _ordered(stmt, page, ENDUSER_SORT, Enduser.id)
    rows = [enduser_out(e) for e in session.scalars(stmt.limit(page.limit).offset(page.offset))]
    return _select(rows, page)


def delete_enduser(session: Session, enduser: Enduser, cascade: bool) -> None:
    """Delete a contact; one with NPS records only when ``cascade``."""
    org_id = enduser.org_id
    lock_org_writes(session, org_id)
    condition = NpsRecord.enduser_id == enduser.id
    if session.scalar(select(exists().where(NpsRecord.org_id == org_id, condition))):
        if not cascade:
            raise Conflict(
                "this contact has NPS records; delete them first or pass cascade=true",
                [{"field": "cascade", "issue": "required to delete a contact with NPS records"}],
            )
        delete_records(session, org_id, condition)
    company = enduser.company_id
    session.delete(enduser)
    session.flush()
    if company:
        refresh_companies(session, org_id, {company})


# ------------------------------------------------------------------------- reads for the dashboard


def company_index(session: Session, org_id: str) -> list[dict[str, Any]]:
    """Every company of the organization with its Planhat NPS (``nps``, ``npsResponses``: each
    contact's latest answer of the last 360 days), by name: the rows of the dashboard's companies
    table, which adds each one's figures for a period from the metrics."""
    rows = session.execute(
        select(Company.id, Company.name, Company.nps, Company.nps_responses)
        .where(Company.org_id == org_id)
        .order_by(Company.name, Company.id)
    )
    return [{"_id": i, "name": n, "nps": nps, "npsResponses": count} for i, n, nps, count in rows]


def company_contacts(
    session: Session, org_id: str, company_id: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of a company's contacts with their latest answer (as ``GET /endusers?companyId=``
    lists them, by address), and how many it has."""
    rows = list_endusers(session, org_id, Page(limit, offset, "email", None), company_ids=[company_id])
    total = session.scalar(
        select(func.count()).where(Enduser.org_id == org_id, Enduser.company_id == company_id)
    )
    return rows, int(total or 0)


def record_answers(session: Session, org_id: str, q: ListQuery) -> list[dict[str, Any]]:
    """The records ``q`` selects (``GET /nps``'s query, newest first) with the names a person
    reads beside the ids: ``surveyName`` (None for an answer without a survey, or whose campaign
    is not one of the organization's surveys), ``contactName`` (the name, else the address) and
    ``companyName`` (None without a company)."""
    records = list_records(session, org_id, q)
    surveys = {r["campaignId"] for r in records if r["campaignId"]}
    contacts = {r["euId"] for r in records if r["euId"]}
    companies = {r["cId"] for r in records if r["cId"]}
    survey_names: dict[str, str] = {}
    if surveys:
        rows = session.execute(
            select(Survey.id, Survey.name).where(Survey.org_id == org_id, one_of(session, Survey.id, surveys))
        )
        survey_names = {sid: name for sid, name in rows}
    contact_names: dict[str, str] = {}
    if contacts:
        for eid, name, email in session.execute(
            select(Enduser.id, Enduser.name, Enduser.email).where(
                Enduser.org_id == org_id, one_of(session, Enduser.id, contacts)
            )
        ):
            contact_names[eid] = name or email
    company_names: dict[str, str] = {}
    if companies:
        rows = session.execute(
            select(Company.id, Company.name).where(
                Company.org_id == org_id, one_of(session, Company.id, companies)
            )
        )
        company_names = {cid: name for cid, name in rows}
    for r in records:
        r["surveyName"] = survey_names.get(r["campaignId"]) if r["campaignId"] else None
        r["contactName"] = contact_names.get(r["euId"], r["email"])
        r["companyName"] = company_names.get(r["cId"]) if r["cId"] else None
    return records


def company_answers(session: Session, org_id: str, company_id: str, limit: int) -> list[dict[str, Any]]:
    """A company's latest answers, newest first, whatever their age (``GET /nps?companyId=<id>
    &npsExpiryDay=0``), with their names."""
    return record_answers(session, org_id, ListQuery(company_ids=[company_id], expiry_days=None, limit=limit))


def contact_answers(
    session: Session, org_id: str, enduser: Enduser, limit: int, offset: int
) -> list[dict[str, Any]]:
    """A contact's answer history, newest first, whatever its age: ``GET /nps``'s query filtered
    by the contact (``email=<address>&npsExpiryDay=0``), with their names."""
    return record_answers(
        session, org_id, ListQuery(email=enduser.email, expiry_days=None, limit=limit, offset=offset)
    )
