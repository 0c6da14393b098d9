"""Streaming exports of NPS records as CSV, XLSX, JSON or NDJSON, in constant memory.

The request's session is closed before a streamed body is sent, so an export reads on a
connection of its own, opened inside the response generator, in one read transaction: the
``custom`` key set (one SQL query over the same rows) and the rows themselves come from the
same snapshot. Rows arrive in batches (``yield_per``; a server-side cursor on PostgreSQL), and
each batch is encoded and sent before the next is fetched, so memory does not grow with the
number of rows. XLSX cannot be written as a stream; it is built in a temporary file with
XlsxWriter's ``constant_memory`` mode and then streamed from disk.

What a download holds is its :class:`Layout`: the fields of the API object it mirrors (a
``GET /nps`` record without the legacy aliases, or a survey response), then one ``custom.<key>``
column per key of ``custom`` found in the exported rows, sorted, then the names of the record's
contact, company and survey (``enduserName``, ``companyName``, ``surveyName``; empty or null when
there is none). New columns go at the end, so existing columns keep their positions. JSON and
NDJSON keep ``custom`` as one nested object, followed by the names.

The names are those of the record's contact, company and survey within the record's own
organization (another organization's survey id in ``campaignId`` names nothing). Rows read as
values (JSON, NDJSON, XLSX, CSV on PostgreSQL or with custom keys SQLite cannot write as
columns) get them by LEFT JOINs on the primary keys (:func:`with_names`: one row per record, in
the record query's order; PostgreSQL memoizes the lookups). CSV lines that SQLite finishes itself, by one reader or by the workers, end with
names looked up by batch and remembered (``npsd.exports.parallel.NameTails``): there a join
costs two b-tree searches per name and row, which made the lines cost about 60% more. Either
way, the custom key scan, the row count and the keyset queries that cut blocks for the workers
read ``nps_record`` alone.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal

import orjson
import xlsxwriter
from fastapi import Query
from fastapi.responses import StreamingResponse
from sqlalchemy import (
    Column,
    ColumnElement,
    CompoundSelect,
    Connection,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    true,
    tuple_,
    type_coerce,
    union,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from npsd.analytics.nps import category, category_sql
from npsd.exports.parallel import (
    CSV_EXPORTS,
    FOLLOW_UP_FIELDS,
    PIN,
    Block,
    FollowUp,
    FollowUpLookup,
    Lookup,
    NameTails,
    Workers,
    follow_ups,
)
from npsd.kit.db import Database
from npsd.kit.errors import REQUIRED_HINTS, BadRequest
from npsd.kit.models import AnswerFollowUp, AnswerNote, AnswerTag, Company, Enduser, NpsRecord, Survey, User
from npsd.kit.timeutil import utcnow
from npsd.records.output import RecordRow

log = logging.getLogger("npsd.exports")
# How long an export waits for the write lock it holds a moment to fix its readers' snapshot;
# past it, the server writes the export alone (which needs no lock).
LOCK_TIMEOUT_MS = 10_000
FORMATS = ("csv", "xlsx", "json", "ndjson")
ExportFormat = Literal["csv", "xlsx", "json", "ndjson"]
FORMAT_QUERY = Query(description="File format: csv, xlsx, json or ndjson")
REQUIRED_HINTS["format"] = "one of " + ", ".join(FORMATS)
# What the OpenAPI document says a 200 of an export route carries, per format.
EXPORT_CONTENT: dict[str, dict[str, Any]] = {
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "format": "binary"}
    },
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    "application/x-ndjson": {"schema": {"type": "string"}},
}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
BATCH_ROWS = 2000
MAX_CUSTOM_COLUMNS = 1000  # beyond this, ``custom`` is exported as one JSON column
XLSX_MAX_ROWS = 1_048_576  # per sheet, header included
CHUNK_BYTES = 64 * 1024
EXPORT_SQLITE_CACHE_KIB = -2048  # negative: KiB, as PRAGMA cache_size reads it
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_START = frozenset(FORMULA_PREFIXES)
FORMULA_GLOB = "[=+@\t\r-]*"  # text starting with one of FORMULA_PREFIXES ('-' last: not a range)
CATEGORIES = tuple(category(score) for score in range(11))
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
T = NpsRecord.__table__

Row = Sequence[Any]
# positions in a record row, taken by name from the one row type (npsd.records.output.RecordRow)
_AT = {name: index for index, name in enumerate(RecordRow._fields)}
ID, EMAIL, SCORE, COMMENT = _AT["id"], _AT["email"], _AT["score"], _AT["comment"]
EUID, CID, CAMPAIGN = _AT["enduser_id"], _AT["company_id"], _AT["campaign_id"]
SOURCE, SOURCE_ID, CUSTOM, VERSION = _AT["source"], _AT["source_id"], _AT["custom"], _AT["version"]
SENT, REMINDED, ANSWERED = _AT["date_sent"], _AT["date_reminder_sent"], _AT["date_answered"]
CREATED, UPDATED = _AT["created_at"], _AT["updated_at"]
DATE_COLUMNS = frozenset({SENT, REMINDED, ANSWERED, CREATED, UPDATED})
# the names beside the ids, read by with_names(): positions after the record's columns
ENDUSER_NAME, COMPANY_NAME, SURVEY_NAME = range(len(RecordRow._fields), len(RecordRow._fields) + 3)
CATEGORIES_UPPER = tuple(c.upper() for c in CATEGORIES)  # the survey responses' ``category``

# What an export can show of a record, one "source" each; a Layout names the fields of one kind of
# download and the source behind each. Every writer turns a row into these values, in this order
# (each in its format's form), and a layout picks its fields from them by position.
SOURCES = (
    "id",
    "email",
    "score",
    "score_type",  # promoter, passive, detractor
    "category",  # PROMOTER, PASSIVE, DETRACTOR
    "comment",
    "enduser_id",
    "company_id",
    "campaign_id",
    "source",
    "source_id",
    "date_sent",
    "date_reminder_sent",
    "date_answered",
    "created_at",
    "updated_at",
    "enduser_name",
    "company_name",
    "survey_name",
    "custom",  # JSON and NDJSON only: CSV and XLSX spread it over custom.<key> columns
)
_SLOT = {name: index for index, name in enumerate(SOURCES)}


@dataclass(frozen=True)
class Layout:
    """The fields of one kind of download, each with the source it shows.

    A download holds ``fields``, then ``custom`` (one ``custom.<key>`` column per key in CSV and
    XLSX, one nested object in JSON and NDJSON), then ``names``. Columns only ever go at the end
    of ``names``, so an existing column keeps its position for clients that read by position.
    """

    fields: tuple[tuple[str, str], ...]  # (field, source) before custom
    names: tuple[tuple[str, str], ...]  # (field, source) after custom, before the follow-up

    def __post_init__(self) -> None:
        for _, src in (*self.fields, *self.names):
            if src not in _SLOT or src == "custom":
                raise ValueError(f"no export source {src!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def name_fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.names)

    @property
    def json_keys(self) -> tuple[str, ...]:
        """The keys of a JSON or NDJSON object, in order."""
        return (*self.field_names, "custom", *self.name_fields, *FOLLOW_UP_FIELDS)

    def header(self, keys: list[str]) -> list[str]:
        """The CSV and XLSX header, given the custom keys (``["*"]``: one JSON column)."""
        custom = ("custom" if k == "*" else f"custom.{k}" for k in keys)
        return [*self.field_names, *custom, *self.name_fields, *FOLLOW_UP_FIELDS]

    def slots(self, part: tuple[tuple[str, str], ...]) -> tuple[int, ...]:
        return tuple(_SLOT[src] for _, src in part)


def _picker(slots: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function taking the values at ``slots``, as a tuple (``itemgetter`` unpacks a single one)."""
    if len(slots) == 1:
        only = slots[0]
        return lambda values: (values[only],)
    return itemgetter(*slots)


