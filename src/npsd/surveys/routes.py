"""SalesOS-compatible ``/v1/nps-surveys``: surveys, their responses with NPS breakdown, and export.

``stats``, ``nps-metrics`` and ``metrics/nps`` live in ``analytics/routes.py``, included first so
those static paths win over ``/{id}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.analytics.nps import CATEGORY_RANGES
from npsd.auth.deps import Admin, Editor, Viewer
from npsd.exports.service import EXPORT_CONTENT, FORMAT_QUERY, ExportFormat, stream_records
from npsd.kit.errors import BadRequest
from npsd.kit.http import DbSession, ReadDatabase, ReadSession, TransactionRoute
from npsd.kit.listing import (
    LimitParam,
    PageParam,
    ParamStr,
    SortOrderParam,
    Window,
    answered_window,
    blank_to_none,
    id_list,
    is_descending,
)
from npsd.kit.models import Survey
from npsd.surveys import service
from npsd.surveys.schemas import (
    ResponseCreate,
    ResponseRead,
    ResponsesPage,
    SurveyCreate,
    SurveyRead,
    SurveyType,
    SurveyUpdate,
)

router = APIRouter(route_class=TransactionRoute, prefix="/v1/nps-surveys", tags=["surveys"])


IdParam = Annotated[str, Path(description="Survey id (24 hexadecimal characters)")]


def survey_by_id(id: IdParam, principal: Viewer, session: DbSession) -> Survey:
    """The survey named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return service.find_survey(session, principal.org_id, id)


def survey_to_change(id: IdParam, principal: Editor, session: DbSession) -> Survey:
    """The same, row-locked for an update, toggle or delete (editor role or higher)."""
    return service.find_survey(session, principal.org_id, id, lock="update")


def survey_to_answer(id: IdParam, principal: Editor, session: DbSession) -> Survey:
    """The same, share-locked so a concurrent delete waits for the new answer (editor role or higher)."""
    return service.find_survey(session, principal.org_id, id, lock="share")


SurveyById = Annotated[Survey, Depends(survey_by_id)]
SurveyToChange = Annotated[Survey, Depends(survey_to_change)]
SurveyToAnswer = Annotated[Survey, Depends(survey_to_answer)]


def _sort_by(value: str | None, allowed: tuple[str, ...] | list[str], default: str) -> str:
    if value is not None and value not in allowed:
        raise BadRequest.field("sortBy", f"must be one of {', '.join(allowed)}")
    return value or default


def survey_query(
    page: PageParam = 1,
    limit: LimitParam = 20,
    sortBy: Annotated[
        str | None,
        Query(max_length=50, description=f"One of {', '.join(service.SURVEY_SORT)} (default createdAt)"),
    ] = None,
    sortOrder: SortOrderParam = None,
    isActive: Annotated[
        bool | None, Query(description="Only active (true) or inactive (false) surveys")
    ] = None,
    surveyType: Annotated[SurveyType | None, Query(description="RELATIONSHIP or TRANSACTIONAL")] = None,
    q: Annotated[
        ParamStr | None, Query(max_length=200, description="Text in the name or description")
    ] = None,
) -> service.SurveyQuery:
    return service.SurveyQuery(
        page=page,
        limit=limit,
        sort_by=_sort_by(sortBy, service.SURVEY_SORT, "createdAt"),
        descending=is_descending(sortOrder),
        is_active=isActive,
        survey_type=surveyType,
        q=blank_to_none(q),
    )


def response_filters(
    window: Annotated[Window, Depends(answered_window)],
    sortBy: Annotated[
        str | None,
        Query(max_length=50, description=f"One of {', '.join(service.RESPONSE_SORT)} (default respondedAt)"),
    ] = None,
    sortOrder: SortOrderParam = None,
    scoreType: Annotated[
        str | None, Query(max_length=20, description="promoter, passive or detractor (any case)")
    ] = None,
    companyId: Annotated[
        str | None, Query(max_length=2500, description="Comma-separated company ids")
    ] = None,
    email: Annotated[
        ParamStr | None, Query(max_length=320, description="Respondent e-mail (case-insensitive)")
    ] = None,
    q: Annotated[
        ParamStr | None, Query(max_length=200, description="Text in the comment (case-insensitive)")
    ] = None,
    hasComment: Annotated[
        bool | None, Query(description="Only responses with (true) or without (false) a comment")
    ] = None,
) -> service.ResponseQuery:
    score_type = scoreType.strip().lower() if scoreType else None
    if score_type is not None and score_type not in CATEGORY_RANGES:
        raise BadRequest.field("scoreType", "must be promoter, passive or detractor")
    return service.ResponseQuery(
        score_type=score_type,
        since=window.since,
        until=window.until,
        company_ids=id_list(companyId, "companyId"),
        email=blank_to_none(email),
        q=blank_to_none(q),
        has_comment=hasComment,
        sort_by=_sort_by(sortBy, tuple(service.RESPONSE_SORT), "respondedAt"),
        descending=is_descending(sortOrder),
    )


SurveyQueryDep = Annotated[service.SurveyQuery, Depends(survey_query)]
ResponseFilters = Annotated[service.ResponseQuery, Depends(response_filters)]


