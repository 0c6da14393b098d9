"""Retention of finished background jobs (``NPSD_JOB_RETENTION_DAYS``), on both databases.

Jobs are made and run by the real queue (``enqueue``, ``run_pending``), then aged by moving
their times back; the retention pass must delete the finished ones past the setting (``done``
and ``failed``), and keep every job still to run (``queued``, ``running``), every recent one,
and everything when the setting is 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from conftest import TestDatabase
from npsd.kit.db import Database
from npsd.kit.jobs import JobInfo, enqueue, handler, run_pending
from npsd.kit.models import Job
from npsd.kit.timeutil import utcnow
from npsd.privacy import service as privacy

KIND = "test.retention"
RAN: list[str] = []


@handler(KIND)
def _run(db: Database, job: JobInfo) -> None:
    """Succeeds, or fails for good when the payload asks (max_attempts 1)."""
    RAN.append(job.id)
    if job.payload.get("fail"):
        raise RuntimeError("asked to fail")


@pytest.fixture
def db(database: TestDatabase) -> Iterator[Database]:
    """A process of its own with the default job retention (14 days) and nothing else to delete,
    so its first retention pass runs at once."""
    settings = database.settings.model_copy(
        update={
            "job_retention_days": 14,
            "retention_days": None,
            "invitation_retention_days": 0,
            "webhook_retention_days": 0,
        }
    )
    own = Database(database.url, pool_size=2, settings=settings)
    yield own
    with own.transaction() as session:  # no job of this module is left for other tests' workers
        session.execute(delete(Job).where(Job.kind == KIND))
    own.dispose()


def make_job(db: Database, *, fail: bool = False) -> str:
    with db.transaction() as session:
        return enqueue(session, KIND, {"fail": fail, "tag": secrets.token_hex(4)}, max_attempts=1)


def age(db: Database, job_ids: list[str], days: float, **values: Any) -> None:
    """Move the jobs' times back ``days`` (and set ``values``), as if that much time went by."""
    back = utcnow() - timedelta(days=days)
    with db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(**{"run_at": back, "created_at": back, "updated_at": back, **values})
        )


def statuses(db: Database, job_ids: list[str]) -> dict[str, str]:
    with db.transaction(write=False) as session:
        return dict(session.execute(select(Job.id, Job.status).where(Job.id.in_(job_ids))).tuples().all())


def test_finished_jobs_past_the_setting_are_deleted_and_the_rest_kept(db: Database) -> None:
    old_done, old_failed, new_done = make_job(db), make_job(db, fail=True), make_job(db)
    run_pending(db)
    assert {old_done, old_failed, new_done} <= set(RAN)  # the queue really ran them
    assert statuses(db, [old_done, old_failed, new_done]) == {
        old_done: "done",
        old_failed: "failed",
        new_done: "done",
    }
    old_queued, old_running = make_job(db), make_job(db)
    age(db, [old_done, old_failed], 15)
    age(db, [old_queued], 40, run_at=utcnow() + timedelta(days=1))  # waiting for a far retry
    age(db, [old_running], 40, status="running", locked_until=utcnow() + timedelta(minutes=5))
    age(db, [new_done], 13)  # inside the 14 days

    done = privacy.run_retention(db, db.config)
    assert done.jobs >= 2
    assert statuses(db, [old_done, old_failed, new_done, old_queued, old_running]) == {
        new_done: "done",
        old_queued: "queued",
        old_running: "running",
    }


def test_a_job_finished_recently_after_a_long_wait_stays(db: Database) -> None:
    job = make_job(db)
    run_pending(db)
    back = utcnow() - timedelta(days=30)
    with db.transaction() as session:  # due a month ago, finished yesterday
        session.execute(
            update(Job)
            .where(Job.id == job)
            .values(run_at=back, created_at=back, updated_at=utcnow() - timedelta(days=1))
        )
    privacy.run_retention(db, db.config)
    assert statuses(db, [job]) == {job: "done"}


def test_zero_keeps_every_job(db: Database) -> None:
    job = make_job(db)
    run_pending(db)
    age(db, [job], 400)
    keep = db.config.model_copy(update={"job_retention_days": 0})
    assert privacy.run_retention(db, keep).jobs == 0
    assert statuses(db, [job]) == {job: "done"}


def test_the_workers_periodic_pass_deletes_them_in_batches(db: Database) -> None:
    jobs = [make_job(db) for _ in range(5)]
    run_pending(db)
    age(db, jobs, 20)
    done = privacy.run_retention(db, db.config, batch=2)  # three transactions for five rows
    assert done.jobs >= 5 and not done.more
    assert statuses(db, jobs) == {}

    later = make_job(db)
    run_pending(db)
    age(db, [later], 20)
    privacy.LAST_RUN.pop(db, None)
    privacy._NEXT_RUN.pop(db, None)  # this process's next pass is due now
    run_pending(db)  # the worker's round: the periodic retention pass, then due jobs
    assert privacy.LAST_RUN[db]["jobs"] >= 1
    assert statuses(db, [later]) == {}
