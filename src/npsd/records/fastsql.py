"""Set-based reads and writes of many rows for the bulk path, inside the session's transaction.

On a 5,000-row batch SQLAlchemy's per-row parameter processing (building each row's parameter
dict, formatting every datetime, encoding every JSON value) costs as much as the database's own
work. These helpers render one statement and convert each value once by column type.

SQLite gets a driver-level ``executemany`` (in-process, so a row costs no round trip), or, for
a table with triggers, one statement over ``json_each`` of the rows (``one_statement``): each
statement on such a table keeps a journal of every page it changes until it ends, so as an
``executemany`` every row paid for the eight b-tree pages it touched of ``nps_record``, and
FTS5, written to by its triggers, flushed its pending terms at every row's savepoint. One
statement journals each page once: a 5,000-record insert took ~100 ms instead of ~350.
PostgreSQL gets one statement per call whatever the row count: the rows travel as one array per
column and ``unnest`` turns them back into rows, so an update is a join rather than 5,000
single-row statements, each of which the planner might send through the wrong index when the
table's statistics are stale.

Values are stored exactly as SQLAlchemy stores them, so every other read and write sees no
difference: on SQLite naive datetimes as ``YYYY-MM-DD HH:MM:SS.ffffff`` and JSON as text (``None``
as JSON ``null``); on PostgreSQL native timestamps and ``jsonb``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    String,
    Table,
    Text,
    cast,
    type_coerce,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def decoded(
    session: Session, columns: Sequence[Any]
) -> tuple[list[Any], Callable[[Sequence[Sequence[Any]]], list[tuple[Any, ...]]]]:
    """What to select for ``columns``, and the function that turns the selected rows into tuples
    of the values SQLAlchemy would have returned for them.

    JSON is selected as text and decoded here with orjson, and on SQLite times too, each
    distinct one once with ``datetime.fromisoformat``, column by column. The drivers' and
    SQLAlchemy's per-value processors (a regular expression per time, the stdlib's JSON decoder)
    cost more than the query itself on 5,000 rows.
    """
    sqlite = session.get_bind().dialect.name == "sqlite"
    selected: list[Any] = []
    dates: list[int] = []
    documents: list[int] = []
    for index, column in enumerate(columns):
        if isinstance(column.type, JSON):
            documents.append(index)
            text = type_coerce(column, String) if sqlite else cast(column, Text)
            selected.append(text.label(column.name))
        elif sqlite and isinstance(column.type, DateTime):
            dates.append(index)
            selected.append(type_coerce(column, String).label(column.name))
        else:
            selected.append(column)
    parse_time, parse_json = datetime.fromisoformat, orjson.loads

    def decode(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        values: list[Any] = list(zip(*rows, strict=True))
        for index in dates:
            texts = values[index]
            parsed = {text: parse_time(text) for text in set(texts) if text is not None}
            values[index] = map(parsed.get, texts)  # None stays None
        for index in documents:
            # parsed one by one: a shared dict would let a change to one row's leak into another's
            values[index] = [None if text is None else parse_json(text) for text in values[index]]
        return list(zip(*values, strict=True))

    return selected, decode


def _sqlite_datetime(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(" ", "microseconds")


def _sqlite_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()  # SQLAlchemy's form: YYYY-MM-DD


def _sqlite_json(value: Any) -> str:
    return orjson.dumps(value).decode()  # None becomes JSON null, as SQLAlchemy stores it


def _converters(
    conn: Connection, table: Table, names: Sequence[str]
) -> list[tuple[int, Callable[[Any], Any]]]:
    sqlite = conn.dialect.name == "sqlite"
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(names):
        kind = table.c[name].type
        if isinstance(kind, DateTime) and sqlite:
            converters.append((index, _sqlite_datetime))
        elif isinstance(kind, Date) and sqlite:
            converters.append((index, _sqlite_date))
        elif isinstance(kind, JSON):
            converters.append((index, _sqlite_json if sqlite else Jsonb))
    return converters


def _columns(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    converters: list[tuple[int, Callable[[Any], Any]]],
) -> list[list[Any]]:
    """The values of ``names`` in ``rows``, one list per column, converted for the driver.

    Column by column, so the loops run in C (``map``): per row and per value in Python they cost
    as much as the database's own work. A time is formatted once per distinct value: in a batch
    most of them repeat (``createdAt`` and ``updatedAt`` are one moment for every row).
    """
    columns = [list(map(itemgetter(name), rows)) for name in names]
    for index, convert in converters:
        values = columns[index]
        if convert is _sqlite_datetime:
            formatted = {value: convert(value) for value in set(values)}
            columns[index] = list(map(formatted.__getitem__, values))
        else:
            columns[index] = list(map(convert, values))
    return columns


def _params(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    converters: list[tuple[int, Callable[[Any], Any]]],
) -> list[tuple[Any, ...]]:
    """One tuple of values per row, in the order of ``names`` (see :func:`_columns`)."""
    return list(zip(*_columns(rows, names, converters), strict=True))


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _unnest(
    conn: Connection, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> tuple[str, list[Any]]:
    """``unnest(%b::type[], ...)`` over one array per column of ``names``, and those arrays.

    The arrays travel in binary (``%b``): psycopg writes the text form of an array element by
    element in Python (quoting and escaping each), ~35 ms for the five columns of 5,000
    updated records, more than twice the binary form's cost and as much as the UPDATE itself.
    """
    columns = _columns(rows, names, _converters(conn, table, names))
    types = [table.c[n].type.compile(dialect=conn.dialect) for n in names]
    return f"unnest({', '.join(f'%b::{t}[]' for t in types)})", columns


# Integer columns and the values their binary form can hold: psycopg's binary dumpers of int2
# and int4 keep the low bytes of a larger number, where the text form made the server refuse it.
_INTEGER_RANGES = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}


def _copy_type(conn: Connection, table: Table, name: str) -> str:
    """The PostgreSQL type of ``name`` as binary ``COPY`` names it: no length (``varchar``),
    SQLAlchemy's ``FLOAT`` as the ``double precision`` it creates."""
    compiled = re.sub(r"\(\d+\)", "", table.c[name].type.compile(dialect=conn.dialect)).lower()
    return "double precision" if compiled == "float" else compiled