# The fields of a GET /nps record (without the legacy aliases), then the names beside its ids.
RECORDS = Layout(
    fields=(
        ("_id", "id"),
        ("email", "email"),
        ("score", "score"),
        ("scoreType", "score_type"),
        ("comment", "comment"),
        ("euId", "enduser_id"),
        ("cId", "company_id"),
        ("campaignId", "campaign_id"),
        ("source", "source"),
        ("sourceId", "source_id"),
        ("dateSent", "date_sent"),
        ("dateReminderSent", "date_reminder_sent"),
        ("dateAnswered", "date_answered"),
        ("createdAt", "created_at"),
        ("updatedAt", "updated_at"),
    ),
    names=(("enduserName", "enduser_name"), ("companyName", "company_name"), ("surveyName", "survey_name")),
)

# The names beside the ids: the record's contact, company and survey, looked up by primary key in
# the record's own organization (another organization's survey id in ``campaignId`` names nothing).
# Aliased, so a filter that joins one of these tables itself cannot collide with them.
_ENDUSER = Enduser.__table__.alias("export_enduser")
_COMPANY = Company.__table__.alias("export_company")
_SURVEY = Survey.__table__.alias("export_survey")


def with_names(stmt: Select[Any]) -> Select[Any]:
    """``stmt`` (a select of record ``COLUMNS``) with three more columns: the names of each
    record's contact, company and survey (NULL when there is none). LEFT JOINs on primary keys:
    one row per record, in the record query's order."""
    return (
        stmt.outerjoin(_ENDUSER, and_(_ENDUSER.c.id == T.c.enduser_id, _ENDUSER.c.org_id == T.c.org_id))
        .outerjoin(_COMPANY, and_(_COMPANY.c.id == T.c.company_id, _COMPANY.c.org_id == T.c.org_id))
        .outerjoin(_SURVEY, and_(_SURVEY.c.id == T.c.campaign_id, _SURVEY.c.org_id == T.c.org_id))
        .add_columns(
            _ENDUSER.c.name.label("enduser_name"),
            _COMPANY.c.name.label("company_name"),
            _SURVEY.c.name.label("survey_name"),
        )
    )


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


def stream_records(
    db: Database, stmt: Select[Any], fmt: str, filename_stem: str, layout: Layout = RECORDS
) -> StreamingResponse:
    """Stream the rows of ``stmt`` (a select of ``npsd.records.output.COLUMNS``, already scoped to
    one organization and ordered) as a download named ``{filename_stem}-YYYY-MM-DD.{ext}``, with
    the fields of ``layout``.

    An unknown ``fmt`` is a 400 listing the accepted formats. The rows are read on a connection of
    the export's own, in batches, while the response is sent.
    """
    fmt = check_format(fmt)
    stem = _UNSAFE_FILENAME.sub("-", filename_stem).strip("-") or "nps"
    filename = f"{stem}-{utcnow().date().isoformat()}.{fmt}"
    writers: dict[str, Callable[[Database, Select[Any], Layout], Iterator[bytes]]] = {
        "csv": write_csv,
        "xlsx": write_xlsx,
        "json": write_json,
        "ndjson": write_ndjson,
    }
    return StreamingResponse(
        writers[fmt](db, stmt, layout),
        media_type=MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f"attachment; filename={filename}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Source:
    """What a writer reads: the custom keys (or None) and batches of rows in which the dates are
    ISO 8601 text (or ``datetime`` for XLSX) and ``custom`` is its stored JSON text; or, when
    ``cells``, rows that are already the finished CSV cells."""

    keys: list[str] | None
    batches: Iterator[Sequence[Row]]
    cells: bool = False
    tails: NameTails | None = None  # with cells: what ends each line (its names, its follow-up)
    follow_up: Callable[[Sequence[Row]], dict[str, FollowUp]] | None = None  # without cells

    def follow_ups(self, batch: Sequence[Row]) -> dict[str, FollowUp]:
        """The follow-up of the batch's answers that have one (one query), by record id."""
        return {} if self.follow_up is None else self.follow_up(batch)


def iso_text(column: Any, dialect: str) -> Any:
    """SQL that prints a stored naive-UTC time as ``2024-01-02T10:30:00.123Z`` (what ``timeutil.iso``
    prints), so a million rows need no ``datetime`` round trip in Python."""
    if dialect == "postgresql":
        return func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's form, always six digits): cutting
    # it up costs a fraction of strftime, and truncates to milliseconds exactly as iso() does.
    text_ = type_coerce(column, String)
    return func.replace(func.substr(text_, 1, 23), literal(" ", String), literal("T", String)) + literal(
        "Z", String
    )


def _check_columns(stmt: Select[Any]) -> None:
    if len(stmt.selected_columns) != len(RecordRow._fields):
        raise ValueError("stream_records needs a select of npsd.records.output.COLUMNS")


def raw_columns(stmt: Select[Any], dialect: str, text_dates: bool) -> Select[Any]:
    """``stmt`` with the names (:func:`with_names`), selecting ``custom`` as its stored JSON text
    and, with ``text_dates``, the dates as ISO 8601 text: parsing a million JSON objects with the
    stdlib, or decoding a million dates only to print them again, would cost more than reading
    the rows."""
    _check_columns(stmt)
    stmt = with_names(stmt)
    columns = list(stmt.selected_columns)
    if text_dates:
        for index in DATE_COLUMNS:
            columns[index] = iso_text(columns[index], dialect)
    columns[CUSTOM] = cast(T.c.custom, Text) if dialect == "postgresql" else type_coerce(T.c.custom, String)
    return stmt.with_only_columns(*columns)


@contextmanager
def open_rows(
    db: Database,
    stmt: Select[Any],
    want_keys: bool,
    text_dates: bool = True,
    csv_layout: Layout | None = None,
) -> Iterator[Source]:
    """Open the export's own read transaction and yield what the writers read: rows of record
    ``COLUMNS`` and the names (:func:`with_names`), or on SQLite with ``csv_layout`` the CSV
    lines of that layout up to the names, which ``Source.tails`` ends, when SQLite can write
    them."""
    sqlite = db.is_sqlite
    with db.engine.connect() as conn:
        if not sqlite:
            # one snapshot for the key query and the rows
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            previous_cache = None
            if sqlite:
                # a one-pass scan gains nothing from a large page cache: keep this connection's small
                previous_cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or 0)
                conn.exec_driver_sql(f"PRAGMA cache_size={EXPORT_SQLITE_CACHE_KIB}")
            try:
                keys = custom_keys(conn, stmt) if want_keys else None
                followed = followed_answers(conn, stmt)
                cells = csv_layout is not None and sqlite and sql_cells_possible(keys or [])
                query = (
                    csv_lines_sql(csv_layout, stmt, keys or [])
                    if csv_layout is not None and cells
                    else raw_columns(stmt, conn.dialect.name, text_dates)
                )
                tails = None
                if cells:
                    # finished cells need no result processing: read the driver's tuples directly
                    # (no yield_per here: its buffering would take rows off the cursor first)
                    result = conn.execute(query)
                    batches = _fetch(result.cursor)
                    tails = _name_tails(conn, csv_layout, followed)
                else:
                    result = conn.execution_options(yield_per=BATCH_ROWS).execute(query)
                    batches = result.partitions()
                lookup = (
                    (lambda batch: batch_follow_ups(conn, batch, followed))
                    if followed and not cells
                    else None
                )
                try:
                    yield Source(keys, batches, cells, tails, lookup)
                finally:
                    result.close()
            finally:
                if previous_cache is not None:
                    conn.exec_driver_sql(f"PRAGMA cache_size={previous_cache}")


