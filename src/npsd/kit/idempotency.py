"""``Idempotency-Key`` on POST, PUT and PATCH: a retried request is answered with the first reply.

Only an authenticated caller has a key: the authorization dependency (``auth/deps.py``) calls
:func:`claim` once it knows the caller's organization and role, so a request refused as
unauthenticated or forbidden never stores a reply nor gets one replayed. The first request
with a key records ``pending`` (scoped by organization), runs, and stores its reply; a retry
with the same key and the same method, path and body gets that reply again (with
``Idempotent-Replayed: true``); the same key with another body is a 422; a retry while the first
is still running is a 409. Replies with status 5xx are not kept, so the retry runs again.

A first request that died with its process (SIGKILL, a lost machine) must not block its retries:
the ``pending`` entry names its ``owner`` (host, process id and start time), and a retry takes
the key over at once when the owner is known to be dead. On PostgreSQL every process keeps one
connection of its own (outside the pool) holding a session-level advisory lock per key it runs;
a retry that can take that lock knows the owner's connection, and so the owner, is gone (works
across machines). On SQLite, whose processes share one machine, the retry asks the operating
system whether the owner process still lives. Only an entry without an owner (written before
this rule) waits out ``STALE``.

A request that writes stores its reply in its own transaction, together with its writes
(:func:`store_reply`, called by the request's session and by the ``POST /nps`` group commit): a
crash after the commit cannot leave the writes without the reply, so a retry after a crash is
not applied twice. A first request still running is never overtaken, however long it takes.
Replies of requests that wrote nothing (errors, reads) are stored afterwards by
:class:`IdempotencyMiddleware`, which sees every reply, also those of errors raised before the
route ran.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, delete, pool, text, update
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
log = logging.getLogger("npsd.idempotency")


# ------------------------------------------------------------------------------ who runs a key


def _start_time(pid: int | str) -> str | None:
    """The process's start (clock ticks since boot, Linux ``/proc``): with the pid, it names one
    process even after the pid is reused. None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of the whole line


_owners: dict[int, str] = {}


def owner_id() -> str:
    """This process, as a ``pending`` entry names it: ``host:pid:start``."""
    pid = os.getpid()
    owner = _owners.get(pid)
    if owner is None:
        owner = _owners[pid] = f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"
    return owner


def owner_alive(owner: str) -> bool | None:
    """Whether the process ``owner`` still runs: True or False when this machine can tell, None
    when it cannot (another host, or an owner in an unknown form)."""
    try:
        host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: the pid exists, take it for the owner
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return False  # killed, not yet reaped by its parent
    return not start or _start_time(pid) == start


def lock_name(org_id: str, key: str) -> str:
    """The text whose hash is the PostgreSQL advisory lock of a key in flight."""
    return f"idem:{org_id}:{key}"


class _Runs:
    """The keys this process is running, and on PostgreSQL the connection that holds an advisory
    lock for each of them (a session-level lock: it dies with the connection, so with the process).

    The connection is outside the pool and in autocommit: its locks outlive every transaction, and
    it never holds one open. Its statements never wait (``pg_try_advisory_lock``).
    """

    def __init__(self, db: Database) -> None:
        self.lock = threading.Lock()
        self.keys: set[tuple[str, str]] = set()
        self._url = None if db.is_sqlite else db.engine.url
        self._engine: Any = None
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is not None and not self._conn.closed and not self._conn.invalidated:
            return self._conn
        if self._engine is None:
            self._engine = create_engine(
                self._url,  # type: ignore[arg-type]
                poolclass=pool.NullPool,
                isolation_level="AUTOCOMMIT",
                connect_args={"prepare_threshold": None},
            )
        self._conn = self._engine.connect()
        for org_id, key in self.keys:  # a new connection: take again the locks the old one held
            self._try(self._conn, org_id, key)
        return self._conn

    @staticmethod
    def _try(conn: Connection, org_id: str, key: str) -> bool:
        return bool(
            conn.execute(
                text("SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"), {"k": lock_name(org_id, key)}
            ).scalar()
        )

    def take(self, org_id: str, key: str) -> bool:
        """Mark the key as run by this process; False when this process runs it already, or (on
        PostgreSQL) another live process holds its lock."""
        with self.lock:
            if (org_id, key) in self.keys:
                return False
            if self._url is not None:
                try:
                    got = self._try(self._connection(), org_id, key)
                except Exception:  # the server restarted or the link broke: once more, connected anew
                    log.warning("the idempotency lock connection failed; reconnecting", exc_info=True)
                    self._conn = None
                    got = self._try(self._connection(), org_id, key)
                if not got:
                    return False
            self.keys.add((org_id, key))
            return True

    def give_back(self, org_id: str, key: str) -> None:
        with self.lock:
            if (org_id, key) not in self.keys:
                return
            self.keys.discard((org_id, key))
            if self._url is None or self._conn is None:
                return
            try:
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": lock_name(org_id, key)}
                )
            except Exception:  # the connection broke: its locks went with it
                log.warning("releasing the lock of an idempotency key failed", exc_info=True)
                self._conn = None


