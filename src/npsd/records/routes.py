"""Planhat-compatible NPS records: ``/nps``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from npsd.analytics.nps import CATEGORY_RANGES
from npsd.auth.deps import Admin, Editor, Viewer
from npsd.kit.errors import BadRequest
from npsd.kit.http import DbSession, RawJson, ReadSession, TransactionRoute, json_response, point_read
from npsd.kit.idempotency import pending_in
from npsd.kit.listing import (
    Page,
    ParamStr,
    Window,
    answered_window,
    blank_to_none,
    id_list,
    planhat_page,
    selectable_list,
)
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import UtcDatetime
from npsd.records import service
from npsd.records.batcher import reply_body
from npsd.records.queries import SEARCH_MAX_LENGTH
from npsd.records.schemas import BULK_BODY_SCHEMA, BulkResult, DeleteResult, NpsInput, NpsRead

router = APIRouter(route_class=TransactionRoute, tags=["nps"])
RecordKey = Annotated[str, Path(description="The record's 24-hex `_id`, or `srcid-<sourceId>`")]


SEARCH_DESCRIPTION = (
    "Words the comment must hold: each word of `search` must begin a word of the comment "
    '(`deliv` finds "Delivery was late"), in any case and with or without diacritics (`equipe` '
    'finds "L\'équipe", `Ubersicht` finds "Übersicht"; ß, æ, œ and ø are letters of their own). '
    "Words are runs of letters and digits: punctuation, quotes and symbols only separate them, "
    "so there are no operators, phrases or wildcards (`e-mail` looks for `e` and `mail`). "
    "Answers without a comment never match. At most 200 characters; an empty search, or one "
    "without letters or digits, filters nothing. Served by a full-text index on SQLite and "
    "PostgreSQL alike, with the same results on both."
)

# Answers are dated from 1970 on (kit.validation.to_utc): a window reaching further back holds them all.
EARLIEST_ANSWER = datetime(1970, 1, 1)


def list_query(
    page: Annotated[Page, Depends(planhat_page)],
    window: Annotated[Window, Depends(answered_window)],
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    campaignId: Annotated[ParamStr | None, Query(description="Comma-separated survey/campaign ids")] = None,
    email: Annotated[
        ParamStr | None, Query(max_length=320, description="Contact e-mail (case-insensitive)")
    ] = None,
    scoreType: Annotated[str | None, Query(description="promoter, passive or detractor")] = None,
    updatedSince: Annotated[
        UtcDatetime | None, Query(description="Changed at or after, for incremental sync")
    ] = None,
    npsExpiryDay: Annotated[
        int | None,
        Query(
            ge=0,
            description="Only answers of the last N days (default 360; 0 for no limit, as is any window "
            "reaching before the first answer). Not applied by default when since or updatedSince is given.",
        ),
    ] = None,
    search: Annotated[
        ParamStr | None, Query(max_length=SEARCH_MAX_LENGTH, description=SEARCH_DESCRIPTION)
    ] = None,
) -> service.ListQuery:
    page.check_fields(service.OUTPUT_FIELDS)
    if scoreType is not None and scoreType not in CATEGORY_RANGES:
        raise BadRequest.field("scoreType", "must be promoter, passive or detractor")
    if npsExpiryDay is not None and npsExpiryDay > (utcnow() - EARLIEST_ANSWER).days:
        npsExpiryDay = 0  # Planhat sets no maximum; this also keeps the date arithmetic in range
    expiry = npsExpiryDay if npsExpiryDay is not None else (None if window.since or updatedSince else 360)
    campaigns = [c.strip() for c in campaignId.split(",") if c.strip()] if campaignId else None
    if campaigns and any(len(c) > 64 for c in campaigns):
        raise BadRequest.field("campaignId", "each id must be at most 64 characters")
    return service.ListQuery(
        company_ids=id_list(companyId, "companyId"),
        campaign_ids=campaigns,
        email=email,
        score_type=scoreType,
        since=window.since,
        until=window.until,
        updated_since=updatedSince,
        expiry_days=expiry,
        sort=page.sort,
        limit=page.limit,
        offset=page.offset,
        select=page.select,
        search=blank_to_none(search),
    )


ListQueryDep = Annotated[service.ListQuery, Depends(list_query)]


@router.post("/nps", response_model=NpsRead, status_code=200)
async def create_nps(body: NpsInput, principal: Editor, request: Request) -> Response:
    """Create one NPS record.

    `email` and `score` (an integer 0-10) are required. The contact is found by e-mail
    (case-insensitive) or created; a new contact joins the company `cId`, else the company whose
    `domains` hold the address's domain. `dateAnswered` defaults to now. Contact and company
    NPS are updated in the same transaction, and the reply comes once it is committed.
    """
    # Concurrent creates are committed together (group commit, see batcher.py); the reply is
    # still this record's own, or the 400/409 it would get alone.
    row = await request.app.state.create_batcher.create(principal.org_id, body, pending_in(request.scope))
    return Response(reply_body(row), media_type="application/json")


@router.get("/nps", response_model=selectable_list(NpsRead))
def list_nps(q: ListQueryDep, principal: Viewer, session: ReadSession) -> Response:
    """List NPS records, newest answer first unless `sort` says otherwise.

    By default only answers of the last 360 days (`npsExpiryDay`). Ties are broken by `_id`,
    so paging with `offset` never skips or repeats a record. `search` finds answers by the words
    of their comment, through a full-text index (see the parameter).
    """
    return json_response(service.list_records(session, principal.org_id, q))


@router.put(
    "/nps",
    response_model=BulkResult,
    openapi_extra=BULK_BODY_SCHEMA,
    responses={206: {"model": BulkResult, "description": "Some items failed; see the error lists"}},
)
def bulk_upsert_nps(items: RawJson, principal: Editor, session: DbSession) -> Response:
    """Bulk upsert up to 5,000 records.

    Each item updates the record its `_id`, else its `sourceId`, names in your organization;
    otherwise it creates one (which needs `email` and `score`) with a new `_id`. Invalid items
    are reported in `createdErrors` / `updatedErrors` with their index while the others are
    applied. 200 when every item succeeded, 206 when some failed.
    """
    outcome = service.bulk_upsert(session, principal.org_id, items)
    return json_response(outcome.body(), status_code=206 if outcome.failed else 200)


async def record_by_key(
    request: Request, key: RecordKey, principal: Viewer, session: DbSession
) -> dict[str, Any]:
    """The record named in the path, in the caller's organization, or 404 (400 for a malformed key)."""
    return await point_read(request, service.find_record, session, principal.org_id, key)