def _name_tails(conn: Connection, layout: Layout | None, followed: Followed) -> NameTails:
    """The line ends of ``layout``'s names (and, when ``followed``, of the answers' follow-up),
    looked up on ``conn``'s own driver connection (in its transaction, so in the snapshot its
    rows come from)."""
    if layout is None:
        raise ValueError("CSV lines need their layout")
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the export's connection is closed")
    return NameTails(
        lambda sql, params: driver.execute(sql, params).fetchall(),
        name_lookups(layout, conn.dialect),
        follow_up_lookup(conn.dialect, followed) if followed else None,
    )


# ------------------------------------------------------------------------------------- follow-up
# The follow-up of each answer (npsd.followup: tags, status, assignee, notes) ends every row. Most
# answers have none. An export first reads which answers of the organization have some (one
# query over three small tables, by their organization index); a batch then costs a query only
# when it holds one of them, for those answers alone, so an export of a million answers of which
# a few thousand were followed up pays a set look-up a row. An organization that followed up more
# than MAX_FOLLOWED answers is read batch by batch, every record id of the batch (memory stays
# bounded). Record ids are unique across organizations and come from the export's own,
# organization-scoped, query: what hangs off them is that organization's.

MAX_FOLLOWED = 200_000  # ids held in memory (~20 MB); beyond, each batch asks for all its ids


@dataclass(frozen=True)
class Followed:
    """Which answers of an export's organization have a follow-up: ``ids``, or None when there
    are too many to hold (ask for every answer). False when there are none at all."""

    ids: frozenset[str] | None

    def __bool__(self) -> bool:
        return self.ids is None or bool(self.ids)


NOTHING_FOLLOWED = Followed(frozenset())


def followed_answers(conn: Connection, stmt: Select[Any]) -> Followed:
    """Which answers of the organization of ``stmt``'s records were tagged, noted or followed up."""
    org_id = conn.execute(stmt.with_only_columns(T.c.org_id).order_by(None).limit(1)).scalar()
    if org_id is None:
        return NOTHING_FOLLOWED
    ids = union(
        select(AnswerTag.record_id).where(AnswerTag.org_id == org_id),
        select(AnswerNote.record_id).where(AnswerNote.org_id == org_id),
        select(AnswerFollowUp.record_id).where(AnswerFollowUp.org_id == org_id),
    ).subquery()
    found = conn.execute(select(ids.c.record_id).limit(MAX_FOLLOWED + 1)).scalars().all()
    return Followed(None if len(found) > MAX_FOLLOWED else frozenset(found))


def follow_up_query(record_ids: Any) -> CompoundSelect[Any]:
    """Rows ``(record id, kind, text, author, time)`` of the answers ``record_ids`` (an IN
    operand) as :func:`npsd.exports.parallel.follow_ups` reads them: ``t`` a tag, ``n`` a note,
    ``f`` the status with the assignee's address. One statement for a batch."""
    tags = select(
        AnswerTag.record_id,
        literal("t", String).label("kind"),
        AnswerTag.tag.label("text"),
        cast(literal(None), String).label("author"),
        AnswerTag.created_at.label("at"),
    ).where(AnswerTag.record_id.in_(record_ids))
    notes = select(
        AnswerNote.record_id,
        literal("n", String),
        AnswerNote.text,
        AnswerNote.author_email,
        AnswerNote.created_at,
    ).where(AnswerNote.record_id.in_(record_ids))
    status = (
        select(
            AnswerFollowUp.record_id,
            literal("f", String),
            AnswerFollowUp.status,
            User.email,
            AnswerFollowUp.updated_at,
        )
        .outerjoin(User, User.id == AnswerFollowUp.assignee_user_id)
        .where(AnswerFollowUp.record_id.in_(record_ids))
    )
    return tags.union_all(notes, status)