def _check_integers(names: Sequence[str], types: Sequence[str], params: Sequence[Sequence[Any]]) -> None:
    """Refuse a number its integer column cannot hold, before binary ``COPY`` would wrap it."""
    for index, (name, kind) in enumerate(zip(names, types, strict=True)):
        bound = _INTEGER_RANGES.get(kind)
        if bound is None:
            continue
        values = [row[index] for row in params if row[index] is not None]
        if values and not (-bound <= min(values) and max(values) < bound):
            raise ValueError(f"a value of {name} does not fit its column ({kind})")


def _json_source(
    conn: Connection, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]], alias: str
) -> tuple[list[str], tuple[str]]:
    """SQLite: the columns of ``names`` read from ``json_each(?) AS alias`` and that parameter,
    the rows as one JSON array of arrays. ``json_extract`` gives back each value as the driver
    would have bound it (text, integer, real or NULL; ``true`` as 1) for the values npsd stores:
    text without NUL (every input is checked by ``storable``; SQLite's JSON would cut a text at
    its NUL, so one is refused here), finite floats, integers of 64 bits."""
    params = _params(rows, names, _converters(conn, table, names))
    document = orjson.dumps(params).decode()
    if "\\u0000" in document:
        raise ValueError("a text holds a NUL character, which the JSON statement would cut off")
    values = [f"json_extract({alias}.value, '$[{index}]')" for index in range(len(names))]
    return values, (document,)


