"""Request plumbing shared by every router: the request-owned transaction, raw JSON bodies,
fast JSON responses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.errors import BadRequest
from npsd.kit.idempotency import WRITE_TURN_SCOPE_KEY, Pending, kept_headers, pending_in, store_reply
from npsd.kit.listing import query_guard

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The authenticated caller's organization, once known (auth/deps.py): its writes queue together.
ORG_SCOPE_KEY = "npsd.org"
RESPONSE_SCOPE_KEY = "npsd.response"
# Read your own writes: after a successful write, a client that keeps cookies (the dashboard's
# browser) reads from the primary for this long, so a page after a form never misses its change
# on a lagging replica. The cookie only steers reads to the primary, so it needs no signature.
PRIMARY_COOKIE = "npsd_primary"
READ_YOUR_WRITES_SECONDS = 5
T = TypeVar("T")


class TransactionRoute(APIRoute):
    """The route class of every router: it keeps the finished response in the request scope.

    The request's transaction (:func:`request_session`) ends after the response is built and
    before it is sent, so a request carrying ``Idempotency-Key`` can store its reply in the same
    transaction as its writes.
    """

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        check_query = query_guard(self)  # an undeclared query parameter is a 400, never ignored

        async def handle(request: Request) -> Response:
            if check_query is not None:
                check_query(request)
            response: Response = await handler(request)
            request.scope[RESPONSE_SCOPE_KEY] = response
            if request.method not in READ_METHODS and response.status_code < 400:
                _stick_to_primary(request, response)
            return response

        return handle


def _reply_to_keep(scope: MutableMapping[str, Any] | None) -> tuple[Pending, Response] | None:
    pending = pending_in(scope) if scope is not None else None
    response = scope.get(RESPONSE_SCOPE_KEY) if scope is not None else None
    if pending is None or not isinstance(response, Response) or response.status_code >= 500:
        return None
    return pending, response


def _finish(session: Session, ok: bool, scope: MutableMapping[str, Any] | None = None) -> None:
    try:
        if ok:
            reply = _reply_to_keep(scope)
            if reply is not None:
                pending, response = reply
                store_reply(
                    session,
                    pending,
                    response.status_code,
                    kept_headers(response.headers.raw),
                    bytes(response.body),
                )
            session.commit()
            if reply is not None:
                reply[0].stored = True
        else:
            session.rollback()
    finally:
        session.close()


def _stick_to_primary(request: Request, response: Response) -> None:
    db: Database = request.app.state.db
    if db.replica is not None:
        settings: Settings = request.app.state.settings
        response.set_cookie(
            PRIMARY_COOKIE,
            "1",
            max_age=READ_YOUR_WRITES_SECONDS,
            path="/",
            secure=settings.base_url.startswith("https"),
            httponly=True,
            samesite="lax",
        )


def _replica_read(request: Request, db: Database) -> bool:
    """Whether this request's heavy reads may go to the read replica: there is one, the request
    only reads, and its client did not just write (see :data:`PRIMARY_COOKIE`)."""
    return db.replica is not None and request.method in READ_METHODS and PRIMARY_COOKIE not in request.cookies


async def request_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: committed when the handler returns, rolled back if it raises.

    It ends after the response is built and before it is sent (``scope="function"``), so a
    client never sees a 2xx for a change that was not committed, and an idempotent request's
    reply commits with its writes.
    """
    async with _unit_of_work(request, replica=False) as session:
        yield session


async def request_read_session(request: Request) -> AsyncIterator[Session]:
    """A heavy read's session (``ReadSession``): on the read replica when one is configured and
    answers, else like :func:`request_session` on the primary.

    Only for routes that read and may lag the primary by a moment (lists, metrics, dashboard
    lists); a write route, or a read that must see the caller's own change, uses ``DbSession``.
    """
    async with _unit_of_work(request, replica=True) as session:
        yield session


@asynccontextmanager
async def _unit_of_work(request: Request, replica: bool) -> AsyncIterator[Session]:
    db: Database = request.app.state.db
    write = request.method not in READ_METHODS
    to_replica = replica and _replica_read(request, db)
    # Ending a SQLite read transaction never waits on a lock (WAL): do it inline rather than pay
    # a thread hop; everything else may wait (a commit, a network round trip).
    inline = db.is_sqlite and not write
    async with db.serialized(write, request.scope.get(ORG_SCOPE_KEY), request.scope):
        if write:
            request.scope[WRITE_TURN_SCOPE_KEY] = True
        # the replica's session connects at once (a round trip, so in a thread): if it does not
        # answer, the read falls back to the primary before the route runs
        session = await run_in_threadpool(db.read_session) if to_replica else db.session(write)
        ok = False
        try:
            yield session
            ok = True
        finally:
            if inline:
                _finish(session, ok)
            else:
                await run_in_threadpool(_finish, session, ok, request.scope if write else None)
            request.scope.pop(WRITE_TURN_SCOPE_KEY, None)


DbSession = Annotated[Session, Depends(request_session, scope="function")]
# A heavy read that may be served by the read replica (NPSD_DATABASE_READ_URL).
ReadSession = Annotated[Session, Depends(request_read_session, scope="function")]


def read_database(request: Request) -> Database:
    """The Database a heavy read that opens its own connections (an export) should use: the
    read replica when there is one, it answers and the client did not just write; else the
    primary. A plain ``def``: checking the replica is a round trip, so FastAPI runs it in a thread.
    """
    db: Database = request.app.state.db
    return db.reads() if _replica_read(request, db) else db


ReadDatabase = Annotated[Database, Depends(read_database)]


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (``config.get_settings`` reads the environment instead)."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]


def _connection_to_spare(db: Database) -> bool:
    """Whether the pool has an idle connection (inline, waiting for one would stop the event loop)."""
    pool: Any = db.engine.pool
    if not hasattr(pool, "checkedout") or not hasattr(pool, "size"):
        return False
    return bool(pool.checkedout() < pool.size())


async def point_read(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a lookup of a few rows by key: inline in a SQLite read request, else in a worker thread.

    A SQLite reader in WAL mode never waits on a lock and a primary-key lookup takes tens of
    microseconds, less than the hop to a worker thread and back. A write request's first
    statement takes the write lock (``BEGIN IMMEDIATE``), which may wait on another process, and
    a PostgreSQL read is a network round trip: neither may block the event loop.
    """
    db: Database = request.app.state.db
    if db.is_sqlite and request.method in READ_METHODS and _connection_to_spare(db):
        return fn(*args)
    return await run_in_threadpool(fn, *args)


async def json_body(request: Request) -> Any:
    """The request body parsed with orjson, for routes that validate items one by one."""
    raw = await request.body()
    if not raw:
        raise BadRequest.field("body", "is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest.field("body", f"is not valid JSON: {exc}") from exc


RawJson = Annotated[Any, Depends(json_body)]


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialize with orjson and skip response-model validation on hot paths."""
    return Response(
        orjson.dumps(data), status_code=status_code, media_type="application/json", headers=headers
    )
