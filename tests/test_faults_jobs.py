"""Job leases (#11, coordination faults): a job held by a killed process is taken over within
about one lease, and a job that runs longer than its lease is never taken over while its worker
lives (a heartbeat renews the lease). Before, the lease was five fixed minutes: invitations
claimed by a worker killed mid-send were mailed ~295 s later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from conftest import TestDatabase, make_tenant
from faults import fresh_database, holding_smtp, kill, npsd, wait_for
from mail_helpers import invite, make_survey, unique_email
from npsd.app import create_app
from npsd.collect.service import SEND_JOB
from npsd.kit import jobs
from npsd.kit.jobs import JobInfo, Worker, enqueue
from npsd.kit.models import Invitation, Job
from npsd.kit.telemetry import JOB_OUTCOMES

LEASE = 2.0  # seconds, for the subprocess workers
SLEEP_JOB = "test.faults.sleep"
runs: list[tuple[str, str, float]] = []  # (job id, thread name, started) of every SLEEP_JOB run


@jobs.handler(SLEEP_JOB)
def _sleep(db: Any, job: JobInfo) -> None:
    runs.append((job.id, threading.current_thread().name, time.monotonic()))
    time.sleep(float(job.payload["seconds"]))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fdb(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    with fresh_database(request.param) as tdb:
        yield tdb


def job_rows(tdb: TestDatabase, ids: list[str]) -> dict[str, Job]:
    with tdb.db.transaction(write=False) as session:
        return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}


def test_invitations_of_a_worker_killed_mid_send_are_mailed_once_within_a_few_leases(
    fdb: TestDatabase,
) -> None:
    """On both databases: on SQLite too, a server and `npsd worker` processes share one queue."""
    tenant = make_tenant(fdb)
    with TestClient(create_app(fdb.settings, fdb.db), raise_server_exceptions=False) as client:
        survey = make_survey(client, tenant)
        addresses = [unique_email("lease") for _ in range(6)]
        results = invite(client, tenant, survey["id"], [{"email": a} for a in addresses])
    invitation_ids = [r["invitationId"] for r in results]
    with fdb.db.transaction(write=False) as session:
        job_ids = list(
            session.scalars(
                select(Job.id).where(Job.dedupe_key.in_([f"{SEND_JOB}:{i}" for i in invitation_ids]))
            )
        )
    assert len(job_ids) == len(addresses)
    env = {"NPSD_JOB_LEASE_SECONDS": str(LEASE), "NPSD_WORKER_POLL_SECONDS": "0.2"}
    with holding_smtp() as (sink, smtp_url):
        sink.hold.set()
        first = npsd("worker", database=fdb, NPSD_SMTP_URL=smtp_url, **env)
        second = npsd("worker", database=fdb, NPSD_SMTP_URL=smtp_url, **env)
        try:
            # both workers mid-send: each has its mail threads in the DATA phase, held there
            wait_for(
                lambda: sink.held >= 2 * jobs.DEFAULT_POOL_THREADS, 60, "both workers to reach the DATA phase"
            )
            held = {
                j.id
                for j in job_rows(fdb, job_ids).values()
                if j.status == "running" and f":{first.pid}:" in (j.locked_by or "")
            }
            assert held, "the first worker holds the jobs it is sending"
            kill(first)  # mid-send: the SMTP server never acknowledged its messages
            killed_at = time.monotonic()
            wait_for(
                lambda: sink.aborted >= 1, 10, "the SMTP server to see the first worker's connection drop"
            )
            sink.hold.clear()
            wait_for(
                lambda: all(sink.count_to(a) >= 1 for a in addresses), 90, "every invitation to be mailed"
            )
            took = time.monotonic() - killed_at
            print(f"lease {LEASE:g} s: every invitation mailed {took:.1f} s after the kill")
            time.sleep(LEASE)  # room for a second, wrong delivery to show up
            assert {a: sink.count_to(a) for a in addresses} == dict.fromkeys(addresses, 1)
        finally:
            kill(first)
            kill(second)
    # the second worker took over within a few leases of the kill, where the old fixed
    # five-minute lease made it wait ~295 s
    assert took < 5 * LEASE + 10, took
    rows = job_rows(fdb, job_ids)
    assert {j.status for j in rows.values()} == {"done"}
    assert {rows[i].attempts for i in held} == {2}  # claimed by the dead worker, then taken over
    with fdb.db.transaction(write=False) as session:
        statuses = set(session.scalars(select(Invitation.status).where(Invitation.id.in_(invitation_ids))))
    assert statuses == {"sent"}


def test_a_job_longer_than_its_lease_is_never_taken_over_while_its_worker_lives(fdb: TestDatabase) -> None:
    lease = 1.0
    with fdb.db.transaction() as session:
        job_id = enqueue(session, SLEEP_JOB, {"seconds": 4 * lease})
    done_before = JOB_OUTCOMES.labels(SLEEP_JOB, "done")._value.get()
    runs.clear()
    holder = Worker(fdb.db, poll_seconds=0.1, lease_seconds=lease)
    rival = Worker(fdb.db, poll_seconds=0.1, lease_seconds=lease)
    holder.start()
    try:
        first = wait_for(lambda: job_rows(fdb, [job_id]).get(job_id), 5, "the job row")
        wait_for(lambda: runs, 10, "the holder to start the job")
        claimed = job_rows(fdb, [job_id])[job_id]
        assert claimed.status == "running" and claimed.locked_by == holder.worker_id
        assert claimed.locked_until is not None
        first_lease_end: datetime = claimed.locked_until
        rival.start()  # polls every 0.1 s and would take the job over the moment its lease ran out
        renewed = wait_for(
            lambda: (
                (row := job_rows(fdb, [job_id])[job_id]).status == "running"
                and row.locked_until is not None
                and row.locked_until > first_lease_end
                and row
            ),
            10,
            "the lease to be renewed",
        )
        assert renewed.locked_by == holder.worker_id
        wait_for(lambda: job_rows(fdb, [job_id])[job_id].status == "done", 30, "the job to finish")
    finally:
        holder.stop()
        rival.stop()
    assert first.kind == SLEEP_JOB
    assert [r[0] for r in runs] == [job_id]  # ran once, by the holder, for four leases
    final = job_rows(fdb, [job_id])[job_id]
    assert final.attempts == 1
    assert holder.heartbeat.renewals >= 3
    assert JOB_OUTCOMES.labels(SLEEP_JOB, "done")._value.get() == done_before + 1
    with fdb.db.transaction() as session:
        session.execute(delete(Job).where(Job.kind == SLEEP_JOB))
