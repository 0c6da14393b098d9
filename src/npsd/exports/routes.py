"""``GET /nps/export``: every record matching the ``/nps`` list filters, streamed.

Included before the records router, so ``/nps/export`` wins over ``/nps/{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from npsd.auth.deps import Viewer
from npsd.exports.service import EXPORT_CONTENT, FORMAT_QUERY, ExportFormat, stream_records
from npsd.kit.http import ReadDatabase, TransactionRoute
from npsd.kit.timeutil import utcnow
from npsd.records.routes import ListQueryDep
from npsd.records.service import filtered, ordered

router = APIRouter(route_class=TransactionRoute, tags=["exports"])

EXPORT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The records as a file download (`Content-Disposition: attachment`)",
        "content": EXPORT_CONTENT,
    },
}


@router.get("/nps/export", response_class=StreamingResponse, responses=EXPORT_RESPONSES)
def export_nps(
    db: ReadDatabase,
    q: ListQueryDep,
    principal: Viewer,
    format: Annotated[ExportFormat, FORMAT_QUERY],
) -> StreamingResponse:
    """Download every NPS record matching the `GET /nps` filters as CSV, XLSX, JSON or NDJSON.

    The filters (`companyId`, `campaignId`, `email`, `scoreType`, `since`, `until`,
    `updatedSince`, `npsExpiryDay`, and `sort` for the order) mean what they mean on
    `GET /nps`, including the default of the last 360 days (`npsExpiryDay=0` exports all);
    `limit`, `offset` and `select` are ignored: an export holds every matching record.

    The file is streamed with constant memory, so exports of millions of records are fine, and
    named `nps-records-YYYY-MM-DD.{format}`. Columns are the record fields (`_id`, `email`,
    `score`, `scoreType`, `comment`, `euId`, `cId`, `campaignId`, `source`, `sourceId`,
    `dateSent`, `dateReminderSent`, `dateAnswered`, `createdAt`, `updatedAt`), then one
    `custom.<key>` column per custom key (sorted), then the names beside the ids:
    `enduserName` (the contact's name, of `euId`), `companyName` (of `cId`) and `surveyName`
    (of `campaignId`, when it is a survey of your organization); empty when there is none.
    Last, what your team did with each answer (see `/v1/answers/{id}`): `tags` (sorted, joined
    with `; `), `followUpStatus`, `assigneeEmail` and `notes` (newest first, one a line as
    `[createdAt author] text`); empty when there is none.
    CSV is UTF-8 with a header row; XLSX has typed cells (numbers, dates). In both, text
    starting with `=`, `+`, `-`, `@`, TAB or CR gets a leading `'` so spreadsheets do not run it
    as a formula. JSON (one array) and NDJSON (one object per line) have the same fields with
    `custom` as a nested object (before the names), `null` where there is no name, and `tags`
    and `notes` (`{text, authorEmail, createdAt}`) as lists.
    """
    stmt = ordered(filtered(principal.org_id, q, utcnow()), q.sort)
    return stream_records(db, stmt, format, "nps-records")
