"""Streaming exports of NPS records as CSV, XLSX, JSON or NDJSON, in constant memory.

The request's session is closed before a streamed body is sent, so an export reads on a
connection of its own, opened inside the response generator, in one read transaction: the
``custom`` key set (one SQL query over the same rows) and the rows themselves come from the
same snapshot. Rows arrive in batches (``yield_per``; a server-side cursor on PostgreSQL), and
each batch is encoded and sent before the next is fetched, so memory does not grow with the
number of rows. XLSX cannot be written as a stream; it is built in a temporary file with
XlsxWriter's ``constant_memory`` mode and then streamed from disk.

Columns are the fields of a ``GET /nps`` record (without the legacy aliases), then one
``custom.<key>`` column per key of ``custom`` found in the exported rows, sorted. JSON and
NDJSON keep ``custom`` as one nested object instead.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
import xlsxwriter
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, Select, func, select, true

from npsd.analytics.nps import category
from npsd.db import Database
from npsd.errors import BadRequest
from npsd.models import NpsRecord
from npsd.timeutil import iso, utcnow

FORMATS = ("csv", "xlsx", "json", "ndjson")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
FIELDS = ("_id", "email", "score", "scoreType", "comment", "euId", "cId", "campaignId", "source", "sourceId",
          "dateSent", "dateReminderSent", "dateAnswered", "createdAt", "updatedAt")
BATCH_ROWS = 2000
MAX_CUSTOM_COLUMNS = 1000  # beyond this, ``custom`` is exported as one JSON column
XLSX_MAX_ROWS = 1_048_576  # per sheet, header included
CHUNK_BYTES = 64 * 1024
EXPORT_SQLITE_CACHE_KIB = -2048  # negative: KiB, as PRAGMA cache_size reads it
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
T = NpsRecord.__table__

Row = Sequence[Any]
# record row layout: npsd.records.service.COLUMNS
(ID, EMAIL, SCORE, COMMENT, EUID, CID, CAMPAIGN, SOURCE, SOURCE_ID, SENT, REMINDED, ANSWERED, CUSTOM, CREATED,
 UPDATED, VERSION) = range(16)
DATE_COLUMNS = frozenset({SENT, REMINDED, ANSWERED, CREATED, UPDATED})
# the row index behind each exported field (scoreType is derived from the score)
FIELD_SOURCES = (ID, EMAIL, SCORE, SCORE, COMMENT, EUID, CID, CAMPAIGN, SOURCE, SOURCE_ID, SENT, REMINDED,
                 ANSWERED, CREATED, UPDATED)


def check_format(fmt: str | None) -> str:
    """The format, or a 400 listing the accepted ones."""
    if fmt not in FORMATS:
        accepted = ", ".join(FORMATS)
        issue = f"is required; one of {accepted}" if not fmt else f"must be one of {accepted}"
        raise BadRequest.field("format", issue)
    return fmt


def escape_cell(value: str) -> str:
    """Prefix text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, TAB, CR) with ``'``."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def stream_records(db: Database, stmt: Select[Any], fmt: str, filename_stem: str) -> StreamingResponse:
    """Stream the rows of ``stmt`` (a select of ``npsd.records.service.COLUMNS``, already scoped to
    one organization and ordered) as a download named ``{filename_stem}-YYYY-MM-DD.{ext}``.

    An unknown ``fmt`` is a 400 listing the accepted formats. The rows are read on a connection of
    the export's own, in batches, while the response is sent.
    """
    fmt = check_format(fmt)
    stem = _UNSAFE_FILENAME.sub("-", filename_stem).strip("-") or "nps"
    filename = f"{stem}-{utcnow().date().isoformat()}.{fmt}"
    writers: dict[str, Callable[[Database, Select[Any]], Iterator[bytes]]] = {
        "csv": write_csv, "xlsx": write_xlsx, "json": write_json, "ndjson": write_ndjson,
    }
    return StreamingResponse(
        writers[fmt](db, stmt),
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f"attachment; filename={filename}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# ---------------------------------------------------------------------------------------- reading


@contextmanager
def open_rows(db: Database, stmt: Select[Any], want_keys: bool) -> Iterator[tuple[list[str] | None, Iterator[Row]]]:
    """Open the export's own read transaction; yield (custom keys or None, the rows)."""
    postgres = not db.is_sqlite
    with db.engine.connect() as conn:
        if postgres:
            # one snapshot for the key query and the rows
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            previous_cache = None
            if not postgres:
                # a one-pass scan gains nothing from a large page cache: keep this connection's small
                previous_cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or 0)
                conn.exec_driver_sql(f"PRAGMA cache_size={EXPORT_SQLITE_CACHE_KIB}")
            try:
                keys = custom_keys(conn, stmt) if want_keys else None
                result = conn.execution_options(yield_per=BATCH_ROWS).execute(stmt)
                try:
                    yield keys, (row for part in result.partitions() for row in part)
                finally:
                    result.close()
            finally:
                if previous_cache is not None:
                    conn.exec_driver_sql(f"PRAGMA cache_size={previous_cache}")


