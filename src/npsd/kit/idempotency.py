"""``Idempotency-Key`` on POST and PUT: a retried request is answered with the first reply.

The first request with a key records ``pending`` (scoped by organization), runs, and stores its
reply; a retry with the same key and the same method, path and body gets that reply again
(with ``Idempotent-Replayed: true``); the same key with another body is a 422; a retry while the
first is still running is a 409. Replies with status 5xx are not kept, so the retry runs again.
A ``pending`` entry older than ``STALE`` (its request died) may be taken over.

A request that writes stores its reply in its own transaction, together with its writes
(:func:`store_reply`, called by the request's session and by the ``POST /nps`` group commit): a
crash after the commit cannot leave the writes without the reply, so a retry after a crash is
not applied twice. (A first request still running after ``STALE`` can be overtaken by a retry.) Replies of requests that wrote nothing (errors, reads) are stored afterwards, here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.errors import NpsdError
from npsd.kit.limits import send_error
from npsd.kit.models import IdempotencyKey
from npsd.kit.timeutil import utcnow

KEEP = timedelta(hours=24)
STALE = timedelta(minutes=5)
MAX_KEY_LENGTH = 200
Scope = dict[str, Any]
SCOPE_KEY = "npsd.kit.idempotency"
KEPT_HEADERS = (b"content-type", b"location")


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


class IdempotencyMiddleware:
    def __init__(self, app: Any, db: Database, settings: Settings) -> None:
        self.app = app
        self.db = db
        self.settings = settings

    def _org_of(self, scope: Scope) -> str | None:
        # imported here: the auth dependencies import npsd.kit.http, which stores replies through
        # this module
        from starlette.requests import Request

        from npsd.auth import tokens
        from npsd.auth.deps import extract_token

        try:
            claims = tokens.decode(self.settings, extract_token(Request(scope)))
        except (tokens.InvalidToken, NpsdError):
            return None
        return claims["org"]

    def _begin(self, org_id: str, key: str, method: str, path: str, body_hash: str) -> tuple[str, Any]:
        """Record the key as pending, or say what the earlier request left: replay, conflict, mismatch."""
        now = utcnow()
        with self.db.transaction(write=True) as session:
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

    def _finish(self, org_id: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self.db.transaction(write=True) as session:
            if status >= 500:
                session.execute(
                    delete(IdempotencyKey).where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
                )
                return
            store_reply(session, Pending(org_id, key), status, headers, body)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        key_bytes = None
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            for name, value in scope.get("headers", ()):
                if name == b"idempotency-key":
                    key_bytes = value
                    break
        if key_bytes is None:
            await self.app(scope, receive, send)
            return
        key = key_bytes.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            await send_error(
                scope,
                send,
                400,
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                "Idempotency-Key",
            )
            return
        org_id = self._org_of(scope)
        if org_id is None:  # not authenticated: let the route answer 401
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        body_hash = hashlib.sha256(body).hexdigest()
        method, path = scope["method"], scope["path"]
        outcome, stored = await run_in_threadpool(self._begin, org_id, key, method, path, body_hash)
        if outcome == "mismatch":
            await send_error(
                scope, send, 422, "this Idempotency-Key was used with another request", "Idempotency-Key"
            )
            return
        if outcome == "in-flight":
            await send_error(
                scope,
                send,
                409,
                "a request with this Idempotency-Key is still being processed",
                "Idempotency-Key",
            )
            return
        if outcome == "replay":
            status, headers, text = stored
            raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"idempotent-replayed", b"true")]
            payload = text.encode()
            raw.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": payload})
            return

        delivered = False

        async def replay_receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        captured: dict[str, Any] = {"status": 500, "headers": {}, "body": []}

        async def capture_send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                captured["status"] = msg["status"]
                captured["headers"] = kept_headers(msg.get("headers", []))
            elif msg["type"] == "http.response.body":
                captured["body"].append(msg.get("body", b""))
            await send(msg)

        pending = scope[SCOPE_KEY] = Pending(org_id, key)
        try:
            await self.app(scope, replay_receive, capture_send)
        finally:
            if not pending.stored:  # the request wrote nothing, failed, or died
                await run_in_threadpool(
                    self._finish,
                    org_id,
                    key,
                    captured["status"],
                    captured["headers"],
                    b"".join(captured["body"]),
                )
