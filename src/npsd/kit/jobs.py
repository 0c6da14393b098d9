"""Durable background jobs: e-mails, reminders and webhook deliveries survive restarts.

A job is a row in ``job``. Producers call :func:`enqueue` inside their own transaction, so a job
exists exactly when the change that caused it was committed. Workers claim due jobs in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the write lock serializes
claims) and hold a short lease (``NPSD_JOB_LEASE_SECONDS``, 30 s) that a heartbeat thread
renews while the job runs: a job whose worker died (SIGKILL, a lost machine) is claimed again
within about one lease, and a long job is never taken over while its worker lives.
Handlers run outside the claim transaction and open their own (``db.transaction()``), so a slow
SMTP server or webhook receiver never holds a database lock; and they run on thread pools by
kind (:func:`pool`), so a slow receiver never holds back the mails.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.ids import new_id, new_ids
from npsd.kit.models import Job
from npsd.kit.telemetry import JOB_OUTCOMES
from npsd.kit.timeutil import utcnow

log = logging.getLogger("npsd.jobs")


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
    pool: str = "default"


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
    kind: str,
    backoff: Callable[[int], timedelta] = default_backoff,
    on_failure: FailureHook | None = None,
    pool: str = "default",
) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``. Raise to retry with ``backoff``;
    after ``max_attempts`` the job is ``failed`` and ``on_failure`` is called with the reason.
    ``pool`` names the threads of :class:`Worker` that run it (see :func:`pool`)."""

    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = Registration(fn, backoff, on_failure, pool)
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


def lease_of(db: Database) -> timedelta:
    """The lease a claim gives (``NPSD_JOB_LEASE_SECONDS``)."""
    return timedelta(seconds=db.config.job_lease_seconds)


def claim(
    db: Database,
    worker_id: str,
    limit: int = 20,
    *,
    kinds: Collection[str] | None = None,
    exclude: Collection[str] = (),
    lease: timedelta | None = None,
) -> list[JobInfo]:
    """Take up to ``limit`` due jobs (queued and due, or running with an expired lease), of
    ``kinds`` if given and of no kind in ``exclude``. The lease runs ``lease`` from now; the
    claiming worker renews it while the job runs (:class:`Heartbeat`)."""
    now = utcnow()
    lease = lease or lease_of(db)
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
        if kinds is not None:
            query = query.where(Job.kind.in_(list(kinds)))
        if exclude:
            query = query.where(Job.kind.not_in(list(exclude)))
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        jobs = list(session.scalars(query))
        claimed = []
        for job in jobs:
            if job.status == "running":
                log.warning(
                    "job %s (%s): lease of %s ran out, taking it over", job.id, job.kind, job.locked_by
                )
            job.status = "running"
            job.attempts += 1
            job.locked_by = worker_id
            job.locked_until = now + lease
            job.updated_at = now
            claimed.append(
                JobInfo(job.id, job.kind, job.org_id, dict(job.payload), job.attempts, job.max_attempts)
            )
    return claimed


def renew(db: Database, worker_id: str, job_ids: Collection[str], lease: timedelta) -> int:
    """Extend the lease of the jobs ``worker_id`` still holds; returns how many it holds."""
    if not job_ids:
        return 0
    with db.transaction(write=True) as session:
        result = session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.locked_by == worker_id, Job.status == "running")
            .values(locked_until=utcnow() + lease)
        )
    return int(getattr(result, "rowcount", 0) or 0)


def release(db: Database, worker_id: str, job_ids: Collection[str]) -> None:
    """Give back claimed jobs that never started (a worker stopping): due again, attempt uncounted."""
    if not job_ids:
        return
    with db.transaction(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.locked_by == worker_id, Job.status == "running")
            .values(
                status="queued",
                attempts=Job.attempts - 1,
                locked_by=None,
                locked_until=None,
                updated_at=utcnow(),
            )
        )


