"""Group commit for ``POST /nps``: concurrent single creates share one write transaction.

Writes to one SQLite file are serialized, and a transaction costs far more than one record in
it. Requests that arrive while a write is running therefore queue here, and the next write
takes all of them (up to ``MAX_BATCH``) in one transaction through the bulk machinery
(:func:`service.create_records`). Each request still gets exactly its own answer: its record, or
the 400/409 it would have got alone, and only after the transaction committed. Should the shared
write fail as a whole, its items are retried one transaction each, so one bad item cannot sink
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from npsd.db import Database
from npsd.records import service
from npsd.records.schemas import NpsInput

log = logging.getLogger("npsd.records")
MAX_BATCH = 500
Item = tuple[str, NpsInput, "asyncio.Future[dict[str, Any]]"]


class CreateBatcher:
    """One per app; the consumer task lives on the event loop that serves the requests."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[Item] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def create(self, org_id: str, data: NpsInput) -> dict[str, Any]:
        """Create one record; returns the stored row (``service.COLUMN_NAMES``) once committed."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._consume(self._queue), name="npsd-create-batcher")
        assert self._queue is not None
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        await self._queue.put((org_id, data, future))
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
            for (_, _, future), result in zip(items, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _apply(self, items: list[Item]) -> list[dict[str, Any] | Exception]:
        pairs = [(org_id, data) for org_id, data, _ in items]
        try:
            with self.db.transaction(write=True) as session:
                return service.create_records(session, pairs)
        except Exception as exc:
            if len(pairs) == 1:
                return [exc]
        results: list[dict[str, Any] | Exception] = []
        for pair in pairs:  # the shared write failed as a whole: isolate the culprit
            try:
                with self.db.transaction(write=True) as session:
                    results.append(service.create_records(session, [pair])[0])
            except Exception as exc:
                results.append(exc)
        return results