_BATCH_FOLLOW_UP = follow_up_query(bindparam("ids", expanding=True))


def batch_follow_ups(conn: Connection, batch: Sequence[Row], followed: Followed) -> dict[str, FollowUp]:
    """The follow-up of a batch of record rows, by record id: one query, when the batch holds a
    followed answer."""
    only = followed.ids
    ids = [r[ID] for r in batch] if only is None else [r[ID] for r in batch if r[ID] in only]
    if not ids:
        return {}
    return follow_ups(conn.execute(_BATCH_FOLLOW_UP, {"ids": ids}).all())


def follow_up_lookup(dialect: Any, followed: Followed) -> FollowUpLookup:
    """How :class:`NameTails` reads a batch's follow-up on SQLite: the query by a JSON array of
    record ids, and which ids to ask for (None: all)."""
    ids = select(func.json_each(bindparam("ids", "")).table_valued("value").c.value)
    c = follow_up_query(ids).compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = list(c.positiontup or ())
    positions = [i for i, n in enumerate(names) if n == "ids"]
    return c.string, [_sqlite_param(c.params[name]) for name in names], positions, followed.ids


def _fetch(cursor: Any) -> Iterator[Sequence[Row]]:
    while batch := cursor.fetchmany(BATCH_ROWS):
        yield batch


def custom_keys(conn: Connection, stmt: Select[Any]) -> list[str]:
    """The sorted top-level keys of ``custom`` over the rows of ``stmt``, found in SQL.

    More than ``MAX_CUSTOM_COLUMNS`` keys yields ``["*"]``: one JSON column instead of a
    column per key, so a spreadsheet never gets an unbounded number of columns.
    """
    customs = stmt.with_only_columns(T.c.custom).order_by(None).where(T.c.custom.is_not(None))
    if conn.dialect.name != "postgresql":
        # records without custom hold the JSON text 'null': skip them before any JSON parsing
        customs = customs.where(type_coerce(T.c.custom, String) != "null")
    sub = customs.subquery()
    if conn.dialect.name == "postgresql":
        key = func.jsonb_object_keys(sub.c.custom).label("key")
        query = (
            select(key)
            .where(func.jsonb_typeof(sub.c.custom) == "object")
            .distinct()
            .limit(MAX_CUSTOM_COLUMNS + 1)
        )
    else:
        # only objects have keys; stored JSON text starts with its first character, so the test
        # needs no parse (json_type would parse every record once more than json_each does)
        each = func.json_each(sub.c.custom).table_valued("key", name="custom_key")
        query = (
            select(each.c.key)
            .select_from(sub)
            .join(each, true())
            .where(func.substr(sub.c.custom, 1, 1) == "{")
            .distinct()
            .limit(MAX_CUSTOM_COLUMNS + 1)
        )
    keys = sorted(k for k in conn.execute(query).scalars() if k is not None)
    return ["*"] if len(keys) > MAX_CUSTOM_COLUMNS else keys