class Heartbeat:
    """Renews the lease of the jobs a worker holds, every third of the lease, from a thread of its
    own: a handler that runs longer than the lease is never taken over while its worker lives,
    and the jobs of a worker that died are free again within one lease."""

    def __init__(self, db: Database, worker_id: str, lease: timedelta) -> None:
        self.db = db
        self.worker_id = worker_id
        self.lease = lease
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="npsd-job-heartbeat", daemon=True)
        self.renewals = 0  # rounds that renewed something (a test checks that it ran)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def hold(self, job_id: str) -> None:
        with self._lock:
            self._held.add(job_id)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._held.discard(job_id)

    def _loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                kept = renew(self.db, self.worker_id, held, self.lease)
                self.renewals += 1
                if kept < len(held):  # finished meanwhile, or this worker stalled past its lease
                    with self._lock:
                        lost = len(self._held.intersection(held)) - kept
                    if lost > 0:
                        log.warning("%d job(s) running here lost their lease to another worker", lost)
            except Exception:  # the next round tries again; a lease outlives two missed rounds
                log.exception("renewing the lease of %d job(s) failed", len(held))


def _finish(db: Database, job: JobInfo, worker_id: str, values: dict[str, Any]) -> None:
    with db.transaction(write=True) as session:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.locked_by == worker_id)
            .values(updated_at=utcnow(), **values)
        )


def run_one(db: Database, job: JobInfo, worker_id: str) -> None:
    """Run one claimed job and record its outcome (and count it: ``npsd_jobs_total``)."""
    registration = HANDLERS.get(job.kind)
    if registration is None:
        _finish(db, job, worker_id, {"status": "failed", "last_error": f"no handler for {job.kind}"})
        JOB_OUTCOMES.labels(job.kind, "failed").inc()
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
        JOB_OUTCOMES.labels(job.kind, "deferred").inc()
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
            JOB_OUTCOMES.labels(job.kind, "failed").inc()
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
            JOB_OUTCOMES.labels(job.kind, "retry").inc()
        return
    _finish(
        db, job, worker_id, {"status": "done", "last_error": None, "locked_by": None, "locked_until": None}
    )
    JOB_OUTCOMES.labels(job.kind, "done").inc()