def custom_keys(conn: Connection, stmt: Select[Any]) -> list[str]:
    """The sorted top-level keys of ``custom`` over the rows of ``stmt``, found in SQL.

    More than ``MAX_CUSTOM_COLUMNS`` keys yields ``["*"]``: one JSON column instead of a
    column per key, so a spreadsheet never gets an unbounded number of columns.
    """
    sub = stmt.with_only_columns(T.c.custom).order_by(None).where(T.c.custom.is_not(None)).subquery()
    if conn.dialect.name == "postgresql":
        key = func.jsonb_object_keys(sub.c.custom).label("key")
        query = (select(key).where(func.jsonb_typeof(sub.c.custom) == "object").distinct()
                 .limit(MAX_CUSTOM_COLUMNS + 1))
    else:
        each = func.json_each(sub.c.custom).table_valued("key", name="custom_key")
        query = (select(each.c.key).select_from(sub).join(each, true())
                 .where(func.json_type(sub.c.custom) == "object").distinct().limit(MAX_CUSTOM_COLUMNS + 1))
    keys = sorted(k for k in conn.execute(query).scalars() if k is not None)
    return ["*"] if len(keys) > MAX_CUSTOM_COLUMNS else keys


def header(keys: list[str]) -> list[str]:
    return [*FIELDS, *("custom" if k == "*" else f"custom.{k}" for k in keys)]


# ---------------------------------------------------------------------------------------- CSV


