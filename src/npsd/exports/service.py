"""Streaming exports of NPS records as CSV, XLSX, JSON or NDJSON, in constant memory."""

from __future__ import annotations

from typing import Any

from fastapi.responses import StreamingResponse
from sqlalchemy import Select

from npsd.db import Database

FORMATS = ("csv", "xlsx", "json", "ndjson")


def stream_records(db: Database, stmt: Select[Any], fmt: str, filename_stem: str) -> StreamingResponse:
    """Stream the rows of ``stmt`` (a select of ``npsd.records.service.COLUMNS``, already scoped to
    one organization and ordered) as a download named ``{filename_stem}-YYYY-MM-DD.{ext}``.

    An unknown ``fmt`` is a 400 listing the accepted formats. The rows are read on a connection of
    the export's own, in batches, while the response is sent.
    """
    raise NotImplementedError("exports are being built")
