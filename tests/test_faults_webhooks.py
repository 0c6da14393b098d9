"""A hanging webhook receiver stalls nobody (#11, coordination faults).

Before: the worker ran claimed jobs one after another and waited up to 10 s per attempt, so with
one receiver holding each request for 30 s, 58 events to a healthy receiver waited more than ten
minutes. Now deliveries run on threads of their own with short timeouts, at most
``NPSD_WEBHOOK_PER_ENDPOINT`` at once per receiver host, and a receiver that keeps failing is
backed off on its own: its circuit opens, one probe delivery keeps trying, the others wait.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from select import select as wait_readable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from conftest import TestDatabase, make_tenant
from faults import fresh_database, wait_for
from npsd.app import create_app
from npsd.kit import events, jobs
from npsd.kit.db import Database
from npsd.kit.jobs import JobInfo, Worker, enqueue, run_pending
from npsd.kit.models import Job, Webhook, WebhookDelivery
from npsd.kit.telemetry import JOB_OUTCOMES, WEBHOOK_DELIVERIES
from npsd.kit.timeutil import utcnow

HOLD = 60.0  # seconds the hanging receiver keeps each request (the read timeout is far shorter)
READ_TIMEOUT = 1.0
CIRCUIT_FAILURES = 3
PER_ENDPOINT = 2
EVENTS = 50
PING_JOB = "test.faults.ping"
pings: list[float] = []


@jobs.handler(PING_JOB)
def _ping(db: Any, job: JobInfo) -> None:
    pings.append(time.monotonic())


class Receiver:
    """A real HTTP receiver on a free port; ``hold`` seconds before each answer (0: at once)."""

    def __init__(self, hold: float = 0.0, statuses: list[int] | None = None) -> None:
        self.hold = hold
        self.statuses = list(statuses or [])  # answers to the first requests, then 200
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.arrivals.append(time.monotonic())
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                try:
                    if receiver.hold and not self.held():
                        return  # npsd gave up waiting and closed the connection
                    with receiver.lock:
                        status = receiver.statuses.pop(0) if receiver.statuses else 200
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # npsd gave up waiting and closed the connection
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1

            def held(self) -> bool:
                """Hold the request; False as soon as the client has closed its connection."""
                deadline = time.monotonic() + receiver.hold
                while not receiver.released.is_set() and time.monotonic() < deadline:
                    readable, _, _ = wait_readable([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return False
                return True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/{secrets.token_hex(4)}"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fdb(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    with fresh_database(request.param) as tdb:
        yield tdb


def create_hook(client: TestClient, headers: dict[str, str], url: str) -> str:
    r = client.post("/v1/webhooks", json={"url": url, "events": ["response.created"]}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def emit(tdb: TestDatabase, org_id: str, n: int) -> None:
    objects = [{"_id": secrets.token_hex(12), "score": i % 11, "campaignId": None} for i in range(n)]
    with tdb.db.transaction() as session:
        events.emit(session, org_id, "response.created", objects)


def test_a_hanging_receiver_delays_no_one_and_is_backed_off(fdb: TestDatabase) -> None:
    hanging, healthy_same, healthy_other = Receiver(hold=HOLD), Receiver(), Receiver()
    org, other = make_tenant(fdb), make_tenant(fdb)
    with TestClient(create_app(fdb.settings, fdb.db), raise_server_exceptions=False) as client:
        hanging_id = create_hook(client, org.admin, hanging.url)
        create_hook(client, org.admin, healthy_same.url)
        create_hook(client, other.admin, healthy_other.url)
    emit(fdb, org.org_id, EVENTS)  # to the hanging receiver and the healthy one of the same org
    emit(fdb, other.org_id, EVENTS)
    with fdb.db.transaction() as session:  # a job of another kind, due after every delivery
        enqueue(session, PING_JOB, {})
    settings = fdb.settings.model_copy(
        update={
            "webhook_read_timeout": READ_TIMEOUT,
            "webhook_connect_timeout": 1.0,
            "webhook_circuit_failures": CIRCUIT_FAILURES,
            "webhook_per_endpoint": PER_ENDPOINT,
            "webhook_concurrency": 8,
        }
    )
    db = Database(fdb.url, pool_size=5, settings=settings)
    deferred_before = JOB_OUTCOMES.labels(events.DELIVERY_JOB, "deferred")._value.get()
    failed_before = WEBHOOK_DELIVERIES.labels("failed")._value.get()
    pings.clear()
    worker = Worker(db, poll_seconds=0.1, lease_seconds=10)
    started = time.monotonic()
    worker.start()
    try:
        wait_for(lambda: pings, 30, "the job of another kind to run")
        other_kind_after = pings[0] - started
        wait_for(
            lambda: healthy_same.count() >= EVENTS and healthy_other.count() >= EVENTS,
            HOLD,
            "every event at the healthy receivers",
        )
        healthy_after = time.monotonic() - started
        tried_meanwhile = hanging.count()
        # later, the hanging receiver is backed off: its circuit opens and a probe keeps trying
        hook = wait_for(
            lambda: (h := webhook(fdb, hanging_id)).circuit_opened_at is not None and h,
            30,
            "the hanging receiver's circuit to open",
        )
        wait_for(
            lambda: JOB_OUTCOMES.labels(events.DELIVERY_JOB, "deferred")._value.get() - deferred_before >= 30,
            30,
            "the hanging receiver's other deliveries to wait",
        )
        requests_when_open = hanging.count()
        time.sleep(2 * READ_TIMEOUT)
        requests_later = hanging.count()
    finally:
        worker.stop(timeout=10)  # attempts under way end within the read timeout, recorded
        db.dispose()
        for r in (hanging, healthy_same, healthy_other):
            r.stop()
    requests_in_all = hanging.count()
    print(
        f"healthy receivers done after {healthy_after:.1f} s, another job kind after {other_kind_after:.1f} s,"
        f" hanging receiver tried {requests_later} times (hold {HOLD:g} s)"
    )
    # every healthy delivery arrived in a small fraction of one hanging request's hold
    assert healthy_after < HOLD / 4, healthy_after
    assert other_kind_after < HOLD / 4, other_kind_after
    assert healthy_same.count() == healthy_other.count() == EVENTS  # once each
    # ... while the hanging receiver was being tried, never more than the bound at once
    assert tried_meanwhile >= 1
    assert 1 <= hanging.most_in_flight <= PER_ENDPOINT
    # backed off: CIRCUIT_FAILURES failed in a row, one probe, the other deliveries unattempted
    assert hook.consecutive_failures >= CIRCUIT_FAILURES
    assert hook.failing_since is not None and hook.probe_delivery_id is not None
    assert hook.next_probe_at is not None
    assert requests_later - requests_when_open <= PER_ENDPOINT  # only attempts already under way
    with fdb.db.transaction(write=False) as session:
        untried = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == hanging_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == 0,
            )
        )
        attempts = session.scalar(
            select(func.sum(WebhookDelivery.attempts)).where(WebhookDelivery.webhook_id == hanging_id)
        )
        waiting = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.kind == events.DELIVERY_JOB, Job.status == "queued", Job.last_error.startswith("waiting:")
            )
        )
    assert untried is not None and untried >= EVENTS - 2 * CIRCUIT_FAILURES
    assert attempts == requests_in_all  # each request to it is one recorded attempt
    assert waiting is not None and waiting >= 30
    assert WEBHOOK_DELIVERIES.labels("failed")._value.get() - failed_before >= CIRCUIT_FAILURES
    with TestClient(create_app(fdb.settings, fdb.db), raise_server_exceptions=False) as client:
        shown = client.get(f"/v1/webhooks/{hanging_id}", headers=org.admin).json()["health"]
    assert shown["circuitOpen"] is True and shown["consecutiveFailures"] >= CIRCUIT_FAILURES
    assert shown["failingSince"] and shown["nextProbeAt"]
    with fdb.db.transaction() as session:
        session.execute(delete(Webhook).where(Webhook.org_id.in_([org.org_id, other.org_id])))
        session.execute(delete(Job).where(Job.kind.in_([events.DELIVERY_JOB, PING_JOB])))


def webhook(tdb: TestDatabase, hook_id: str) -> Webhook:
    with tdb.db.transaction(write=False) as session:
        return session.get_one(Webhook, hook_id)


def test_a_probe_that_succeeds_closes_the_circuit_and_the_waiting_deliveries_go_out(
    fdb: TestDatabase,
) -> None:
    receiver = Receiver(statuses=[500] * CIRCUIT_FAILURES)
    org = make_tenant(fdb)
    with TestClient(create_app(fdb.settings, fdb.db), raise_server_exceptions=False) as client:
        hook_id = create_hook(client, org.admin, receiver.url)
    emit(fdb, org.org_id, 10)
    db = Database(
        fdb.url,
        pool_size=2,
        settings=fdb.settings.model_copy(update={"webhook_circuit_failures": CIRCUIT_FAILURES}),
    )

    def due_now() -> None:
        with fdb.db.transaction() as session:
            session.execute(
                update(Job)
                .where(Job.org_id == org.org_id, Job.kind == events.DELIVERY_JOB, Job.status == "queued")
                .values(run_at=utcnow())
            )

    try:
        run_pending(db)  # three fail in a row: the circuit opens, the third delivery probes
        hook = webhook(fdb, hook_id)
        assert hook.circuit_opened_at is not None and hook.consecutive_failures == CIRCUIT_FAILURES
        assert receiver.count() == CIRCUIT_FAILURES  # the other seven waited, unattempted
        due_now()
        run_pending(db)  # the first two wait again; the probe succeeds and those behind it go out
        hook = webhook(fdb, hook_id)
        assert hook.circuit_opened_at is None and hook.consecutive_failures == 0
        assert hook.probe_delivery_id is None and hook.failing_since is None
        run_pending(db)  # the two that waited were made due when the circuit closed
    finally:
        db.dispose()
        receiver.stop()
    with fdb.db.transaction(write=False) as session:
        rows = session.execute(
            select(WebhookDelivery.status, WebhookDelivery.attempts).where(
                WebhookDelivery.webhook_id == hook_id
            )
        ).all()
    assert sorted(attempts for _, attempts in rows) == [1] * 7 + [2] * CIRCUIT_FAILURES  # waits never counted
    assert {status for status, _ in rows} == {"succeeded"}
    assert receiver.count() == 10 + CIRCUIT_FAILURES
    with fdb.db.transaction() as session:
        session.execute(delete(Webhook).where(Webhook.org_id == org.org_id))


def test_the_limiter_bounds_each_receiver_and_each_organization(fdb: TestDatabase) -> None:
    """The bounds the worker's delivery threads share: per receiver host and per organization."""
    from npsd.webhooks.delivery import Limiter, endpoint_of

    settings = fdb.settings.model_copy(update={"webhook_per_endpoint": 2, "webhook_per_org": 3})
    limiter = Limiter()
    a, b = endpoint_of("http://127.0.0.1:9001/x"), endpoint_of("http://127.0.0.1:9002/y")
    assert a == endpoint_of("http://127.0.0.1:9001/other-path") != b
    assert [limiter.acquire(a, "org1", settings) for _ in range(3)] == [True, True, False]
    assert limiter.acquire(b, "org1", settings) is True
    assert limiter.acquire(b, "org1", settings) is False  # org1 has 3 in flight
    assert limiter.acquire(b, "org2", settings) is True  # another organization is not held back
    limiter.release(a, "org1")
    assert limiter.in_flight(a) == 1 and limiter.acquire(a, "org1", settings) is True