def _csv_custom(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_cell(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return orjson.dumps(value).decode()


def _text(value: str | None) -> str:
    return "" if value is None else escape_cell(value)


def write_csv(db: Database, stmt: Select[Any]) -> Iterator[bytes]:
    """UTF-8 CSV with a header row; text cells that could run as formulas are escaped."""
    with open_rows(db, stmt, want_keys=True) as (keys, rows):
        assert keys is not None
        whole_custom = keys == ["*"]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header(keys))
        n = 0
        for r in rows:
            custom = r[CUSTOM]
            line = [
                r[ID], _text(r[EMAIL]), r[SCORE], category(r[SCORE]), _text(r[COMMENT]), r[EUID], r[CID] or "",
                _text(r[CAMPAIGN]), _text(r[SOURCE]), _text(r[SOURCE_ID]), iso(r[SENT]) or "",
                iso(r[REMINDED]) or "", iso(r[ANSWERED]), iso(r[CREATED]), iso(r[UPDATED]),
            ]
            if whole_custom:
                line.append(orjson.dumps(custom).decode() if custom else "")
            elif keys:
                if isinstance(custom, dict):
                    line.extend([_csv_custom(custom.get(k)) for k in keys])
                else:
                    line.extend([""] * len(keys))
            writer.writerow(line)
            n += 1
            if n == BATCH_ROWS:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                n = 0
        yield buffer.getvalue().encode()


# ---------------------------------------------------------------------------------------- JSON


def record_object(r: Row) -> dict[str, Any]:
    """A record as exported in JSON: the ``GET /nps`` fields, ``custom`` nested."""
    return {
        "_id": r[ID], "email": r[EMAIL], "score": r[SCORE], "scoreType": category(r[SCORE]), "comment": r[COMMENT],
        "euId": r[EUID], "cId": r[CID], "campaignId": r[CAMPAIGN], "source": r[SOURCE], "sourceId": r[SOURCE_ID],
        "dateSent": iso(r[SENT]), "dateReminderSent": iso(r[REMINDED]), "dateAnswered": iso(r[ANSWERED]),
        "createdAt": iso(r[CREATED]), "updatedAt": iso(r[UPDATED]), "custom": r[CUSTOM],
    }


def _batches(rows: Iterator[Row]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in rows:
        batch.append(record_object(r))
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def write_json(db: Database, stmt: Select[Any]) -> Iterator[bytes]:
    """One JSON array of record objects, sent batch by batch."""
    with open_rows(db, stmt, want_keys=False) as (_, rows):
        yield b"["
        first = True
        for batch in _batches(rows):
            encoded = orjson.dumps(batch)[1:-1]  # the objects without the list's brackets
            yield encoded if first else b"," + encoded
            first = False
        yield b"]\n"


def write_ndjson(db: Database, stmt: Select[Any]) -> Iterator[bytes]:
    """One record object per line."""
    with open_rows(db, stmt, want_keys=False) as (_, rows):
        for batch in _batches(rows):
            yield b"".join(orjson.dumps(obj) + b"\n" for obj in batch)


# ---------------------------------------------------------------------------------------- XLSX


class _Sheets:
    """Writes typed rows, starting a new worksheet when one is full."""

    def __init__(self, workbook: xlsxwriter.Workbook, columns: list[str]) -> None:
        self.workbook = workbook
        self.columns = columns
        self.bold = workbook.add_format({"bold": True})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.sheet: Any = None
        self.row = XLSX_MAX_ROWS
        self.count = 0

    def _new_sheet(self) -> None:
        self.count += 1
        self.sheet = self.workbook.add_worksheet("records" if self.count == 1 else f"records {self.count}")
        for col, name in enumerate(self.columns):
            self.sheet.write_string(0, col, name, self.bold)
            width = 20 if name.startswith("date") or name.endswith("At") else max(10, min(len(name) + 2, 40))
            self.sheet.set_column(col, col, width)
        self.sheet.freeze_panes(1, 0)
        self.row = 1

    def cell(self, col: int, value: Any) -> None:
        sheet, row = self.sheet, self.row
        if value is None:
            return
        if isinstance(value, str):
            sheet.write_string(row, col, escape_cell(value))
        elif isinstance(value, bool):
            sheet.write_boolean(row, col, value)
        elif isinstance(value, int | float):
            sheet.write_number(row, col, value)
        elif isinstance(value, datetime):
            sheet.write_datetime(row, col, value, self.date)
        else:
            sheet.write_string(row, col, orjson.dumps(value).decode())

    def next_row(self) -> None:
        self.row += 1
        if self.row >= XLSX_MAX_ROWS:
            self._new_sheet()

    def start(self) -> None:
        self._new_sheet()


def write_xlsx(db: Database, stmt: Select[Any]) -> Iterator[bytes]:
    """An XLSX workbook with typed cells: scores as numbers, dates as dates, text escaped."""
    fd, path = tempfile.mkstemp(prefix="npsd-export-", suffix=".xlsx")
    os.close(fd)
    try:
        with open_rows(db, stmt, want_keys=True) as (keys, rows):
            assert keys is not None
            whole_custom = keys == ["*"]
            workbook = xlsxwriter.Workbook(path, {
                "constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                "strings_to_urls": False, "tmpdir": os.path.dirname(path),
            })
            sheets = _Sheets(workbook, header(keys))
            sheets.start()
            base = len(FIELDS)
            for r in rows:
                for col, src in enumerate(FIELD_SOURCES):
                    sheets.cell(col, category(r[src]) if col == 3 else r[src])
                custom = r[CUSTOM]
                if whole_custom:
                    if custom:
                        sheets.cell(base, orjson.dumps(custom).decode())
                elif keys and isinstance(custom, dict):
                    for i, k in enumerate(keys):
                        sheets.cell(base + i, custom.get(k))
                sheets.next_row()
            workbook.close()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(path)
