"""GET /metrics (#11, seeing its health) through the real app on both databases: requests by
route template, method and status with their latency; the job queue read from the job table;
mails counted through a real SMTP server; who may scrape; and the log redaction safety net.

Counters are process-wide, so every assertion compares two scrapes around the requests made in
between and checks the change, not an absolute value.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from conftest import Tenant, TestDatabase, assert_error
from mail_helpers import Sink, invite, make_survey, run_jobs, unique_email
from npsd.app import create_app
from npsd.auth.deps import Viewer
from npsd.kit import events, logs
from npsd.kit.jobs import enqueue, run_pending
from npsd.kit.models import Job, Webhook
from npsd.kit.timeutil import utcnow
from test_webhooks import Receiver

METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(24)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def open_metrics(database: TestDatabase) -> Iterator[TestClient]:
    """The app with NPSD_METRICS=true (no token) on the test database."""
    settings = database.settings.model_copy(update={"metrics": True})
    with TestClient(create_app(settings, database.db), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def guarded_metrics(database: TestDatabase) -> Iterator[TestClient]:
    """The app with NPSD_METRICS_TOKEN set (and NPSD_METRICS=true too: the token still wins)."""
    settings = database.settings.model_copy(update={"metrics": True, "metrics_token": METRICS_TOKEN})
    with TestClient(create_app(settings, database.db), raise_server_exceptions=False) as c:
        yield c


def scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return parse(r.text)


def test_requests_are_counted_by_route_template_method_and_status(
    open_metrics: TestClient, tenant: Tenant
) -> None:
    before = scrape(open_metrics)
    unknown_ids = [secrets.token_hex(12) for _ in range(3)]  # well-formed ids of nothing
    for record_id in unknown_ids:
        r = open_metrics.get(f"/nps/{record_id}", headers=tenant.viewer)
        assert_error(r, 404)
    assert open_metrics.get("/healthz").status_code == 200
    assert open_metrics.get("/no/such/page").status_code == 404
    assert open_metrics.get("/nps", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    r = open_metrics.get("/metrics")
    text = r.text
    after = parse(text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("npsd_http_requests_total", route="/nps/{key}", method="GET", status="404") == 3
    assert delta("npsd_http_requests_total", route="/healthz", method="GET", status="200") == 1
    assert delta("npsd_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("npsd_http_requests_total", route="/nps", method="GET", status="401") == 1
    # the latency histogram saw the same three requests, and each fell into some bucket
    assert delta("npsd_http_request_duration_seconds_count", route="/nps/{key}", method="GET") == 3
    assert (
        delta("npsd_http_request_duration_seconds_bucket", route="/nps/{key}", method="GET", le="+Inf") == 3
    )
    assert delta("npsd_http_request_duration_seconds_sum", route="/nps/{key}", method="GET") > 0
    # raw paths never become labels
    for record_id in unknown_ids:
        assert record_id not in text
    assert "/no/such/page" not in text


def test_the_queue_is_read_from_the_job_table_by_kind(
    open_metrics: TestClient, database: TestDatabase
) -> None:
    kind = f"test.metrics.{secrets.token_hex(4)}"
    now = utcnow()
    with database.db.transaction() as session:
        for age in (300, 30):  # two due jobs, the oldest waiting five minutes
            enqueue(session, kind, {}, run_at=now - timedelta(seconds=age))
        enqueue(session, kind, {}, run_at=now + timedelta(hours=1))  # queued, not yet due
    try:
        samples = scrape(open_metrics)
        assert value(samples, "npsd_job_queue_depth", kind=kind) == 3
        assert value(samples, "npsd_job_queue_due", kind=kind) == 2
        oldest = value(samples, "npsd_job_queue_oldest_due_age_seconds", kind=kind)
        assert 300 <= oldest < 300 + 600, oldest  # generous: a loaded machine may be slow
        assert value(samples, "npsd_db_pool_size") >= 1
        assert ("npsd_db_pool_checked_out", frozenset()) in samples
    finally:
        with database.db.transaction() as session:
            session.execute(delete(Job).where(Job.kind == kind))
    samples = scrape(open_metrics)
    assert ("npsd_job_queue_depth", frozenset({("kind", kind)})) not in samples


def test_mails_and_job_outcomes_are_counted(
    open_metrics: TestClient, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """Two invitations accepted by a real SMTP server and one refused for good (550). The job
    run may also send other tests' due leftovers, so ``sent`` is compared with what the server
    received meanwhile, not with 2."""
    smtp.refuse["bounce"] = "550 5.1.1 no such user"
    survey = make_survey(open_metrics, tenant)
    good = [unique_email("ok") for _ in range(2)]
    bad = unique_email("bounce")
    invite(open_metrics, tenant, survey["id"], [{"email": address} for address in [*good, bad]])
    before = scrape(open_metrics)
    received_before = len(smtp.received)
    run_jobs(database.db)
    after = scrape(open_metrics)
    assert all(len(smtp.to(address)) == 1 for address in good)
    assert smtp.to(bad) == []

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("npsd_mails_total", outcome="sent") == len(smtp.received) - received_before >= 2
    assert delta("npsd_mails_total", outcome="failed") >= 1
    # the worker counts each job run by kind and outcome (a refused address settles the job too)
    assert delta("npsd_jobs_total", kind="invitation.send", outcome="done") >= 3


def test_webhook_delivery_attempts_are_counted(
    open_metrics: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    receiver = Receiver(answers=[200, 500])
    receiver.start()
    try:
        r = open_metrics.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["response.created"]}, headers=tenant.admin
        )
        assert r.status_code == 201, r.text
        before = scrape(open_metrics)
        with database.db.transaction() as session:
            events.emit(session, tenant.org_id, "response.created", [{"score": 9}, {"score": 3}])
        run_pending(database.db)
        after = scrape(open_metrics)
        assert len(receiver.received()) == 2
        for outcome in ("succeeded", "failed"):
            grew = value(after, "npsd_webhook_delivery_attempts_total", outcome=outcome) - value(
                before, "npsd_webhook_delivery_attempts_total", outcome=outcome
            )
            assert grew >= 1, outcome
    finally:
        receiver.stop()
        with database.db.transaction() as session:
            session.execute(delete(Webhook).where(Webhook.org_id == tenant.org_id))


def test_every_counter_family_is_exposed(open_metrics: TestClient) -> None:
    """Job outcomes and webhook deliveries are counted by the worker and the delivery job
    (kit/jobs.py, webhooks/delivery.py); their families are declared whatever has run."""
    families = {family.name for family in text_string_to_metric_families(open_metrics.get("/metrics").text)}
    for family in (
        "npsd_http_requests",
        "npsd_http_request_duration_seconds",
        "npsd_http_header_timeouts",
        "npsd_jobs",
        "npsd_webhook_delivery_attempts",
        "npsd_mails",
        "npsd_export_fallbacks",
        "npsd_job_queue_depth",
        "npsd_job_queue_due",
        "npsd_job_queue_oldest_due_age_seconds",
        "npsd_jobs_running",
        "npsd_db_pool_size",
        "npsd_db_pool_checked_out",
    ):
        assert family in families, family


def test_metrics_are_off_by_default(client: TestClient, open_metrics: TestClient) -> None:
    assert_error(client.get("/metrics"), 404)
    # when on, an operator's endpoint: not in the API's OpenAPI document
    routes = [route for route in open_metrics.app.routes if getattr(route, "path", None) == "/metrics"]  # type: ignore[attr-defined]
    assert len(routes) == 1 and routes[0].include_in_schema is False  # type: ignore[attr-defined]


def test_a_metrics_token_guards_the_endpoint(guarded_metrics: TestClient, tenant: Tenant) -> None:
    assert_error(guarded_metrics.get("/metrics"), 401)
    assert guarded_metrics.get("/metrics").headers["www-authenticate"] == "Bearer"
    assert_error(guarded_metrics.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    # an API token, even an admin's, is not the metrics token
    assert_error(guarded_metrics.get("/metrics", headers=tenant.admin), 401)
    samples = scrape(guarded_metrics, Authorization=f"Bearer {METRICS_TOKEN}")
    assert value(samples, "npsd_http_requests_total", route="/metrics", method="GET", status="401") >= 4


# ------------------------------------------------------------------------------ the redaction net


def test_redaction_masks_secrets_wherever_they_appear() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"
    lines = {
        f"Authorization: Bearer {jwt}": jwt,
        "headers={'authorization': 'Basic dXNlcjpwYXNzd29yZA=='}": "dXNlcjpwYXNzd29yZA==",
        'login body {"email": "a@b.c", "password": "Tr0ub4dor&3"}': "Tr0ub4dor&3",
        "connecting to postgresql://npsd:s3cr3t-pw@db:5432/npsd": "s3cr3t-pw",
        "GET /r/AbCdEf0123456789xyz?score=9": "AbCdEf0123456789xyz",
        "unsubscribe /u/Zz9Yy8Xx7Ww6Vv5": "Zz9Yy8Xx7Ww6Vv5",
        "token=abcdef123456&x=1": "abcdef123456",
        "the configured key is configured-secret-value-1": "configured-secret-value-1",
    }
    for line, secret in lines.items():
        masked = logs.redact(line, ["configured-secret-value-1"])
        assert secret not in masked, masked
        assert logs.MASK in masked
    # ordinary words stay
    assert logs.redact("basic settings for the survey") == "basic settings for the survey"


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    record_filter = logs.RedactFilter(["hunter2-secret-key"])
    formatter = logs.JsonFormatter()
    try:
        raise RuntimeError("failed with key hunter2-secret-key")
    except RuntimeError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "npsd.test", logging.ERROR, __file__, 1, "using %s", ("hunter2-secret-key",), exc_info
    )
    assert record_filter.filter(record)
    line: dict[str, Any] = orjson.loads(formatter.format(record))
    assert "hunter2-secret-key" not in orjson.dumps(line).decode()
    assert line["message"] == "using ***" and "RuntimeError" in line["exception"]


def test_records_written_during_a_request_carry_its_id_and_organization(
    database: TestDatabase, tenant: Tenant
) -> None:
    """Any record written while a request runs (here in a sync route, on a worker thread) carries
    the request's id and, once authenticated, its organization; records outside carry neither."""
    app = create_app(database.settings, database.db)

    @app.get("/test-logging-in-a-request")
    def logs_something(principal: Viewer) -> dict[str, str]:
        logging.getLogger("npsd.test").warning("inside the request of %s", principal.role)
        return {"ok": "yes"}

    @app.get("/test-failing-in-a-request")
    def fails(principal: Viewer) -> None:
        raise RuntimeError(f"boom near the signing key {database.settings.secret_key}")

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RedactFilter(logs.secrets_of(database.settings)))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            failed = c.get(
                "/test-failing-in-a-request", headers={**tenant.viewer, "X-Request-Id": "failing-id-2"}
            )
            r = c.get(
                "/test-logging-in-a-request", headers={**tenant.viewer, "X-Request-Id": "caller-chosen-id-1"}
            )
        logging.getLogger("npsd.test").warning("outside any request")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "caller-chosen-id-1"
    records = [orjson.loads(line) for line in lines]
    inside = [x for x in records if x["message"] == "inside the request of viewer"]
    assert len(inside) == 1
    assert inside[0]["requestId"] == "caller-chosen-id-1" and inside[0]["orgId"] == tenant.org_id
    access = [
        x for x in records if x["logger"] == "npsd.access" and x.get("requestId") == "caller-chosen-id-1"
    ]
    assert len(access) == 1 and access[0]["route"] == "/test-logging-in-a-request"
    assert access[0]["status"] == 200 and access[0]["orgId"] == tenant.org_id
    outside = [x for x in records if x["message"] == "outside any request"]
    assert len(outside) == 1 and "requestId" not in outside[0] and "orgId" not in outside[0]
    assert all(token not in line for line in lines for token in tenant.tokens.values())
    # an unhandled error: a 500 in the one shape, logged with its request and without the secret
    assert assert_error(failed, 500)["requestId"] == "failing-id-2"
    errors = [x for x in records if x["message"].startswith("unhandled error")]
    assert len(errors) == 1 and errors[0]["requestId"] == "failing-id-2", errors
    assert "RuntimeError: boom near the signing key ***" in errors[0]["exception"]
    assert all(str(database.settings.secret_key) not in line for line in lines)
    assert [
        x["status"] for x in records if x.get("requestId") == "failing-id-2" and x["logger"] == "npsd.access"
    ] == [500]
