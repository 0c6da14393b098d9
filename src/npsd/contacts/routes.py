"""Planhat-compatible ``/companies`` and ``/endusers``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from npsd.auth.deps import Admin, Editor, Viewer
from npsd.contacts import service
from npsd.contacts.schemas import CompanyInput, CompanyRead, EnduserInput, EnduserRead
from npsd.http import DbSession
from npsd.listing import Page, id_list, planhat_page
from npsd.lookup import resolve
from npsd.models import Company, Enduser
from npsd.records.schemas import DeleteResult

companies_router = APIRouter(prefix="/companies", tags=["companies"])
endusers_router = APIRouter(prefix="/endusers", tags=["endusers"])

KEY_DOC = "24-hex id, extid-<externalId> or srcid-<sourceId>"
Cascade = Annotated[bool, Query(description="Also delete the NPS records (and, for a company, its contacts)")]


def company_by_key(key: str, principal: Viewer, session: DbSession) -> Company:
    """The company named in the path, in the caller's organization, or 404."""
    return resolve(session, Company, principal.org_id, key, "company")


def enduser_by_key(key: str, principal: Viewer, session: DbSession) -> Enduser:
    """The contact named in the path, in the caller's organization, or 404."""
    return resolve(session, Enduser, principal.org_id, key, "enduser")


CompanyByKey = Annotated[Company, Depends(company_by_key)]
EnduserByKey = Annotated[Enduser, Depends(enduser_by_key)]
ListPage = Annotated[Page, Depends(planhat_page)]


@companies_router.post("", response_model=CompanyRead)
def create_company(body: CompanyInput, principal: Editor, session: DbSession) -> dict[str, Any]:
    """Create a company. `domains` (e.g. `["acme.com"]`) route new contacts to it by e-mail domain."""
    return service.company_out(service.create_company(session, principal.org_id, body.column_values()))


@companies_router.get("", response_model=list[CompanyRead])
def list_companies(page: ListPage, principal: Viewer, session: DbSession) -> list[dict[str, Any]]:
    """List companies with their NPS (`nps`, `npsResponses`)."""
    page.check_fields(service.COMPANY_SORT)
    return service.list_companies(session, principal.org_id, page)


@companies_router.get("/{key}", response_model=CompanyRead, description=f"Get a company by {KEY_DOC}.")
def get_company(company: CompanyByKey) -> dict[str, Any]:
    return service.company_out(company)


@companies_router.put("/{key}", response_model=CompanyRead)
def update_company(company: CompanyByKey, body: CompanyInput, _: Editor, session: DbSession) -> dict[str, Any]:
    """Update the fields sent; `custom` merges key by key."""
    return service.company_out(service.update_company(session, company, body.column_values()))


@companies_router.delete("/{key}", response_model=DeleteResult)
def delete_company(company: CompanyByKey, principal: Admin, session: DbSession,
                   cascade: Cascade = False) -> dict[str, Any]:
    """Delete a company and its contacts. One with NPS records is a 409 unless `cascade=true`."""
    service.delete_company(session, company, cascade, principal.can("admin"))
    return {"n": 1, "ok": 1, "deletedCount": 1}


@companies_router.get("/{key}/endusers", response_model=list[EnduserRead])
def company_endusers(company: CompanyByKey, page: ListPage, principal: Viewer,
                     session: DbSession) -> list[dict[str, Any]]:
    """The contacts of one company."""
    page.check_fields(service.ENDUSER_SORT)
    return service.list_endusers(session, principal.org_id, page, company_ids=[company.id])


@endusers_router.post("", response_model=EnduserRead)
def create_enduser(body: EnduserInput, principal: Editor, session: DbSession) -> dict[str, Any]:
    """Create a contact; e-mail is unique per organization (case-insensitive)."""
    return service.enduser_out(service.create_enduser(session, principal.org_id, body.column_values()))


@endusers_router.get("", response_model=list[EnduserRead])
def list_endusers(
    page: ListPage, principal: Viewer, session: DbSession,
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
) -> list[dict[str, Any]]:
    """List contacts with their latest NPS answer."""
    page.check_fields(service.ENDUSER_SORT)
    return service.list_endusers(session, principal.org_id, page, id_list(companyId, "companyId"), email)


@endusers_router.get("/{key}", response_model=EnduserRead, description=f"Get a contact by {KEY_DOC}.")
def get_enduser(enduser: EnduserByKey) -> dict[str, Any]:
    return service.enduser_out(enduser)


@endusers_router.put("/{key}", response_model=EnduserRead)
def update_enduser(enduser: EnduserByKey, body: EnduserInput, _: Editor, session: DbSession) -> dict[str, Any]:
    """Update the fields sent; moving a contact to another company updates both companies' NPS."""
    return service.enduser_out(service.update_enduser(session, enduser, body.column_values()))


@endusers_router.delete("/{key}", response_model=DeleteResult)
def delete_enduser(enduser: EnduserByKey, _: Admin, session: DbSession,
                   cascade: Cascade = False) -> dict[str, Any]:
    """Delete a contact. One with NPS records is a 409 unless `cascade=true`."""
    service.delete_enduser(session, enduser, cascade)
    return {"n": 1, "ok": 1, "deletedCount": 1}
