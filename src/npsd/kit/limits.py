"""Request limits applied before any route runs: body size (413) and per-token rate (429)."""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from starlette.concurrency import run_in_threadpool

from npsd.kit.db import Database
from npsd.kit.errors import error_response
from npsd.kit.models import RateLimit

Scope = dict[str, Any]


def _header(scope: Scope, name: bytes) -> bytes | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())  # ASGI: (name, value) pairs
    for key, value in headers:
        if key == name:
            return value
    return None


async def send_error(
    scope: Scope,
    send: Any,
    status: int,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer from a middleware in the one error shape."""
    response = error_response(
        None,
        status,
        message,
        [{"field": field, "issue": message}] if field else [],
        headers=headers,
        path=scope.get("path", ""),
    )
    request_id = scope.get("state", {}).get("request_id", "")
    if request_id:
        body = orjson.loads(response.body)
        body["requestId"] = request_id
        response.body = orjson.dumps(body)
        response.headers["content-length"] = str(len(response.body))
    await response(scope, _drain, send)


async def _drain() -> dict[str, Any]:
    return {"type": "http.disconnect"}


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: at once from ``Content-Length``, or as soon as a
    streamed body passes the limit, so a huge body is never read whole."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        message = f"request body is larger than {self.max_bytes} bytes"
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await send_error(scope, send, 400, "Content-Length is not a number", "Content-Length")
                return
            if too_big:
                await send_error(scope, send, 413, message, "body")
                return
        state = {"seen": 0, "exceeded": False, "started": False}

        async def limited_receive() -> dict[str, Any]:
            msg: dict[str, Any] = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["exceeded"] = True
                    raise BodyTooLarge
            return msg

        async def guarded_send(msg: dict[str, Any]) -> None:
            if state["exceeded"]:
                return  # the 413 below replaces whatever the app tried to answer
            state["started"] = True
            await send(msg)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if state["exceeded"] and not state["started"]:
            await send_error(scope, send, 413, message, "body")


class RateLimiter:
    """Fixed one-minute windows per token. In memory for SQLite (one process); in the
    ``rate_limit`` table on PostgreSQL, so the limit holds across processes and servers."""

    def __init__(self, db: Database, limit: int) -> None:
        self.db = db
        self.limit = limit
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}
        self._last_purge = 0.0

    def hit(self, bucket: str, window: int) -> int:
        """Count one request; return the count in this window including it."""
        if self.db.is_sqlite:
            with self._lock:
                key = (bucket, window)
                self._counts[key] = count = self._counts.get(key, 0) + 1
                if len(self._counts) > 10_000:
                    self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
                return count
        start = datetime.fromtimestamp(window * 60, UTC).replace(tzinfo=None)
        insert = pg_insert(RateLimit).values(bucket=bucket, window_start=start, count=1)
        upsert = insert.on_conflict_do_update(
            index_elements=["bucket", "window_start"], set_={"count": RateLimit.count + 1}
        ).returning(RateLimit.count)
        with self.db.engine.begin() as conn:
            count = int(conn.execute(upsert).scalar_one())
            now = time.monotonic()
            if now - self._last_purge > 60:
                self._last_purge = now
                conn.execute(delete(RateLimit).where(RateLimit.window_start < start - timedelta(minutes=2)))
        return count


class RateLimitMiddleware:
    """``NPSD_RATE_LIMIT`` requests a minute per token: 429 with ``Retry-After`` beyond it, and
    ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch seconds) on every answer."""

    def __init__(self, app: Any, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        credential = None
        if scope["type"] == "http" and self.limiter.limit > 0:
            credential = _header(scope, b"authorization") or _header(scope, b"x-api-key")
        if not credential:
            await self.app(scope, receive, send)
            return
        bucket = hashlib.sha256(credential).hexdigest()[:32]
        now = time.time()
        window = int(now // 60)
        if self.limiter.db.is_sqlite:
            count = self.limiter.hit(bucket, window)
        else:
            async with self.limiter.db.serialized(True, scope=scope):  # its own short transaction
                count = await run_in_threadpool(self.limiter.hit, bucket, window)
        reset = (window + 1) * 60
        limit = self.limiter.limit
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - count, 0)),
            "X-RateLimit-Reset": str(reset),
        }
        if count > limit:
            headers["Retry-After"] = str(max(math.ceil(reset - now), 1))
            await send_error(
                scope, send, 429, f"rate limit of {limit} requests a minute exceeded", headers=headers
            )
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                msg["headers"] = [*msg.get("headers", []), *extra]
            await send(msg)

        await self.app(scope, receive, send_with_headers)


class SlidingWindow:
    """At most ``limit`` hits per key in any ``seconds``; in memory, per process."""

    MAX_KEYS = 100_000

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float | None:
        """None while ``key`` may go on, else the seconds until it may; counts nothing."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.get(key)
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if hits is not None and len(hits) >= self.limit:
                return hits[0] + self.seconds - now
            return None

    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds until the next one would be."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.seconds - now
            hits.append(now)
            if len(self._hits) > self.MAX_KEYS:
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.seconds}
            return None