_runs: weakref.WeakKeyDictionary[Database, _Runs] = weakref.WeakKeyDictionary()
_runs_lock = threading.Lock()


def _runs_of(db: Database) -> _Runs:
    with _runs_lock:
        runs = _runs.get(db)
        if runs is None:
            runs = _runs[db] = _Runs(db)
        return runs


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


def _first_died(db: Database, row: IdempotencyKey, now: Any) -> bool:
    """Whether the request that left ``row`` pending is dead. Called while this process holds the
    key (on PostgreSQL: its lock, which a live owner would hold)."""
    if row.owner is None:  # written before owners were recorded
        return bool(now - row.created_at > STALE)
    if row.owner == owner_id() or not db.is_sqlite:
        return True  # not among this process's runs / the owner's lock was free: its connection died
    alive = owner_alive(row.owner)
    return not alive if alive is not None else bool(now - row.created_at > STALE)


def _begin(
    db: Database, org_id: str, key: str, method: str, path: str, body_hash: str, scope: Scope
) -> tuple[str, Any]:
    """Record the key as pending (this process then holds it until :func:`finish_run`), or say
    what the earlier request left: replay, conflict, mismatch. A key taken is marked in ``scope``
    here, in the thread, so that even a request cancelled meanwhile lets go of it (middleware)."""
    runs = _runs_of(db)
    if not runs.take(org_id, key):
        return "in-flight", None
    outcome: tuple[str, Any] = ("in-flight", None)
    try:
        outcome = _begin_held(db, org_id, key, method, path, body_hash)
    finally:
        if outcome[0] == "run":
            scope[SCOPE_KEY] = Pending(org_id, key)
        else:
            runs.give_back(org_id, key)
    return outcome


def finish_run(db: Database, pending: Pending) -> None:
    """The request of ``pending`` ended (its reply stored, or not): this process lets go of the key."""
    _runs_of(db).give_back(pending.org_id, pending.key)


def _begin_held(
    db: Database, org_id: str, key: str, method: str, path: str, body_hash: str
) -> tuple[str, Any]:
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
                            owner=owner_id(),
                        )
                    )
            except IntegrityError:
                return "in-flight", None
            return "run", None
        if (row.method, row.path, row.body_hash) != (method, path, body_hash):
            return "mismatch", None
        if row.status == "done":
            return "replay", (row.response_status, row.response_headers or {}, row.response_body or "")
        if _first_died(db, row, now):
            row.created_at = now
            row.owner = owner_id()
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
            _begin, db, org_id, key, request.method, request.scope["path"], body_hash, request.scope
        )
    if outcome == "mismatch":
        raise Unprocessable.field("Idempotency-Key", "was used with another request")
    if outcome == "in-flight":
        raise Conflict.field("Idempotency-Key", "names a request that is still being processed")
    if outcome == "replay":
        raise Replay(*stored)


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
            try:
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
            finally:
                if pending is not None:
                    await run_in_threadpool(finish_run, self.db, pending)
