"""Durable background jobs: e-mails, reminders and webhook deliveries survive restarts.

A job is a row in ``job``. Producers call :func:`enqueue` inside their own transaction, so a job
exists exactly when the change that caused it was committed. Workers claim due jobs in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the write lock serializes
claims) and hold a lease; a job whose worker died is claimed again once its lease runs out.
Handlers run outside the claim transaction and open their own (``db.transaction()``), so a slow
SMTP server or webhook receiver never holds a database lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from npsd.kit.db import Database
from npsd.kit.ids import new_id, new_ids
from npsd.kit.models import Job
from npsd.kit.timeutil import utcnow

log = logging.getLogger("npsd.jobs")
LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class JobInfo:
    id: str
    kind: str
    org_id: str | None
    payload: dict[str, Any]
    attempts: int  # including the current one
    max_attempts: int


class RetryLater(Exception):
    """Raise from a handler to be retried after ``delay`` without it counting as an error."""

    def __init__(self, delay: timedelta, reason: str = "") -> None:
        super().__init__(reason)
        self.delay = delay


Handler = Callable[[Database, JobInfo], None]
FailureHook = Callable[[Database, JobInfo, str], None]


@dataclass
class Registration:
    handler: Handler
    backoff: Callable[[int], timedelta]
    on_failure: FailureHook | None


HANDLERS: dict[str, Registration] = {}
# Upkeep that depends on time passing rather than on a write: each runs before every round of
# due jobs, so it must be cheap when there is nothing to do. Returns how much it did.
PERIODIC: list[Callable[[Database], int]] = []


def periodic(fn: Callable[[Database], int]) -> Callable[[Database], int]:
    """Register ``fn`` to run with every round of due jobs (``npsd serve``, ``npsd worker``)."""
    PERIODIC.append(fn)
    return fn


def default_backoff(attempt: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at 1 hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempt - 1, 0), 3600))


def handler(
    kind: str, backoff: Callable[[int], timedelta] = default_backoff, on_failure: FailureHook | None = None
) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``. Raise to retry with ``backoff``;
    after ``max_attempts`` the job is ``failed`` and ``on_failure`` is called with the reason."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = Registration(fn, backoff, on_failure)
        return fn

    return register


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    org_id: str | None = None,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int = 8,
) -> str:
    """Add a job in the caller's transaction. With ``dedupe_key``, an existing job of that key wins."""
    if dedupe_key is not None:
        existing = session.scalar(select(Job.id).where(Job.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    now = utcnow()
    job = Job(
        id=new_id(),
        org_id=org_id,
        kind=kind,
        payload=payload,
        dedupe_key=dedupe_key,
        status="queued",
        run_at=run_at or now,
        attempts=0,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.flush()
    return job.id


def enqueue_new(
    session: Session,
    kind: str,
    jobs: Sequence[tuple[dict[str, Any], str]],
    *,
    org_id: str | None,
    run_at: datetime,
    max_attempts: int = 8,
) -> None:
    """Add many jobs, each ``(payload, dedupe_key)``, in one statement, in the caller's
    transaction. For keys the caller knows to be new (unlike :func:`enqueue`, which looks first)."""
    if not jobs:
        return
    now = utcnow()
    session.execute(
        insert(Job),
        [
            {
                "id": job_id,
                "org_id": org_id,
                "kind": kind,
                "payload": payload,
                "dedupe_key": dedupe_key,
                "status": "queued",
                "run_at": run_at,
                "attempts": 0,
                "max_attempts": max_attempts,
                "locked_by": None,
                "locked_until": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
            }
            for job_id, (payload, dedupe_key) in zip(new_ids(len(jobs)), jobs, strict=True)
        ],
    )


def claim(db: Database, worker_id: str, limit: int = 20) -> list[JobInfo]:
    """Take up to ``limit`` due jobs (queued and due, or running with an expired lease)."""
    now = utcnow()
    with db.transaction(write=True) as session:
        query = (
            select(Job)
            .where(
                or_(
                    (Job.status == "queued") & (Job.run_at <= now),
                    (Job.status == "running") & (Job.locked_until < now),
                )
            )
            .order_by(Job.run_at, Job.id)
            .limit(limit)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        claimed = []
        for job in jobs:
            job.status = "running"
            job.attempts += 1
            job.locked_by = worker_id
            job.locked_until = now + LEASE
            job.updated_at = now
            claimed.append(
                JobInfo(job.id, job.kind, job.org_id, dict(job.payload), job.attempts, job.max_attempts)
            )
    return claimed


def _finish(db: Database, job: JobInfo, worker_id: str, values: dict[str, Any]) -> None:
    with db.transaction(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.locked_by == worker_id)
            .values(updated_at=utcnow(), **values)
        )


def run_one(db: Database, job: JobInfo, worker_id: str) -> None:
    """Run one claimed job and record its outcome."""
    registration = HANDLERS.get(job.kind)
    if registration is None:
        _finish(db, job, worker_id, {"status": "failed", "last_error": f"no handler for {job.kind}"})
        return
    try:
        registration.handler(db, job)
    except RetryLater as exc:
        _finish(
            db,
            job,
            worker_id,
            {
                "status": "queued",
                "run_at": utcnow() + exc.delay,
                "attempts": job.attempts - 1,
                "last_error": str(exc) or None,
                "locked_by": None,
                "locked_until": None,
            },
        )
        return
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("job %s (%s) attempt %d failed: %s", job.id, job.kind, job.attempts, reason)
        log.debug("%s", traceback.format_exc())
        if job.attempts >= job.max_attempts:
            _finish(
                db,
                job,
                worker_id,
                {"status": "failed", "last_error": reason, "locked_by": None, "locked_until": None},
            )
            if registration.on_failure is not None:
                registration.on_failure(db, job, reason)
        else:
            _finish(
                db,
                job,
                worker_id,
                {
                    "status": "queued",
                    "last_error": reason,
                    "locked_by": None,
                    "locked_until": None,
                    "run_at": utcnow() + registration.backoff(job.attempts),
                },
            )
        return
    _finish(
        db, job, worker_id, {"status": "done", "last_error": None, "locked_by": None, "locked_until": None}
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_pending(db: Database, worker_id: str | None = None, limit: int = 1000) -> int:
    """Run the periodic upkeep, then every job that is due now (tests and ``npsd worker --once``
    call this); returns how many jobs ran."""
    worker_id = worker_id or worker_name()
    for task in PERIODIC:
        try:
            task(db)
        except Exception:  # upkeep must never stop the jobs
            log.exception("periodic task %s failed", task.__name__)
    done = 0
    while done < limit:
        jobs = claim(db, worker_id, min(20, limit - done))
        if not jobs:
            break
        for job in jobs:
            run_one(db, job, worker_id)
            done += 1
    return done


class Worker:
    """A background thread that runs due jobs until stopped (``npsd serve`` starts one)."""

    def __init__(self, db: Database, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="npsd-worker", daemon=True)
        self.worker_id = worker_name()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = run_pending(self.db, self.worker_id, limit=100)
            except Exception:
                log.exception("worker loop error")
                ran = 0
            if not ran:
                self._stop.wait(self.poll_seconds)
