"""``Idempotency-Key`` on POST, PUT and PATCH: a retried request is answered with the first reply.

Only an authenticated caller has a key: the authorization dependency (``auth/deps.py``) calls
:func:`claim` once it knows the caller's organization and role, so a request refused as
unauthenticated or forbidden never stores a reply nor gets one replayed. The first request
with a key records ``pending`` (scoped by organization), runs, and stores its reply; a retry
with the same key and the same method, path and body gets that reply again (with
``Idempotent-Replayed: true``); the same key with another body is a 422; a retry while the first
is still running is a 409. Replies with status 5xx are not kept, so the retry runs again. A
``pending`` entry older than ``STALE`` (its request died) may be taken over.

A request that writes stores its reply in its own transaction, together with its writes
(:func:`store_reply`, called by the request's session and by the ``POST /nps`` group commit): a
crash after the commit cannot leave the writes without the reply, so a retry after a crash is
not applied twice. (A first request still running after ``STALE`` can be overtaken by a retry.)
Replies of requests that wrote nothing (errors, reads) are stored afterwards by
:class:`IdempotencyMiddleware`, which sees every reply, also those of errors raised before the
route ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from npsd.kit.db import Database
from npsd.kit.errors import BadRequest, Conflict, Unprocessable
from npsd.kit.models import IdempotencyKey
from npsd.kit.timeutil import utcnow

KEEP = timedelta(hours=24)
STALE = timedelta(minutes=5)
MAX_KEY_LENGTH = 200
Scope = MutableMapping[str, Any]
SCOPE_KEY = "npsd.kit.idempotency"
KEPT_HEADERS = (b"content-type", b"location")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Set in the scope while the request's session holds the SQLite write turn (kit/http.py).
WRITE_TURN_SCOPE_KEY = "npsd.write_turn"


@dataclass
class Pending:
    """The key a running request answers for; ``stored`` once its reply is committed."""

    org_id: str
    key: str
    stored: bool = False


def pending_in(scope: Scope) -> Pending | None:
    """The idempotency key of the request with this ``scope``, if it carries one and runs."""
    return scope.get(SCOPE_KEY)


def kept_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The reply headers a replay repeats (the others belong to the moment they were sent)."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k.lower() in KEPT_HEADERS}


def store_reply(
    session: Session, pending: Pending, status: int, headers: dict[str, str], body: bytes
) -> None:
    """Record the reply of ``pending`` in ``session``'s transaction: it commits with the writes
    that produced it, or not at all. The caller sets ``pending.stored`` once committed."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.org_id == pending.org_id, IdempotencyKey.key == pending.key)
        .values(
            status="done",
            response_status=status,
            response_headers=headers,
            response_body=body.decode("utf-8", "replace"),
        )
    )


class Replay(Exception):
    """Raised by :func:`claim` to answer a retry with the first reply (see :func:`replay_response`)."""

    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


def replay_response(_request: Request, exc: Exception) -> Response:
    """The exception handler that sends a :class:`Replay`."""
    assert isinstance(exc, Replay)
    return Response(
        exc.body.encode(), status_code=exc.status, headers={**exc.headers, "Idempotent-Replayed": "true"}
    )


def _begin(db: Database, org_id: str, key: str, method: str, path: str, body_hash: str) -> tuple[str, Any]:
    """Record the key as pending, or say what the earlier request left: replay, conflict, mismatch."""
    now = utcnow()
    with db.transaction(write=True) as session:
        row = session.get(IdempotencyKey, (org_id, key))
        if row is not None and row.expires_at < now:
            session.delete(row)
            session.flush()
            row = None
        if row is None:
            try:
                with session.begin_nested():
                    session.add(
                        IdempotencyKey(
                            org_id=org_id,
                            key=key,
                            method=method,
                            path=path,
                            body_hash=body_hash,
                            status="pending",
                            created_at=now,
                            expires_at=now + KEEP,
                        )
                    )
            except IntegrityError:
                return "in-flight", None
            return "run", None
        if (row.method, row.path, row.body_hash) != (method, path, body_hash):
            return "mismatch", None
        if row.status == "done":
            return "replay", (row.response_status, row.response_headers or {}, row.response_body or "")
        if now - row.created_at > STALE:
            row.created_at = now
            return "run", None
        return "in-flight", None


async def claim(request: Request, org_id: str) -> None:
    """Take the request's ``Idempotency-Key`` for ``org_id``, the authenticated caller's organization.

    Does nothing for a request without a key or one that does not write. Raises :class:`Replay`
    for a retry of a finished request, 422 for the key reused with another request, 409 while
    the first is still running; otherwise the request runs and its reply is kept.
    """
    if request.method not in WRITE_METHODS or SCOPE_KEY in request.scope:
        return
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest.field("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    if request.scope.get(WRITE_TURN_SCOPE_KEY):
        # The request's session holds this process's SQLite write turn (and may have begun its
        # transaction): the claim's own write would wait on it forever. Routes declare their
        # role dependency before anything that opens the session (tests/test_architecture.py).
        raise RuntimeError(
            "Idempotency-Key claimed after the request's session began; declare the role first"
        )
    body_hash = hashlib.sha256(await request.body()).hexdigest()
    db: Database = request.app.state.db
    async with db.serialized(True, scope=request.scope):  # a writer waits in the event loop, not a thread
        outcome, stored = await run_in_threadpool(
            _begin, db, org_id, key, request.method, request.scope["path"], body_hash
        )
    if outcome == "mismatch":
        raise Unprocessable.field("Idempotency-Key", "was used with another request")
    if outcome == "in-flight":
        raise Conflict.field("Idempotency-Key", "names a request that is still being processed")
    if outcome == "replay":
        raise Replay(*stored)
    request.scope[SCOPE_KEY] = Pending(org_id, key)


class IdempotencyMiddleware:
    """Keeps the reply of a keyed request that did not store it with its writes.

    It sees every reply, including the error replies rendered outside the route (validation,
    exception handlers), and stores the one of a request that :func:`claim` let run.
    """

    def __init__(self, app: Any, db: Database) -> None:
        self.app = app
        self.db = db

    def _finish(self, org_id: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self.db.transaction(write=True) as session:
            if status >= 500:
                session.execute(
                    delete(IdempotencyKey).where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
                )
                return
            store_reply(session, Pending(org_id, key), status, headers, body)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        captured: dict[str, Any] = {"status": 500, "headers": {}, "body": []}

        async def capture_send(msg: dict[str, Any]) -> None:
            if SCOPE_KEY in scope:  # only a claimed request's reply is worth holding on to
                if msg["type"] == "http.response.start":
                    captured["status"] = msg["status"]
                    captured["headers"] = kept_headers(msg.get("headers", []))
                elif msg["type"] == "http.response.body":
                    captured["body"].append(msg.get("body", b""))
            await send(msg)

        try:
            await self.app(scope, receive, capture_send)
        finally:
            pending = pending_in(scope)
            if pending is not None and not pending.stored:  # the request wrote nothing, failed, or died
                async with self.db.serialized(True, scope=scope):
                    await run_in_threadpool(
                        self._finish,
                        pending.org_id,
                        pending.key,
                        captured["status"],
                        captured["headers"],
                        b"".join(captured["body"]),
                    )
