"""Planhat-compatible ``/companies`` and ``/endusers``.

Keys are ``{key:path}`` so that ``extid-`` / ``srcid-`` keys may contain ``/`` (as on ``/nps``).
``/companies/{key}/endusers`` is therefore declared before ``/companies/{key}``; any other
sub-path of ``/companies/...`` must be declared in this router before the catch-all routes too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from npsd.auth.deps import Admin, Editor, Viewer
from npsd.contacts import service
from npsd.contacts.schemas import CompanyInput, CompanyRead, EnduserInput, EnduserRead
from npsd.kit.errors import BadRequest
from npsd.kit.http import DbSession, TransactionRoute, json_response
from npsd.kit.listing import Page, ParamStr, id_list, planhat_page, selectable_list
from npsd.kit.lookup import resolve
from npsd.kit.models import Company, Enduser
from npsd.records.schemas import DeleteResult

companies_router = APIRouter(route_class=TransactionRoute, prefix="/companies", tags=["companies"])
endusers_router = APIRouter(route_class=TransactionRoute, prefix="/endusers", tags=["endusers"])

KEY_DOC = "24-hex id, extid-<externalId> or srcid-<sourceId>"
Cascade = Annotated[bool, Query(description="Also delete the NPS records (and, for a company, its contacts)")]
DELETED = {"n": 1, "ok": 1, "deletedCount": 1}

# Handlers return ``json_response`` (orjson, no response-model pass): list items may be cut down by
# ``select``, which a response model would reject. The models still document the shapes in OpenAPI.


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
def create_company(body: CompanyInput, principal: Editor, session: DbSession) -> Response:
    """Create a company. `name` is required.

    `domains` (e.g. `["acme.com"]`, stored lower-case) route new contacts to the company by the
    domain of their e-mail address. `externalId` and `sourceId` are unique in your organization
    (409 naming the field) and can be used in paths as `extid-<externalId>` / `srcid-<sourceId>`.
    Read-only fields (`_id`, `nps`, `npsResponses`, `createdAt`, `__v` ...) are accepted and ignored.
    """
    return json_response(
        service.company_out(service.create_company(session, principal.org_id, body.column_values()))
    )


@companies_router.get("", response_model=selectable_list(CompanyRead))
def list_companies(page: ListPage, principal: Viewer, session: DbSession) -> Response:
    """List companies with their NPS (`nps`, `npsResponses`), oldest first unless `sort` says otherwise.

    Ties are broken by `_id`, so paging with `offset` never skips or repeats a company.
    """
    page.check_fields(service.COMPANY_SORT)
    return json_response(service.list_companies(session, principal.org_id, page))


@companies_router.get("/{key}/endusers", response_model=selectable_list(EnduserRead))
def company_endusers(
    company: CompanyByKey, page: ListPage, principal: Viewer, session: DbSession
) -> Response:
    """The contacts of one company, with the same `limit`, `offset`, `sort` and `select` as `GET /endusers`."""
    page.check_fields(service.ENDUSER_SORT)
    return json_response(service.list_endusers(session, principal.org_id, page, company_ids=[company.id]))


@companies_router.get("/{key:path}", response_model=CompanyRead, description=f"Get a company by {KEY_DOC}.")
def get_company(company: CompanyByKey) -> Response:
    return json_response(service.company_out(company))


@companies_router.put("/{key:path}", response_model=CompanyRead)
def update_company(_: Editor, company: CompanyByKey, body: CompanyInput, session: DbSession) -> Response:
    """Update the fields sent (by id, `extid-` or `srcid-`); `custom` merges key by key.

    `__v` increments when something changed. Sending back a whole object read from this API
    works: read-only fields are ignored.
    """
    return json_response(service.company_out(service.update_company(session, company, body.column_values())))


@companies_router.delete("/{key:path}", response_model=DeleteResult)
def delete_company(_: Admin, company: CompanyByKey, session: DbSession, cascade: Cascade = False) -> Response:
    """Delete a company and its contacts (admin only).

    A company whose contacts have NPS records is a 409 unless `cascade=true`, which deletes those
    records too; every NPS roll-up follows.
    """
    service.delete_company(session, company, cascade)
    return json_response(DELETED)


@endusers_router.post("", response_model=EnduserRead)
def create_enduser(body: EnduserInput, principal: Editor, session: DbSession) -> Response:
    """Create a contact. `email` is required and unique in your organization (case-insensitive; 409).

    Without `companyId`, the contact joins the company whose `domains` hold its e-mail domain.
    Read-only fields (`_id`, `nps`, `npsComment`, `npsDate`, `__v` ...) are accepted and ignored.
    """
    return json_response(
        service.enduser_out(service.create_enduser(session, principal.org_id, body.column_values()))
    )


@endusers_router.get("", response_model=selectable_list(EnduserRead))
def list_endusers(
    page: ListPage,
    principal: Viewer,
    session: DbSession,
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    c: Annotated[
        str | None,
        Query(
            description="Planhat's short name for `companyId` (`/endusers?c=<companyId>`); give one of the two"
        ),
    ] = None,
    email: Annotated[
        ParamStr | None, Query(max_length=320, description="E-mail address (case-insensitive)")
    ] = None,
) -> Response:
    """List contacts with their latest NPS answer (`nps`, `npsComment`, `npsDate`), oldest first.

    `companyId` (or Planhat's `c`) lists only the contacts of those companies.
    """
    page.check_fields(service.ENDUSER_SORT)
    if c is not None and companyId is not None and c != companyId:
        raise BadRequest.field("c", "is another name for companyId; send one of the two")
    companies = id_list(companyId, "companyId") if companyId is not None else id_list(c, "c")
    return json_response(service.list_endusers(session, principal.org_id, page, companies, email))


@endusers_router.get("/{key:path}", response_model=EnduserRead, description=f"Get a contact by {KEY_DOC}.")
def get_enduser(enduser: EnduserByKey) -> Response:
    return json_response(service.enduser_out(enduser))


@endusers_router.put("/{key:path}", response_model=EnduserRead)
def update_enduser(_: Editor, enduser: EnduserByKey, body: EnduserInput, session: DbSession) -> Response:
    """Update the fields sent; `custom` merges key by key and `__v` increments when something changed.

    Moving a contact to another company (`companyId`) moves its NPS from one company's roll-up to
    the other's.
    """
    return json_response(service.enduser_out(service.update_enduser(session, enduser, body.column_values())))


@endusers_router.delete("/{key:path}", response_model=DeleteResult)
def delete_enduser(_: Admin, enduser: EnduserByKey, session: DbSession, cascade: Cascade = False) -> Response:
    """Delete a contact (admin only). One with NPS records is a 409 unless `cascade=true`."""
    service.delete_enduser(session, enduser, cascade)
    return json_response(DELETED)