RecordByKey = Annotated[dict[str, Any], Depends(record_by_key)]


@router.get("/nps/{key:path}", response_model=NpsRead)
async def get_nps(record: RecordByKey) -> Response:
    """Get one record by `_id` or by `srcid-<sourceId>`."""
    # async: only formats what the lookup dependency read, so it needs no worker thread
    return json_response(service.to_output(tuple(record.values())))


@router.put("/nps/{key:path}", response_model=NpsRead)
def update_nps(principal: Editor, record: RecordByKey, body: NpsInput, session: DbSession) -> Response:
    """Update a record by `_id` or `srcid-<sourceId>`: only the fields sent change.

    `custom` is merged key by key, `__v` increments (unless nothing changed), and `scoreType`
    always follows `score`. Sending back a whole object read from the API is fine: read-only
    fields are ignored.
    """
    updated = service.update_record(session, principal.org_id, record["id"], body)
    return json_response(service.to_output(tuple(updated.values())))


@router.delete("/nps/{key:path}", response_model=DeleteResult)
def delete_nps(principal: Admin, record: RecordByKey, session: DbSession) -> dict[str, Any]:
    """Delete a record by `_id` or `srcid-<sourceId>` (admin role); contact and company NPS follow."""
    n = service.delete_record(session, principal.org_id, record["id"])
    return {"n": n, "ok": 1, "deletedCount": n}