def insert_many(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, one_statement: bool = False
) -> None:
    """``INSERT`` ``rows`` (mappings with the same keys) in one statement (SQLite: one
    ``executemany``, or with ``one_statement`` one ``INSERT ... SELECT`` over the rows as JSON)."""
    if not rows:
        return
    conn = session.connection()
    names = list(rows[0])
    quote = conn.dialect.identifier_preparer.quote
    target = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
    if conn.dialect.name == "postgresql":
        # COPY: about a third faster than INSERT ... SELECT unnest(...) for a 5,000-row batch,
        # on the session's own connection, so inside its transaction; in binary, which halves
        # psycopg's work of writing the rows (~35 -> ~17 ms for 5,000 records)
        params = _params(rows, names, _converters(conn, table, names))
        driver = conn.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(
                f"COPY {quote(table.name)} ({', '.join(quote(n) for n in names)}) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            types = [_copy_type(conn, table, n) for n in names]
            _check_integers(names, types, params)
            copy.set_types(types)
            for values in params:
                copy.write_row(values)
        return
    if one_statement:
        selected, parameter = _json_source(conn, table, names, rows, "j")
        conn.exec_driver_sql(f"{target}SELECT {', '.join(selected)} FROM json_each(?) AS j", parameter)
        return
    mark = _placeholder(conn)
    conn.exec_driver_sql(
        f"{target}VALUES ({', '.join(mark for _ in names)})",
        _params(rows, names, _converters(conn, table, names)),
    )


def update_many(
    session: Session,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    one_statement: bool = False,
) -> None:
    """``UPDATE table SET columns... WHERE keys...`` for each of ``rows``, set-based.

    Each row maps every name of ``columns`` and ``keys`` to its value. ``one_statement``: on
    SQLite one ``UPDATE ... FROM json_each(?)`` instead of an ``executemany`` (see the module);
    every row must name a different stored row by ``keys``, and the first key must be unique (the
    id): keys are read from the JSON like the values, so SQLite loops over the rows and finds each
    by it (with a constant key it walked that key's index once per row).
    """
    if not rows:
        return
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    names = [*columns, *keys]
    if conn.dialect.name == "postgresql":
        source, arrays = _unnest(conn, table, names, rows)
        aliases = [f"c{i}" for i in range(len(names))]
        alias_of = dict(zip(names, aliases, strict=True))
        conn.exec_driver_sql(
            f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = v.{alias_of[c]}' for c in columns)} "
            f"FROM {source} AS v({', '.join(aliases)}) "
            f"WHERE {' AND '.join(f'{quote(table.name)}.{quote(k)} = v.{alias_of[k]}' for k in keys)}",
            tuple(arrays),
        )
        return
    if one_statement:
        selected, parameter = _json_source(conn, table, names, rows, "j")
        value_of = dict(zip(names, selected, strict=True))
        conn.exec_driver_sql(
            f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = {value_of[c]}' for c in columns)} "
            f"FROM json_each(?) AS j "
            f"WHERE {' AND '.join(f'{quote(table.name)}.{quote(k)} = {value_of[k]}' for k in keys)}",
            parameter,
        )
        return
    mark = _placeholder(conn)
    sql = (
        f"UPDATE {quote(table.name)} SET {', '.join(f'{quote(c)} = {mark}' for c in columns)} "
        f"WHERE {' AND '.join(f'{quote(k)} = {mark}' for k in keys)}"
    )
    conn.exec_driver_sql(sql, _params(rows, names, _converters(conn, table, names)))


def add_many(
    session: Session, table: Table, keys: Sequence[str], column: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows``, where one with the ``keys`` of a stored row adds its ``column`` to that
    row's instead (``ON CONFLICT DO UPDATE``): one statement (PostgreSQL: over ``unnest``;
    SQLite: one ``executemany``).

    Through SQLAlchemy this counter upsert was compiled anew on every call (its ``ON CONFLICT``
    clause is not cached), ~0.5 ms even for one row; on PostgreSQL a thousand rows took ~50 ms
    as an executemany, a few as one statement.
    """
    if not rows:
        return
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    names = [*keys, column]
    target, value = quote(table.name), quote(column)
    insert = f"INSERT INTO {target} ({', '.join(quote(n) for n in names)}) "
    conflict = (
        f" ON CONFLICT ({', '.join(quote(k) for k in keys)}) "
        f"DO UPDATE SET {value} = {target}.{value} + excluded.{value}"
    )
    if conn.dialect.name == "postgresql":
        source, arrays = _unnest(conn, table, names, rows)
        conn.exec_driver_sql(f"{insert}SELECT * FROM {source}{conflict}", tuple(arrays))
        return
    mark = _placeholder(conn)
    conn.exec_driver_sql(
        f"{insert}VALUES ({', '.join(mark for _ in names)}){conflict}",
        _params(rows, names, _converters(conn, table, names)),
    )