@router.post("", response_model=SurveyRead, status_code=201)
def create_survey(body: SurveyCreate, principal: Editor, session: DbSession) -> dict[str, Any]:
    """Create an NPS survey. Only `name` is required; unknown fields are a 400 naming them."""
    return service.create_survey(session, principal.org_id, body)


@router.get(
    "",
    response_model=list[SurveyRead],
    responses={
        200: {
            "headers": {
                "X-Total-Count": {
                    "description": "Surveys matching the filters, over all pages",
                    "schema": {"type": "integer"},
                }
            }
        }
    },
)
def list_surveys(
    q: SurveyQueryDep, principal: Viewer, session: ReadSession, response: Response
) -> list[dict[str, Any]]:
    """List surveys, newest first unless `sortBy`/`sortOrder` say otherwise, as a bare array.

    The total number of matching surveys is in the `X-Total-Count` header. Each survey carries its
    `responseCount` and `npsScore`; both can be used in `sortBy` (surveys without responses sort last).
    """
    rows, total = service.list_surveys(session, principal.org_id, q)
    response.headers["X-Total-Count"] = str(total)
    return rows


@router.get("/{id}", response_model=SurveyRead)
def get_survey(survey: SurveyById, session: DbSession) -> dict[str, Any]:
    """Get one survey with its `responseCount` and `npsScore`."""
    return service.read_survey(session, survey)


@router.patch("/{id}", response_model=SurveyRead)
def patch_survey(survey: SurveyToChange, body: SurveyUpdate, session: DbSession) -> dict[str, Any]:
    """Update the fields sent; the others keep their values. Unknown fields are a 400 naming them."""
    return service.update_survey(session, survey, body)


@router.put("/{id}", response_model=SurveyRead)
def put_survey(survey: SurveyToChange, body: SurveyUpdate, session: DbSession) -> dict[str, Any]:
    """Same as PATCH (SalesOS treats PUT as a partial update): only the fields sent change."""
    return service.update_survey(session, survey, body)


@router.delete("/{id}", status_code=204, response_class=Response)
def delete_survey(survey: SurveyToChange, _: Admin, session: DbSession) -> Response:
    """Delete a survey with all its responses (admin only). Contact, company and metric roll-ups follow."""
    service.delete_survey(session, survey)
    return Response(status_code=204)


@router.post("/{id}/toggle", response_model=SurveyRead)
def toggle_survey(survey: SurveyToChange, session: DbSession) -> dict[str, Any]:
    """Switch the survey on or off (`isActive` flips) and return it."""
    return service.toggle_survey(session, survey)


@router.get("/{id}/responses", response_model=ResponsesPage)
def list_responses(
    survey: SurveyById,
    filters: ResponseFilters,
    principal: Viewer,
    session: ReadSession,
    page: PageParam = 1,
    limit: LimitParam = 20,
) -> dict[str, Any]:
    """Responses of a survey, newest answer first, with the NPS breakdown of **all** responses
    matching the filters (not only this page): counts, percentages, NPS, mean score, the 0-10
    distribution and the 95% margin of error."""
    return service.list_responses(session, principal.org_id, survey.id, filters, page, limit)


@router.post("/{id}/responses", response_model=ResponseRead, status_code=201)
def add_response(survey: SurveyToAnswer, body: ResponseCreate, session: DbSession) -> dict[str, Any]:
    """Add one answer to an open survey. A switched-off survey, or one outside its
    `startsAt`/`endsAt` window, answers 409 "survey is not active" (imports through `/nps` with
    `campaignId` are always accepted). The response also appears in `/nps` with `campaignId`."""
    return service.add_response(session, survey, body)


@router.get(
    "/{id}/responses/export",
    response_model=None,
    responses={200: {"description": "The file, streamed", "content": EXPORT_CONTENT}},
)
def export_responses(
    db: ReadDatabase,
    survey: SurveyById,
    filters: ResponseFilters,
    principal: Viewer,
    format: Annotated[ExportFormat, FORMAT_QUERY],
) -> Response:
    """Download the responses matching the same filters as the responses list, streamed in
    constant memory, as `nps-survey-{id}-responses-YYYY-MM-DD.{ext}`.

    The fields are those of a response in `GET /v1/nps-surveys/{id}/responses`, then the names
    beside the ids. The CSV and XLSX header is, in this order: `id`, `surveyId`, `enduserId`,
    `companyId`, `email`, `score`, `category`, `comment`, `source`, `sourceId`, `sentAt`,
    `respondedAt`, `createdAt`, `updatedAt`, one `custom.<key>` column per custom key (sorted),
    `surveyName`, `enduserName`, `companyName` (the names are empty when there is none). Text
    starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading `'` so spreadsheets do not run it
    as a formula; XLSX cells are typed (numbers, dates). JSON (one array) and NDJSON (one object
    per line) have the same fields in the same order, with `custom` as a nested object in place
    of its columns and `null` where there is no name."""
    stmt = service.responses_select(principal.org_id, survey.id, filters)
    return stream_records(db, stmt, format, f"nps-survey-{survey.id}-responses", service.RESPONSE_EXPORT)
