"""Group commit for ``POST /nps``: concurrent single creates share one write transaction.

Writes to one SQLite file are serialized, and a transaction costs far more than one record in
it. Requests that arrive while a write is running therefore queue here, and the next write
takes all of them (up to ``MAX_BATCH``) in one transaction through the bulk machinery
(:func:`service.create_records`). Each request still gets exactly its own answer: its record, or
the 400/409 it would have got alone, and only after the transaction committed. Should the shared
write fail as a whole, its items are retried one transaction each, so one bad item cannot sink
the others. A request carrying ``Idempotency-Key`` has its reply stored in the same
transaction as its record (see npsd.kit.idempotency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from npsd.kit.db import Database
from npsd.kit.idempotency import Pending, store_reply
from npsd.records import service
from npsd.records.output import output_of
from npsd.records.schemas import NpsInput

log = logging.getLogger("npsd.records")
MAX_BATCH = 500
Item = tuple[str, NpsInput, Pending | None, "asyncio.Future[dict[str, Any]]"]
Result = dict[str, Any] | Exception


class CreateBatcher:
    """One per app; the consumer task lives on the event loop that serves the requests."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[Item] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def create(self, org_id: str, data: NpsInput, pending: Pending | None = None) -> dict[str, Any]:
        """Create one record; returns the stored row (a mapping of its ``COLUMN_NAMES``) once committed.

        With ``pending`` (the request's idempotency key), the reply, :func:`reply_body` of the
        row, is stored in the same transaction."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._consume(self._queue), name="npsd-create-batcher")
        assert self._queue is not None
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        await self._queue.put((org_id, data, pending, future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self, queue: asyncio.Queue[Item]) -> None:
        while True:
            items = [await queue.get()]
            while len(items) < MAX_BATCH and not queue.empty():
                items.append(queue.get_nowait())
            try:
                async with self.db.serialized(True):
                    results = await run_in_threadpool(self._apply, items)
            except Exception as exc:  # never let one batch stop the consumer
                log.exception("group commit failed")
                results = [exc] * len(items)
            for (_, _, _, future), result in zip(items, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _apply(self, items: list[Item]) -> list[Result]:
        try:
            return self._write(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        results: list[Result] = []
        for item in items:  # the shared write failed as a whole: isolate the culprit
            try:
                results.extend(self._write([item]))
            except Exception as exc:
                results.append(exc)
        return results

    def _write(self, items: list[Item]) -> list[Result]:
        """Create ``items`` in one transaction, with the replies of those that carry a key."""
        with self.db.transaction(write=True) as session:
            results = service.create_records(session, [(org_id, data) for org_id, data, _, _ in items])
            kept = _store_replies(session, items, results)
        for pending in kept:
            pending.stored = True
        return results


def reply_body(row: dict[str, Any]) -> bytes:
    """The body of ``POST /nps``'s reply for a created row."""
    return orjson.dumps(output_of(row))


def _store_replies(session: Session, items: list[Item], results: list[Result]) -> list[Pending]:
    kept = []
    for (_, _, pending, _), result in zip(items, results, strict=True):
        if pending is not None and not isinstance(result, Exception):
            store_reply(session, pending, 200, {"content-type": "application/json"}, reply_body(result))
            kept.append(pending)
    return kept