def worker_name() -> str:
    """A name no other worker has, now or later: host, process, thread and a random part (two
    Workers of one thread, or a pid reused after a crash, never share a lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{secrets.token_hex(3)}"


def run_periodic(db: Database) -> None:
    for task in PERIODIC:
        try:
            task(db)
        except Exception:  # upkeep must never stop the jobs
            log.exception("periodic task %s failed", task.__name__)


def run_pending(db: Database, worker_id: str | None = None, limit: int = 1000) -> int:
    """Run the periodic upkeep, then every job that is due now, one after another in the calling
    thread (tests and ``npsd worker --once`` call this); returns how many jobs ran."""
    worker_id = worker_id or worker_name()
    run_periodic(db)
    done = 0
    lease = lease_of(db)
    with Heartbeat(db, worker_id, lease) as heartbeat:
        while done < limit:
            jobs = claim(db, worker_id, min(20, limit - done), lease=lease)
            if not jobs:
                break
            for job in jobs:
                heartbeat.hold(job.id)
            for job in jobs:
                try:
                    run_one(db, job, worker_id)
                finally:
                    heartbeat.drop(job.id)
                done += 1
    return done


def pool(name: str, size: Callable[[Settings], int]) -> None:
    """Run the job kinds registered with ``pool=name`` on ``size(settings)`` threads of their own
    in :class:`Worker`, so that they never wait behind other kinds, nor other kinds behind them."""
    POOLS[name] = size


DEFAULT_POOL = "default"
# Threads for every kind without a pool of its own (mails, reminders, upkeep jobs): two, so one
# long job (an import, an erasure) does not hold the mails back.
DEFAULT_POOL_THREADS = 2
POOLS: dict[str, Callable[[Settings], int]] = {}


class Worker:
    """Runs due jobs until stopped (``npsd serve`` starts one; ``npsd worker`` is one).

    A dispatcher thread claims due jobs while a pool has a free thread and hands them over; each
    pool (``default``, and those declared with :func:`pool`, e.g. webhook deliveries) has threads
    of its own, so a slow webhook receiver never holds back a mail. A :class:`Heartbeat` renews
    the lease of every job claimed until its outcome is recorded.
    """

    def __init__(self, db: Database, poll_seconds: float = 1.0, lease_seconds: float | None = None) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds) if lease_seconds else lease_of(db)
        self.worker_id = worker_name()
        self.heartbeat = Heartbeat(db, self.worker_id, self.lease)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="npsd-worker", daemon=True)
        self._lock = threading.Lock()
        sizes = {DEFAULT_POOL: DEFAULT_POOL_THREADS}
        sizes.update({name: max(1, size(db.config)) for name, size in POOLS.items()})
        for registration in HANDLERS.values():  # a pool nobody sized gets one thread, never none
            sizes.setdefault(registration.pool, 1)
        self.sizes = sizes
        self._busy = dict.fromkeys(sizes, 0)
        self._queues: dict[str, queue.SimpleQueue[JobInfo | None]] = {n: queue.SimpleQueue() for n in sizes}
        self._waiting: set[str] = set()  # claimed, not started yet
        self._threads = [
            threading.Thread(target=self._run_jobs, args=(name,), name=f"npsd-jobs-{name}-{i}", daemon=True)
            for name, size in sizes.items()
            for i in range(size)
        ]

    def start(self) -> None:
        self.heartbeat.__enter__()
        for thread in self._threads:
            thread.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; jobs not started yet are given back; running ones get ``timeout`` to end
        (those still running after it are taken over by another worker once their lease ends)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
        try:
            release(self.db, self.worker_id, waiting)
        except Exception:
            log.exception("giving back %d claimed job(s) failed", len(waiting))
        for name in self.sizes:
            for _ in range(self.sizes[name]):
                self._queues[name].put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.heartbeat.__exit__()

    def _kinds(self, name: str) -> tuple[Collection[str] | None, Collection[str]]:
        """The kinds pool ``name`` runs: those registered to it, or (default) all the others."""
        pooled = {kind for kind, r in HANDLERS.items() if r.pool != DEFAULT_POOL}
        if name == DEFAULT_POOL:
            return None, pooled
        return [kind for kind, r in HANDLERS.items() if r.pool == name], ()

    def _loop(self) -> None:
        last_upkeep = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last_upkeep >= self.poll_seconds:
                run_periodic(self.db)
                last_upkeep = time.monotonic()
            claimed = 0
            for name, size in self.sizes.items():
                with self._lock:
                    free = size - self._busy[name]
                if free <= 0 or self._stop.is_set():
                    continue
                kinds, exclude = self._kinds(name)
                if kinds is not None and not kinds:
                    continue
                try:
                    jobs = claim(
                        self.db, self.worker_id, min(free, 20), kinds=kinds, exclude=exclude, lease=self.lease
                    )
                except Exception:
                    log.exception("claiming jobs failed")
                    jobs = []
                for job in jobs:
                    self.heartbeat.hold(job.id)
                    with self._lock:
                        self._busy[name] += 1
                        self._waiting.add(job.id)
                    self._queues[name].put(job)
                claimed += len(jobs)
            if not claimed:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _run_jobs(self, name: str) -> None:
        while True:
            job = self._queues[name].get()
            if job is None:
                return
            with self._lock:
                if job.id not in self._waiting:  # given back by stop()
                    self._busy[name] -= 1
                    continue
                self._waiting.discard(job.id)
            try:
                run_one(self.db, job, self.worker_id)
            except Exception:
                log.exception("job %s (%s) could not be recorded", job.id, job.kind)
            finally:
                self.heartbeat.drop(job.id)
                with self._lock:
                    self._busy[name] -= 1
                self._wake.set()
