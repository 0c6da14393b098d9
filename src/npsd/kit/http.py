"""Request plumbing shared by every router: the request-owned transaction, raw JSON bodies,
fast JSON responses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, MutableMapping
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


async def request_session(request: Request) -> AsyncIterator[Session]:
    """The request's unit of work: committed when the handler returns, rolled back if it raises.

    It ends after the response is built and before it is sent (``scope="function"``), so a
    client never sees a 2xx for a change that was not committed, and an idempotent request's
    reply commits with its writes.
    """
    db: Database = request.app.state.db
    write = request.method not in READ_METHODS
    # Ending a SQLite read transaction never waits on a lock (WAL): do it inline rather than pay
    # a thread hop; everything else may wait (a commit, a network round trip).
    inline = db.is_sqlite and not write
    async with db.serialized(write, request.scope.get(ORG_SCOPE_KEY), request.scope):
        if write:
            request.scope[WRITE_TURN_SCOPE_KEY] = True
        session = db.session(write)
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