def _custom(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


# ---------------------------------------------------------------------------------------- CSV


def _csv_custom(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return "'" + value if value[:1] in FORMULA_START else value
    if kind is int or kind is float:
        return value
    if value is None:
        return None
    if kind is bool:
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def write_csv(db: Database, stmt: Select[Any], layout: Layout = RECORDS) -> Iterator[bytes]:
    """UTF-8 CSV with a header row (``layout.header``); text cells that could run as formulas are
    escaped.

    On SQLite each row arrives as its finished CSV line, quoting, formula escaping and
    ``custom.<key>`` columns included (:func:`csv_lines_sql`), so a batch becomes CSV with one
    join; other databases, and key sets SQLite's JSON paths cannot name, go through the ``csv``
    module (:func:`_csv_lines`).

    Large SQLite exports are written by worker processes when :func:`_parallel_plan` allows it.
    Whatever stops the workers before the first byte is sent falls back to one reader (the same
    bytes), logged as a warning with its reason, since only the logs and ``CSV_EXPORTS`` show
    that the workers are not doing their job. Every export is counted once in ``CSV_EXPORTS``.
    """
    plan = _parallel_plan(db, stmt, layout)
    if isinstance(plan, str):
        CSV_EXPORTS.single_reader_export(plan)
    else:
        parallel = _write_csv_parallel(db, plan)
        try:
            first = next(parallel)  # the workers started and share the snapshot
        except Fallback as exc:
            _fall_back(plan, exc.reason, exc)
        except (OSError, RuntimeError, EOFError, sqlite3.Error, SQLAlchemyError) as exc:
            _fall_back(plan, "error", exc, exc_info=True)  # unforeseen: keep the traceback
        else:
            yield first
            yield from parallel
            return
    with open_rows(db, stmt, want_keys=True, csv_layout=layout) as src:
        keys = src.keys or []
        yield _header_bytes(layout, keys)
        if src.tails is not None:
            for batch in src.batches:
                yield src.tails.lines(batch).encode()
        else:
            yield from _python_csv(layout, src.batches, keys, src.follow_up)


def _header_bytes(layout: Layout, keys: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(layout.header(keys))
    return buffer.getvalue().encode()


def _python_csv(
    layout: Layout,
    batches: Iterator[Sequence[Row]],
    keys: list[str],
    follow_up: Callable[[Sequence[Row]], dict[str, FollowUp]] | None = None,
) -> Iterator[bytes]:
    """CSV of rows with names (dates as text, ``custom`` as its JSON text) through the ``csv``
    module, each ended by its answer's follow-up (read by ``follow_up``, a query a batch)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_csv_lines(layout, batch, keys, follow_up(batch) if follow_up else {}))
        yield buffer.getvalue().encode()


@dataclass(frozen=True)
class Keyset:
    """How an export ordered by ``(column, id)``, both ascending or both descending, is cut into
    blocks: row-value comparisons with the key of a block's edge, bound as ``{name}_k`` and
    ``{name}_i``. ``column`` must be NOT NULL: a comparison with NULL is never true, so rows with
    a NULL key would belong to no block."""

    column: Column[Any]
    descending: bool

    def order(self) -> tuple[Any, Any]:
        """The ORDER BY terms. NULLS FIRST/LAST (the survey responses' order) is left out: on a NOT
        NULL column it changes nothing, and ASC NULLS LAST is not an order SQLite reads off an
        index (it sorts instead)."""
        if self.descending:
            return self.column.desc(), T.c.id.desc()
        return self.column.asc(), T.c.id.asc()

    def _edge(self, name: str) -> Any:
        return tuple_(bindparam(f"{name}_k", ""), bindparam(f"{name}_i", ""))

    def beyond(self, name: str) -> Any:
        """Rows after the key ``name`` in the export's order."""
        key = tuple_(self.column, T.c.id)
        return key < self._edge(name) if self.descending else key > self._edge(name)

    def through(self, name: str) -> Any:
        """Rows up to the key ``name``, included."""
        key = tuple_(self.column, T.c.id)
        return key >= self._edge(name) if self.descending else key <= self._edge(name)

    def block_ends(self, stmt: Select[Any], block: int) -> tuple[Select[Any], Select[Any]]:
        """The key that ends the first block, and the one that ends the block after ``hi``: a
        block's worth of index entries on. Keys are read as stored (a time as its text, never a
        datetime that the driver would print another way) and handed back unchanged."""
        first_end = (
            stmt.with_only_columns(type_coerce(self.column, String), T.c.id).offset(block - 1).limit(1)
        )
        return first_end, first_end.where(self.beyond("hi"))


@dataclass(frozen=True)
class ParallelPlan:
    """A CSV export for the workers: ``stmt`` ordered as ``keyset`` cuts its blocks, written
    with the fields of ``layout``."""

    path: str
    stmt: Select[Any]
    keyset: Keyset
    workers: int
    rows: int
    layout: Layout


class Fallback(Exception):
    """The workers cannot take an export that was planned for them: one reader writes it.
    ``reason`` is the word ``CSV_EXPORTS.fallbacks`` counts it under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


NULLS_PLACEMENT = (operators.nulls_first_op, operators.nulls_last_op)


def _sort_term(term: Any) -> tuple[Any, bool | None]:
    """(column, descending) of one ORDER BY term, looking through NULLS FIRST/LAST; descending
    is None when the term is not ``<column> ASC|DESC``."""
    if isinstance(term, UnaryExpression) and term.modifier in NULLS_PLACEMENT:
        term = term.element
    if isinstance(term, UnaryExpression) and term.modifier in (operators.asc_op, operators.desc_op):
        return term.element, term.modifier is operators.desc_op
    return term, None


def _parallel_plan(db: Database, stmt: Select[Any], layout: Layout) -> ParallelPlan | str:
    """How worker processes (npsd.exports.parallel) would write a CSV export of ``stmt``, or the
    reason one reader writes it: ``database`` (not a SQLite file), ``disabled``
    (``export_workers`` below 2), ``sqlite_version`` (before 3.38 SQLite cannot build the
    lines), ``order`` (not one record column then ``id``, the same way), ``nullable_sort`` (the
    sort column can be NULL: the row-value comparisons that cut blocks never match a NULL key,
    so those rows would be lost), ``unindexed_sort`` (no index gives the order, see
    :func:`_sorts_every_block`), ``few_rows`` (fewer than ``export_parallel_rows``)."""
    settings = db.config
    path = db.engine.url.database
    if not db.is_sqlite or not path or path == ":memory:":
        return "database"
    if settings.export_workers < 2:
        return "disabled"
    if sqlite3.sqlite_version_info < (3, 38):
        return "sqlite_version"
    order = list(stmt._order_by_clauses)
    if len(order) != 2:
        return "order"
    (column, descending), (tie, tie_descending) = (_sort_term(o) for o in order)
    if (
        descending is None
        or tie is not T.c.id
        or tie_descending != descending
        or not isinstance(column, Column)
        or column.table is not T
    ):
        return "order"
    if column.nullable:
        return "nullable_sort"
    keyset = Keyset(column, descending)
    stmt = stmt.order_by(None).order_by(*keyset.order())
    with db.engine.connect() as conn:
        if _sorts_every_block(conn, stmt, keyset, _block_rows(settings.export_parallel_rows)):
            return "unindexed_sort"
        rows = conn.execute(stmt.with_only_columns(func.count()).order_by(None)).scalar_one()
    if rows < settings.export_parallel_rows:
        return "few_rows"
    return ParallelPlan(path, stmt, keyset, settings.export_workers, rows, layout)


def _sorts_every_block(conn: Connection, stmt: Select[Any], keyset: Keyset, block: int) -> bool:
    """Whether SQLite would sort every matching row once per block. Blocks are cheap only when an
    index gives the order: a block is then one range of it, and a block's end a block's worth of
    entries further. Without one (``score``, ``email``... have no index), each block query and
    each search for a block's end reads and sorts the whole export again: measured at 200,000
    survey responses by score, 25 s with two workers against 3 s for one reader, which sorts
    once. SQLite's own query plan says which case this is."""
    queries = (
        keyset.block_ends(stmt, block)[1],
        stmt.with_only_columns(T.c.id).where(keyset.beyond("hi"), keyset.through("lo")),
    )
    for query in queries:
        c = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = tuple(_sqlite_param(c.params[name]) for name in c.positiontup or ())
        steps = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {c.string}", params).all()
        if any(step[-1] == "USE TEMP B-TREE FOR ORDER BY" for step in steps):
            return True
    return False


def _fall_back(plan: ParallelPlan, reason: str, detail: object, exc_info: bool = False) -> None:
    """Count and log an export that one reader writes although the plan was workers."""
    CSV_EXPORTS.fallback(reason)
    log.warning(
        "CSV export of %d rows written by one reader instead of %d workers (%s): %s",
        plan.rows,
        plan.workers,
        reason,
        detail,
        exc_info=exc_info,
    )


# Exports written by workers at once, in this process: beyond, exports are written by one reader
# each, so many large downloads at a time never start processes without bound.
PARALLEL_SLOTS = 2
PARALLEL_EXPORTS = threading.BoundedSemaphore(PARALLEL_SLOTS)


def _block_rows(settings_rows: int) -> int:
    """Rows per block: a tenth of the parallel threshold, at most 5,000 (about 1 MB of CSV)."""
    return max(1, min(5000, settings_rows // 10))


def _sqlite_param(value: Any) -> Any:
    """A bound value as SQLite stores it (what SQLAlchemy's bind processing would send)."""
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    return value


def _after(key: tuple[Any, Any], previous: tuple[Any, Any], descending: bool) -> bool:
    return key < previous if descending else key > previous


def _pin(workers: Workers, conn: Connection) -> None:
    """Give the workers and ``conn`` one snapshot, or raise :class:`Fallback` saying why not."""
    try:
        workers.pin(lambda: conn.exec_driver_sql(PIN).all())
    except sqlite3.OperationalError as exc:  # BEGIN IMMEDIATE waited LOCK_TIMEOUT_MS in vain
        raise Fallback("lock", f"the write lock that pins one snapshot was not free: {exc}") from exc
    except (OSError, EOFError, RuntimeError) as exc:  # a worker died or never said ready
        raise Fallback("start", f"the export workers did not answer: {exc!r}") from exc


def _write_csv_parallel(db: Database, plan: ParallelPlan) -> Iterator[bytes]:
    """CSV of ``plan.stmt`` written by ``plan.workers`` worker processes, block by block, in
    order. Raises :class:`Fallback` before its first byte when the workers cannot take it."""
    if not PARALLEL_EXPORTS.acquire(blocking=False):
        raise Fallback("busy", f"{PARALLEL_SLOTS} exports are using workers already")
    stmt, keyset, layout = plan.stmt, plan.keyset, plan.layout
    block = _block_rows(db.config.export_parallel_rows)
    try:
        workers = Workers(plan.path, plan.workers, LOCK_TIMEOUT_MS)
    except OSError as exc:
        PARALLEL_EXPORTS.release()
        raise Fallback("start", f"the export workers could not start: {exc}") from exc
    except BaseException:
        PARALLEL_EXPORTS.release()
        raise
    try:
        with db.engine.connect() as conn, conn.begin():
            _pin(workers, conn)
            keys = custom_keys(conn, stmt)
            followed = followed_answers(conn, stmt)
            if not sql_cells_possible(keys):  # e.g. one JSON column: the Python writer does it alone
                workers.close()
                _fall_back(plan, "custom_columns", f"{len(keys)} custom keys SQLite cannot write as columns")
                yield _header_bytes(layout, keys)
                rows = _fetch(conn.execute(raw_columns(stmt, "sqlite", True)).cursor)
                lookup = (lambda batch: batch_follow_ups(conn, batch, followed)) if followed else None
                yield from _python_csv(layout, rows, keys, lookup)
                return
            lines = csv_lines_sql(layout, stmt, keys)
            queries = {
                "only": lines,
                "first": lines.where(keyset.through("lo")),
                "middle": lines.where(keyset.beyond("hi"), keyset.through("lo")),
                "last": lines.where(keyset.beyond("hi")),
            }
            compiled = {
                kind: q.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
                for kind, q in queries.items()
            }
            first_end, next_end = keyset.block_ends(stmt, block)

            def blocks() -> Iterator[Block]:
                previous: tuple[Any, Any] | None = None
                while True:
                    if previous is None:
                        end = conn.execute(first_end).first()
                    else:
                        end = conn.execute(next_end, {"hi_k": previous[0], "hi_i": previous[1]}).first()
                    kind = {
                        (False, False): "only",
                        (False, True): "first",
                        (True, True): "middle",
                        (True, False): "last",
                    }[(previous is not None, end is not None)]
                    values: dict[str, Any] = {}
                    if previous is not None:
                        values.update(hi_k=previous[0], hi_i=previous[1])
                    if end is not None:
                        values.update(lo_k=end[0], lo_i=end[1])
                    c = compiled[kind]
                    merged = {**c.params, **values}
                    yield kind, [_sqlite_param(merged[name]) for name in c.positiontup or ()]
                    if end is None:
                        return
                    if previous is not None and not _after((end[0], end[1]), previous, keyset.descending):
                        raise RuntimeError(f"export blocks stopped moving at {previous!r}")  # never loop
                    previous = (end[0], end[1])

            CSV_EXPORTS.worker_export()
            yield _header_bytes(layout, keys)
            lookups = name_lookups(layout, conn.dialect)
            follow_up = follow_up_lookup(conn.dialect, followed) if followed else None
            yield from workers.run(
                {kind: c.string for kind, c in compiled.items()}, lookups, blocks(), follow_up
            )
    finally:
        workers.close()
        PARALLEL_EXPORTS.release()


def _csv_lines(
    layout: Layout, batch: Sequence[Row], keys: list[str], found: dict[str, FollowUp]
) -> list[list[Any]]:
    """CSV cells of rows with names, in Python. The hot loop is written out by hand: at a million
    rows every function call per cell shows. Each row becomes every source's cell (``SOURCES``
    order), and the layout takes its fields from them by position."""
    unsafe = FORMULA_START
    categories = CATEGORIES
    upper = CATEGORIES_UPPER
    fields = _picker(layout.slots(layout.fields))
    names = _picker(layout.slots(layout.names))
    whole_custom = keys == ["*"]
    blanks = [None] * len(keys)
    no_follow_up = (None,) * len(FOLLOW_UP_FIELDS)
    lines = []
    for (
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
        _,
        enduser_name,
        company_name,
        survey_name,
    ) in batch:
        cells = (
            rid,
            "'" + email if email[:1] in unsafe else email,
            score,
            categories[score],
            upper[score],
            "" if comment is None else ("'" + comment if comment[:1] in unsafe else comment),
            euid,
            cid,
            None if campaign is None else ("'" + campaign if campaign[:1] in unsafe else campaign),
            None if source is None else ("'" + source if source[:1] in unsafe else source),
            None if source_id is None else ("'" + source_id if source_id[:1] in unsafe else source_id),
            sent,
            reminded,
            answered,
            created,
            updated,
            None
            if enduser_name is None
            else ("'" + enduser_name if enduser_name[:1] in unsafe else enduser_name),
            None
            if company_name is None
            else ("'" + company_name if company_name[:1] in unsafe else company_name),
            None
            if survey_name is None
            else ("'" + survey_name if survey_name[:1] in unsafe else survey_name),
            None,  # custom: its own columns, below
        )
        line = list(fields(cells))
        if whole_custom:
            line.append(custom if custom and custom != "null" else None)
        elif keys:
            values = orjson.loads(custom) if custom else None
            if isinstance(values, dict):
                line.extend([_csv_custom(values.get(k)) for k in keys])
            else:
                line.extend(blanks)
        line.extend(names(cells))
        f = found.get(rid) if found else None
        if f is None:
            line.extend(no_follow_up)
        else:
            line.extend(None if v is None else ("'" + v if v[:1] in unsafe else v) for v in f.texts())
        lines.append(line)
    return lines


def _escaped(text_sql: Any) -> Any:
    """SQL for a text cell with the formula guard applied (``'`` before =, +, -, @, TAB, CR)."""
    # one GLOB on the first character (the trailing * matches the rest at once)
    return case(
        (text_sql.op("GLOB")(literal(FORMULA_GLOB, String)), literal("'", String) + text_sql), else_=text_sql
    )


# One GLOB scan tells whether a cell needs quotes: it holds a quote, a comma, LF or CR.
NEEDS_QUOTES = '*[",\n\r]*'
EMPTY = literal("", String)


def _quoted(text_sql: Any, value: Any) -> Any:
    """SQL: ``value`` as a finished CSV cell (RFC 4180 quotes when ``text_sql`` needs them; NULL is
    the empty cell), as the ``csv`` module writes it."""
    quote = literal('"', String)
    return case(
        (
            text_sql.op("GLOB")(literal(NEEDS_QUOTES, String)),
            quote + func.replace(value, quote, literal('""', String)) + quote,
        ),
        else_=func.coalesce(value, EMPTY),
    )


def _text_cell(text_sql: Any) -> Any:
    """SQL: a text column as a finished CSV cell, formula guard included."""
    return _quoted(text_sql, _escaped(text_sql))


def _sqlite_custom_cell(custom: Any, key: str) -> Any:
    """SQL: one ``custom`` key as a finished CSV cell. Numbers keep their stored JSON text (every
    digit, no formula guard: ``-5`` is a number), booleans are ``true``/``false``, text is
    guarded, objects and arrays are compact JSON, and null or a missing key is empty."""
    path = literal(f'$."{key}"', String)
    value = type_coerce(func.json_extract(custom, path), String)
    as_json = type_coerce(custom.op("->")(path), String)  # the value's own JSON text
    nested = _quoted(as_json, as_json)
    return case(  # CASE json_type(...) WHEN ...: the type is looked up once
        {
            "integer": as_json,
            "real": as_json,
            "true": literal("true", String),
            "false": literal("false", String),
            "text": _text_cell(value),
            "object": nested,
            "array": nested,
        },
        value=func.json_type(custom, path),
        else_=EMPTY,
    )


MAX_SQL_CUSTOM_KEYS = 250  # each key's cell binds ~50 values; SQLite allows 32,766 per statement


def sql_cells_possible(keys: list[str]) -> bool:
    """Whether SQLite can write the CSV lines itself: JSON paths must name every key, the key
    count keep the statement's bound values within SQLite's limit, and ``->`` exist (3.38)."""
    return (
        keys != ["*"]
        and len(keys) <= MAX_SQL_CUSTOM_KEYS
        and sqlite3.sqlite_version_info >= (3, 38)
        and not any('"' in k or "\\" in k for k in keys)
    )


PRINTF_ARGS = 100  # cells per printf() call: SQLite functions take at most 127 arguments


def csv_lines_sql(layout: Layout, stmt: Select[Any], keys: list[str]) -> Select[Any]:
    """``stmt`` (record ``COLUMNS``) rewritten to select each record's CSV line in ``layout`` up
    to its names, finished (SQLite SQL), then the id behind each name and the record's
    organization, and the record's id: ``NameTails`` ends the line (see npsd.exports.parallel). ``printf`` builds
    the line in one buffer, where handing 17 cells to Python, or concatenating them with
    ``||``, would cost a string each."""
    _check_columns(stmt)
    cells = csv_cells(layout, stmt, keys)
    parts = []
    for start in range(0, len(cells), PRINTF_ARGS):
        chunk = cells[start : start + PRINTF_ARGS]
        end = "" if start + PRINTF_ARGS >= len(cells) else ","
        parts.append(func.printf(literal(",".join(["%s"] * len(chunk)) + end, String), *chunk, type_=String))
    line: ColumnElement[str] = parts[0]
    for part in parts[1:]:
        line = line + part  # String + String: SQL ||
    return stmt.with_only_columns(line, *(_NAMED[src][1] for _, src in layout.names), T.c.org_id, T.c.id)


def _sql_cells(c: list[Any]) -> dict[str, Any]:
    """Each record source's finished CSV cell, as text (SQLite SQL), of a row of record ``COLUMNS``."""

    def text_(i: int) -> Any:
        return type_coerce(c[i], String)

    score = c[SCORE]
    dates = {
        "date_sent": SENT,
        "date_reminder_sent": REMINDED,
        "date_answered": ANSWERED,
        "created_at": CREATED,
        "updated_at": UPDATED,
    }
    return {
        "id": c[ID],
        "email": _text_cell(text_(EMAIL)),
        "score": cast(score, String),
        "score_type": category_sql(score),
        "category": func.upper(category_sql(score)),
        "comment": _text_cell(text_(COMMENT)),
        "enduser_id": func.coalesce(c[EUID], EMPTY),
        "company_id": func.coalesce(c[CID], EMPTY),
        "campaign_id": _text_cell(text_(CAMPAIGN)),
        "source": _text_cell(text_(SOURCE)),
        "source_id": _text_cell(text_(SOURCE_ID)),
        **{name: func.coalesce(iso_text(c[i], "sqlite"), EMPTY) for name, i in dates.items()},
    }


def csv_cells(layout: Layout, stmt: Select[Any], keys: list[str]) -> list[Any]:
    """The finished CSV cells of ``stmt``'s rows (record ``COLUMNS``) in ``layout`` up to its
    names, all text (SQLite SQL)."""
    c = list(stmt.selected_columns)
    by_source = _sql_cells(c)
    custom = type_coerce(c[CUSTOM], String)
    return [*(by_source[src] for _, src in layout.fields), *(_sqlite_custom_cell(custom, k) for k in keys)]


# each name source: the table that names it and the record column holding the id
_NAMED: dict[str, tuple[Any, Any]] = {
    "enduser_name": (_ENDUSER, T.c.enduser_id),
    "company_name": (_COMPANY, T.c.company_id),
    "survey_name": (_SURVEY, T.c.campaign_id),
}


def name_lookups(layout: Layout, dialect: Any) -> list[Lookup]:
    """How :class:`NameTails` finds the finished CSV cell of each name of ``layout`` (SQLite
    SQL): the rows of one organization among a JSON array of ids, formula guard and quoting
    included."""
    lookups: list[Lookup] = []
    for _, src in layout.names:
        table, _column = _NAMED[src]
        ids = func.json_each(bindparam("ids", "")).table_valued("value")
        query = select(table.c.id, _text_cell(type_coerce(table.c.name, String))).where(
            table.c.id.in_(select(ids.c.value)), table.c.org_id == bindparam("org", "")
        )
        c = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        names = list(c.positiontup or ())
        params = [_sqlite_param(c.params[name]) for name in names]
        lookups.append((c.string, params, names.index("ids"), names.index("org")))
    return lookups


# ---------------------------------------------------------------------------------------- JSON


def _objects(layout: Layout, batch: Sequence[Row], found: dict[str, FollowUp]) -> list[dict[str, Any]]:
    """Rows as exported in JSON: the layout's fields, ``custom`` nested (passed through as the
    stored JSON text, not parsed and re-encoded), the names, then the follow-up (``found``, by
    record id; tags and notes as lists). Each row becomes every source's value (``SOURCES``
    order) and the layout takes its fields from them by position."""
    objects = _plain_objects(layout, batch)
    for row, obj in zip(batch, objects, strict=True):
        f = found.get(row[ID]) if found else None
        if f is None:
            obj["tags"], obj["followUpStatus"], obj["assigneeEmail"], obj["notes"] = [], None, None, []
        else:
            obj["tags"], obj["followUpStatus"], obj["assigneeEmail"], obj["notes"] = f.json()
    return objects


def _plain_objects(layout: Layout, batch: Sequence[Row]) -> list[dict[str, Any]]:
    categories = CATEGORIES
    upper = CATEGORIES_UPPER
    fragment = orjson.Fragment
    keys = layout.json_keys[: -len(FOLLOW_UP_FIELDS)]
    pick = _picker(
        (*layout.slots(layout.fields), _SLOT["custom"], *layout.slots(layout.names)),
    )
    return [
        dict(
            zip(
                keys,
                pick(
                    (
                        rid,
                        email,
                        score,
                        categories[score],
                        upper[score],
                        comment,
                        euid,
                        cid,
                        campaign,
                        source,
                        source_id,
                        sent,
                        reminded,
                        answered,
                        created,
                        updated,
                        enduser_name,
                        company_name,
                        survey_name,
                        None if custom is None else fragment(custom),
                    )
                ),
                strict=True,
            )
        )
        for (  # a RecordRow's fields in its order and the names, unpacked: faster than by name
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
            _,
            enduser_name,
            company_name,
            survey_name,
        ) in batch
    ]


def write_json(db: Database, stmt: Select[Any], layout: Layout = RECORDS) -> Iterator[bytes]:
    """One JSON array of objects (``layout.json_keys``), sent batch by batch."""
    with open_rows(db, stmt, want_keys=False) as src:
        yield b"["
        first = True
        for batch in src.batches:
            encoded = orjson.dumps(_objects(layout, batch, src.follow_ups(batch)))[
                1:-1
            ]  # the objects without the list's brackets
            yield encoded if first else b"," + encoded
            first = False
        yield b"]\n"


def write_ndjson(db: Database, stmt: Select[Any], layout: Layout = RECORDS) -> Iterator[bytes]:
    """One object (``layout.json_keys``) per line."""
    with open_rows(db, stmt, want_keys=False) as src:
        for batch in src.batches:
            yield b"".join(
                orjson.dumps(obj) + b"\n" for obj in _objects(layout, batch, src.follow_ups(batch))
            )


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


def _xlsx_columns(part: tuple[tuple[str, str], ...], first: int) -> list[tuple[int, int, Any]]:
    """(column, row index, labels or None) of each field of ``part``, from column ``first`` on:
    the row value itself, or for the categories its label (``labels[score]``)."""
    return [(first + i, _ROW_OF[src], _LABELS.get(src)) for i, (_, src) in enumerate(part)]


# the row index behind each source (a row of record COLUMNS and the names), and the labels of
# the sources derived from the score
_ROW_OF = {
    "id": ID,
    "email": EMAIL,
    "score": SCORE,
    "score_type": SCORE,
    "category": SCORE,
    "comment": COMMENT,
    "enduser_id": EUID,
    "company_id": CID,
    "campaign_id": CAMPAIGN,
    "source": SOURCE,
    "source_id": SOURCE_ID,
    "date_sent": SENT,
    "date_reminder_sent": REMINDED,
    "date_answered": ANSWERED,
    "created_at": CREATED,
    "updated_at": UPDATED,
    "enduser_name": ENDUSER_NAME,
    "company_name": COMPANY_NAME,
    "survey_name": SURVEY_NAME,
}
_LABELS = {"score_type": CATEGORIES, "category": CATEGORIES_UPPER}


def write_xlsx(db: Database, stmt: Select[Any], layout: Layout = RECORDS) -> Iterator[bytes]:
    """An XLSX workbook with typed cells: scores as numbers, dates as dates, text escaped."""
    fd, path = tempfile.mkstemp(prefix="npsd-export-", suffix=".xlsx")
    os.close(fd)
    try:
        with open_rows(db, stmt, want_keys=True, text_dates=False) as src:
            keys = src.keys or []
            whole_custom = keys == ["*"]
            workbook = xlsxwriter.Workbook(
                path,
                {
                    "constant_memory": True,
                    "strings_to_numbers": False,
                    "strings_to_formulas": False,
                    "strings_to_urls": False,
                    "tmpdir": os.path.dirname(path),
                },
            )
            sheets = _Sheets(workbook, layout.header(keys))
            sheets.start()
            base = len(layout.fields)
            columns = [
                *_xlsx_columns(layout.fields, 0),
                *_xlsx_columns(layout.names, base + len(keys)),
            ]
            follow_at = base + len(keys) + len(layout.names)
            for batch in src.batches:
                found = src.follow_ups(batch)
                for r in batch:
                    fu = found.get(r[ID]) if found else None
                    if fu is not None:
                        for i, value in enumerate(fu.texts()):
                            sheets.cell(follow_at + i, value)
                    for col, index, labels in columns:
                        value = r[index]
                        sheets.cell(col, value if labels is None else labels[value])
                    custom = r[CUSTOM]
                    if whole_custom:
                        if custom and custom != "null":
                            sheets.cell(base, custom)
                    elif keys:
                        values = _custom(custom)
                        if isinstance(values, dict):
                            for i, k in enumerate(keys):
                                sheets.cell(base + i, values.get(k))
                    sheets.next_row()
            workbook.close()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(path)
