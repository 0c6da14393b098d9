"""``/v1/webhooks``: subscriptions, signed deliveries to a real HTTP receiver, retries, SSRF guard.

Signatures are checked with the independent ``standardwebhooks`` package. Jobs run when the test
calls ``run_pending`` (the test app has no worker thread); a retry is made due by moving its
``run_at``, never by waiting.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, func, select, update
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import Tenant, TestDatabase, assert_error, make_tenant
from npsd.app import create_app
from npsd.kit import events
from npsd.kit.db import Database
from npsd.kit.jobs import run_pending
from npsd.kit.models import Job, Webhook, WebhookDelivery
from npsd.kit.timeutil import utcnow

ALL_EVENTS = [
    "response.created",
    "response.updated",
    "response.deleted",
    "invitation.failed",
    "unsubscribe.created",
]
# The write paths of /nps call events.emit once the lead wires them; until then these are expected to fail.


# ------------------------------------------------------------------------------------ the receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on a free loopback port that records the POSTs made to its own path.

    ``answers`` are the statuses to reply with, one per request (then 200); a tuple
    ``(status, headers)`` adds headers. Requests to other paths get 404 and are not recorded, so a
    stray retry from another test that lands on a reused port cannot pollute this one.
    """

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    answers: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def path(self) -> str:
        return f"/hook/{self.token}"

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if self.path != receiver.path:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                status, extra = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _drop_webhooks(database: TestDatabase, tenant: Tenant, other: Tenant) -> Iterator[None]:
    """Leave no webhook behind: queued retries of this test then find nothing to send later."""
    yield
    with database.db.transaction() as session:
        session.execute(delete(Webhook).where(Webhook.org_id.in_([tenant.org_id, other.org_id])))


# ------------------------------------------------------------------------------------------ helpers


def create_hook(
    client: TestClient, tenant: Tenant, url: str, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    r = client.post(
        "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS, **extra}, headers=tenant.admin
    )
    assert r.status_code == 201, r.text
    return r.json()


def emit(database: TestDatabase, org_id: str, event_type: str, objects: list[dict[str, Any]]) -> int:
    with database.db.transaction() as session:
        return events.emit(session, org_id, event_type, objects)


def deliveries(client: TestClient, tenant: Tenant, hook_id: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get(
        f"/v1/webhooks/{hook_id}/deliveries", params={"limit": 100, **params}, headers=tenant.admin
    )
    assert r.status_code == 200, r.text
    return r.json()


def verify(secret: str, request: Received) -> Any:
    """The body, checked by the independent Standard Webhooks implementation."""
    return StandardWebhook(secret).verify(request.body, request.headers)


def make_due(database: TestDatabase, org_id: str) -> None:
    """Move this organization's queued webhook jobs to now, instead of waiting for the backoff."""
    with database.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.org_id == org_id, Job.kind == events.DELIVERY_JOB, Job.status == "queued")
            .values(run_at=utcnow() - timedelta(seconds=1))
        )


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z"))


def record(**extra: Any) -> dict[str, Any]:
    return {
        "_id": secrets.token_hex(12),
        "email": f"u-{secrets.token_hex(4)}@example.com",
        "score": 9,
        "campaignId": None,
        **extra,
    }


# ---------------------------------------------------------------------------------------------- CRUD


def test_create_shows_secret_once(client: TestClient, tenant: Tenant, receiver: Receiver) -> None:
    hook = create_hook(
        client,
        tenant,
        receiver.url,
        ["response.created", "response.deleted"],
        surveyIds=["s-1"],
        description="CRM sync",
    )
    assert hook["url"] == receiver.url
    assert hook["events"] == ["response.created", "response.deleted"]
    assert hook["surveyIds"] == ["s-1"]
    assert hook["description"] == "CRM sync"
    assert hook["isActive"] is True
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) >= 24
    assert hook["createdAt"].endswith("Z")
    again = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.admin)
    assert again.status_code == 200
    assert "secret" not in again.json()
    assert again.json() == {k: v for k, v in hook.items() if k != "secret"}
    listed = client.get("/v1/webhooks", headers=tenant.admin)
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "1"
    assert [h["id"] for h in listed.json()] == [hook["id"]]
    assert "secret" not in listed.json()[0]
    # every webhook has its own secret
    second = create_hook(client, tenant, receiver.url)
    assert second["secret"] != hook["secret"]
    assert [h["id"] for h in client.get("/v1/webhooks", headers=tenant.admin).json()] == [
        second["id"],
        hook["id"],
    ]


def test_only_admins(client: TestClient, tenant: Tenant, receiver: Receiver) -> None:
    hook = create_hook(client, tenant, receiver.url)
    body = {"url": receiver.url, "events": ["response.created"]}
    for role in ("editor", "viewer"):
        headers = tenant.headers(role)
        assert_error(client.post("/v1/webhooks", json=body, headers=headers), 403)
        assert_error(client.get("/v1/webhooks", headers=headers), 403)
        assert_error(client.get(f"/v1/webhooks/{hook['id']}", headers=headers), 403)
        assert_error(
            client.patch(f"/v1/webhooks/{hook['id']}", json={"isActive": False}, headers=headers), 403
        )
        assert_error(client.delete(f"/v1/webhooks/{hook['id']}", headers=headers), 403)
        assert_error(client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=headers), 403)
        assert_error(client.post(f"/v1/webhooks/{hook['id']}/test", headers=headers), 403)
    assert_error(client.get("/v1/webhooks"), 401)
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.admin).json()["isActive"] is True


def test_bad_input_is_400_naming_the_field(client: TestClient, tenant: Tenant, receiver: Receiver) -> None:
    ok = {"url": receiver.url, "events": ["response.created"]}
    cases: list[tuple[Any, str]] = [
        ({**ok, "secret": "whsec_mine"}, "secret"),
        ({**ok, "bogus": 1}, "bogus"),
        ({"events": ["response.created"]}, "url"),
        ({"url": receiver.url}, "events"),
        ({**ok, "events": []}, "events"),
        ({**ok, "events": ["response.exploded"]}, "events"),
        ({**ok, "events": "response.created"}, "events"),
        ({**ok, "url": "ftp://example.com/x"}, "url"),
        ({**ok, "url": "not a url"}, "url"),
        ({**ok, "url": "http://"}, "url"),
        ({**ok, "url": "http://example.com:99999/"}, "url"),
        ({**ok, "url": "http://exa\x00mple.com/"}, "url"),
        ({**ok, "url": "https://example.com/" + "a" * 3000}, "url"),
        ({**ok, "url": 12}, "url"),
        ({**ok, "surveyIds": []}, "surveyIds"),
        ({**ok, "surveyIds": "abc"}, "surveyIds"),
        ({**ok, "surveyIds": ["x" * 65]}, "surveyIds"),
        ({**ok, "description": "d" * 501}, "description"),
        ({**ok, "isActive": "yes"}, "isActive"),
        ([ok], "body"),
    ]
    for body, name in cases:
        assert_error(client.post("/v1/webhooks", json=body, headers=tenant.admin), 400, name)
    assert_error(
        client.post(
            "/v1/webhooks", content=b"{nope", headers={**tenant.admin, "content-type": "application/json"}
        ),
        400,
    )
    hook = create_hook(client, tenant, receiver.url)
    for body, name in [
        ({"url": None}, "url"),
        ({"events": None}, "events"),
        ({"isActive": None}, "isActive"),
        ({"events": []}, "events"),
        ({"id": "x"}, "id"),
        ({"url": "gopher://x"}, "url"),
    ]:
        assert_error(client.patch(f"/v1/webhooks/{hook['id']}", json=body, headers=tenant.admin), 400, name)
    assert_error(client.get("/v1/webhooks/not-an-id", headers=tenant.admin), 400, "id")
    assert_error(client.get("/v1/webhooks/" + "0" * 24, headers=tenant.admin), 404)
    assert_error(client.get("/v1/webhooks", params={"limit": 0}, headers=tenant.admin), 400, "limit")
    assert_error(client.get("/v1/webhooks", params={"page": "x"}, headers=tenant.admin), 400, "page")
    base = f"/v1/webhooks/{hook['id']}/deliveries"
    assert_error(client.get(base, params={"status": "lost"}, headers=tenant.admin), 400, "status")
    assert_error(client.get(base, params={"eventType": "x"}, headers=tenant.admin), 400, "eventType")
    assert_error(client.get(base, params={"limit": 101}, headers=tenant.admin), 400, "limit")
    # nothing of the refused input was stored
    assert client.get("/v1/webhooks", headers=tenant.admin).headers["X-Total-Count"] == "1"
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.admin).json()["url"] == receiver.url


def test_patch_and_delete(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created"], surveyIds=["a", "b"])
    other_url = receiver.url + "/v2"
    r = client.patch(
        f"/v1/webhooks/{hook['id']}",
        headers=tenant.admin,
        json={
            "url": other_url,
            "events": ["response.updated", "response.updated"],
            "description": "new",
            "isActive": False,
        },
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["url"] == other_url
    assert patched["events"] == ["response.updated"]
    assert patched["surveyIds"] == ["a", "b"]
    assert patched["description"] == "new"
    assert patched["isActive"] is False
    assert "secret" not in patched
    assert patched["updatedAt"] >= hook["updatedAt"]
    cleared = client.patch(
        f"/v1/webhooks/{hook['id']}", json={"surveyIds": None, "description": None}, headers=tenant.admin
    ).json()
    assert cleared["surveyIds"] is None and cleared["description"] is None
    assert cleared["url"] == other_url
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.admin).json() == cleared

    # deleting takes the delivery history with it; the queued job then has nothing to send
    client.patch(
        f"/v1/webhooks/{hook['id']}", json={"isActive": True, "url": receiver.url}, headers=tenant.admin
    )
    assert emit(database, tenant.org_id, "response.updated", [record()]) == 1
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=tenant.admin).status_code == 204
    assert_error(client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.admin), 404)
    assert_error(client.delete(f"/v1/webhooks/{hook['id']}", headers=tenant.admin), 404)
    with database.db.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == hook["id"])
            )
            == 0
        )
    run_pending(database.db)
    assert receiver.received() == []


def test_tenant_isolation(
    client: TestClient, database: TestDatabase, tenant: Tenant, other: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url)
    path = f"/v1/webhooks/{hook['id']}"
    assert_error(client.get(path, headers=other.admin), 404)
    assert_error(client.patch(path, json={"isActive": False}, headers=other.admin), 404)
    assert_error(client.delete(path, headers=other.admin), 404)
    assert_error(client.get(path + "/deliveries", headers=other.admin), 404)
    assert_error(client.post(path + "/test", headers=other.admin), 404)
    assert client.get("/v1/webhooks", headers=other.admin).json() == []
    # events of the other organization never reach this webhook
    assert emit(database, other.org_id, "response.created", [record(), record()]) == 0
    assert emit(database, tenant.org_id, "response.created", [record()]) == 1
    run_pending(database.db)
    assert len(receiver.received()) == 1
    assert client.get(path, headers=tenant.admin).json()["isActive"] is True


# ------------------------------------------------------------------------------------------ delivery


def test_signed_delivery(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    objects = [record(score=10, comment="Great ✓"), record(score=3, custom={"plan": "pro"})]
    assert emit(database, tenant.org_id, "response.created", objects) == 2
    pending = deliveries(client, tenant, hook["id"])
    assert [d["status"] for d in pending] == ["pending", "pending"]
    assert all(d["attempts"] == [] and d["attemptCount"] == 0 for d in pending)
    run_pending(database.db)
    got = receiver.received()
    assert len(got) == 2
    bodies = [verify(hook["secret"], r) for r in got]
    assert sorted((b["data"] for b in bodies), key=lambda d: d["score"]) == [objects[1], objects[0]]
    for req, body in zip(got, bodies, strict=True):
        assert body["type"] == "response.created"
        assert parse(body["timestamp"]) <= utcnow()
        assert set(body) == {"type", "timestamp", "data"}
        assert req.headers["content-type"] == "application/json"
        assert req.headers["host"] == f"127.0.0.1:{receiver.port}"
        assert req.headers["webhook-signature"].startswith("v1,")
    done = deliveries(client, tenant, hook["id"])
    assert {d["id"] for d in done} == {r.headers["webhook-id"] for r in got}
    for d in done:
        assert d["status"] == "succeeded"
        assert d["attemptCount"] == 1
        assert d["lastStatusCode"] == 200 and d["lastError"] is None and d["nextAttemptAt"] is None
        assert d["eventType"] == "response.created"
        assert [(a["statusCode"], a["error"]) for a in d["attempts"]] == [(200, None)]
        assert d["attempts"][0]["durationMs"] >= 0
        assert d["payload"]["data"] in objects
    # the stored body is exactly what was signed and sent
    sent = {r.headers["webhook-id"]: r.body for r in got}
    with database.db.transaction(write=False) as session:
        for delivery_id, payload in session.execute(
            select(WebhookDelivery.id, WebhookDelivery.payload).where(
                WebhookDelivery.webhook_id == hook["id"]
            )
        ):
            assert sent[delivery_id] == payload.encode()
    # a wrong secret or a tampered body does not verify
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + base64.b64encode(b"x" * 32).decode(), got[0])
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(hook["secret"]).verify(got[0].body.replace(b'"score"', b'"Score"'), got[0].headers)
    # nothing more to do: a second run sends nothing again
    run_pending(database.db)
    assert len(receiver.received()) == 2


def test_host_name_target_keeps_host_header(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    """The connection goes to the checked address, but the receiver still sees its own host name."""
    url = f"http://localhost:{receiver.port}{receiver.path}"
    hook = create_hook(client, tenant, url, ["unsubscribe.created"])
    assert emit(database, tenant.org_id, "unsubscribe.created", [{"email": "a@example.com"}]) == 1
    run_pending(database.db)
    got = receiver.received()
    assert len(got) == 1
    assert got[0].headers["host"] == f"localhost:{receiver.port}"
    assert verify(hook["secret"], got[0])["data"] == {"email": "a@example.com"}


def test_event_and_survey_filters(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    everything = create_hook(client, tenant, receiver.url)
    updates_only = create_hook(client, tenant, receiver.url, ["response.updated"])
    survey_a = create_hook(
        client,
        tenant,
        receiver.url,
        ["response.created", "unsubscribe.created", "invitation.failed"],
        surveyIds=["sa"],
    )
    inactive = create_hook(client, tenant, receiver.url, ["response.created"])
    client.patch(f"/v1/webhooks/{inactive['id']}", json={"isActive": False}, headers=tenant.admin)

    objects = [record(campaignId="sa"), record(campaignId="sb"), record()]
    assert emit(database, tenant.org_id, "response.created", objects) == 3 + 1
    assert emit(database, tenant.org_id, "unsubscribe.created", [{"email": "x@example.com"}]) == 2
    assert (
        emit(
            database,
            tenant.org_id,
            "invitation.failed",
            [{"surveyId": "sb", "email": "y@example.com"}, {"surveyId": "sa", "email": "z@example.com"}],
        )
        == 3
    )
    assert emit(database, tenant.org_id, "response.deleted", []) == 0

    def seen(hook: dict[str, Any]) -> list[tuple[str, Any]]:
        return sorted(
            (
                d["eventType"],
                d["payload"]["data"].get("campaignId", d["payload"]["data"].get("email")) or "none",
            )
            for d in deliveries(client, tenant, hook["id"])
        )

    assert seen(everything) == [
        ("invitation.failed", "y@example.com"),
        ("invitation.failed", "z@example.com"),
        ("response.created", "none"),
        ("response.created", "sa"),
        ("response.created", "sb"),
        ("unsubscribe.created", "x@example.com"),
    ]
    assert seen(updates_only) == []
    assert seen(survey_a) == [
        ("invitation.failed", "z@example.com"),
        ("response.created", "sa"),
        ("unsubscribe.created", "x@example.com"),
    ]
    assert seen(inactive) == []
    run_pending(database.db)
    by_secret = {everything["id"]: everything["secret"], survey_a["id"]: survey_a["secret"]}
    ids = {d["id"]: hook_id for hook_id in by_secret for d in deliveries(client, tenant, hook_id)}
    got = receiver.received()
    assert len(got) == 9
    for req in got:
        verify(by_secret[ids[req.headers["webhook-id"]]], req)
    with pytest.raises(ValueError):
        emit(database, tenant.org_id, "response.exploded", [record()])


def test_emit_is_set_based(
    database: TestDatabase, tenant: Tenant, client: TestClient, receiver: Receiver
) -> None:
    """An organization without webhooks (or alert rules) costs one query (and one per record
    listener, kit/events.py); 5,000 objects cost a few statements, not 5,000."""

    def emitted(objects: list[dict[str, Any]]) -> tuple[int, list[str]]:
        """How many events ``emit`` queued, and the SQL statements it ran to do so."""
        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        with database.db.transaction() as session:
            session.connection()
            event.listen(database.db.engine, "before_cursor_execute", count)
            try:
                queued = events.emit(session, tenant.org_id, "response.created", objects)
            finally:
                event.remove(database.db.engine, "before_cursor_execute", count)
        return queued, statements

    objects = [record(campaignId="c") for _ in range(5000)]
    queued, statements = emitted(objects)
    assert queued == 0
    # the insights listener asks a setting, not the database (kit/events.py)
    querying = [lr for lr in events.RECORD_LISTENERS if lr.job_kind != events.INSIGHTS_ANALYSE_JOB]
    assert len(statements) == 1 + len(querying), statements
    assert all(s.lstrip().upper().startswith("SELECT") for s in statements), statements

    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    queued, statements = emitted(objects)
    assert queued == 5000
    assert len(statements) <= 25, len(statements)
    assert len(deliveries(client, tenant, hook["id"], limit=1)) == 1
    with database.db.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.org_id == tenant.org_id, Job.kind == events.DELIVERY_JOB)
            )
            == 5000
        )
        # don't make later tests deliver 5,000 events: drop them with the webhook
        session.execute(delete(Job).where(Job.org_id == tenant.org_id, Job.kind == events.DELIVERY_JOB))


def test_failing_receiver_is_retried_with_backoff(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers = [500, 200]
    hook = create_hook(client, tenant, receiver.url, ["response.updated"])
    assert emit(database, tenant.org_id, "response.updated", [record(score=4)]) == 1
    run_pending(database.db)
    assert len(receiver.received()) == 1
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "pending"
    assert d["attemptCount"] == 1
    assert d["lastStatusCode"] == 500
    assert d["lastError"] == "answered 500"
    [attempt] = d["attempts"]
    assert attempt["statusCode"] == 500 and attempt["error"] == "answered 500"
    assert parse(d["nextAttemptAt"]) - parse(attempt["attemptedAt"]) == events.RETRY_SCHEDULE[0]
    with database.db.transaction(write=False) as session:
        job = session.scalars(
            select(Job).where(Job.org_id == tenant.org_id, Job.kind == events.DELIVERY_JOB)
        ).one()
    assert job.status == "queued" and job.attempts == 1
    assert job.run_at >= parse(attempt["attemptedAt"]) + events.RETRY_SCHEDULE[0]
    assert job.payload == {"delivery_id": d["id"]}

    make_due(database, tenant.org_id)
    run_pending(database.db)
    got = receiver.received()
    assert len(got) == 2
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == d["id"]
    assert verify(hook["secret"], got[0]) == verify(hook["secret"], got[1])
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "succeeded"
    assert d["attemptCount"] == 2
    assert [a["statusCode"] for a in d["attempts"]] == [500, 200]
    assert d["lastError"] is None and d["nextAttemptAt"] is None
    assert (
        client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "succeeded"}, headers=tenant.admin
        ).headers["X-Total-Count"]
        == "1"
    )


def test_gives_up_after_about_a_day(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    total = sum(events.RETRY_SCHEDULE, timedelta())
    assert timedelta(hours=23) <= total <= timedelta(hours=25)
    assert list(events.RETRY_SCHEDULE) == sorted(events.RETRY_SCHEDULE)
    receiver.answers = [503] * events.MAX_ATTEMPTS
    hook = create_hook(client, tenant, receiver.url, ["response.deleted"])
    emit(database, tenant.org_id, "response.deleted", [record()])
    for _ in range(events.MAX_ATTEMPTS):
        run_pending(database.db)
        make_due(database, tenant.org_id)
    run_pending(database.db)
    assert len(receiver.received()) == events.MAX_ATTEMPTS
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "failed"
    assert d["attemptCount"] == events.MAX_ATTEMPTS
    assert [a["statusCode"] for a in d["attempts"]] == [503] * events.MAX_ATTEMPTS
    assert d["nextAttemptAt"] is None
    with database.db.transaction(write=False) as session:
        job = session.scalars(
            select(Job).where(Job.org_id == tenant.org_id, Job.kind == events.DELIVERY_JOB)
        ).one()
    assert job.status == "failed"
    assert (
        client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "failed"}, headers=tenant.admin
        ).headers["X-Total-Count"]
        == "1"
    )


def test_redirects_are_not_followed(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    receiver.answers = [(302, {"Location": receiver.url})]
    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    emit(database, tenant.org_id, "response.created", [record()])
    run_pending(database.db)
    assert len(receiver.received()) == 1
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "pending"
    assert d["lastStatusCode"] == 302
    assert "redirect" in d["lastError"]


def test_unreachable_receiver_is_an_attempt(
    client: TestClient, database: TestDatabase, tenant: Tenant
) -> None:
    gone = Receiver()
    gone.start()
    url = gone.url
    gone.stop()  # nothing listens on that port any more
    hook = create_hook(client, tenant, url, ["response.created"])
    emit(database, tenant.org_id, "response.created", [record()])
    run_pending(database.db)
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "pending"
    [attempt] = d["attempts"]
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("cannot connect")


def test_inactive_webhook_settles_queued_deliveries(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    emit(database, tenant.org_id, "response.created", [record()])
    client.patch(f"/v1/webhooks/{hook['id']}", json={"isActive": False}, headers=tenant.admin)
    run_pending(database.db)
    assert receiver.received() == []
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "failed" and d["lastError"] == "webhook is inactive" and d["attempts"] == []


# ------------------------------------------------------------------------------- test event, listing


def test_test_endpoint(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    bystander = create_hook(client, tenant, receiver.url, ["response.created"])
    client.patch(f"/v1/webhooks/{hook['id']}", json={"isActive": False}, headers=tenant.admin)
    r = client.post(f"/v1/webhooks/{hook['id']}/test", headers=tenant.admin)
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["status"] == "pending" and queued["eventType"] == "webhook.test"
    assert queued["webhookId"] == hook["id"]
    run_pending(database.db)
    [req] = receiver.received()
    assert req.headers["webhook-id"] == queued["id"]
    body = verify(hook["secret"], req)
    assert body["type"] == "webhook.test"
    assert body["data"]["webhookId"] == hook["id"]
    assert body == queued["payload"]
    [d] = deliveries(client, tenant, hook["id"], eventType="webhook.test")
    assert d["id"] == queued["id"] and d["status"] == "succeeded"
    assert deliveries(client, tenant, bystander["id"]) == []


def test_deliveries_paging(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created", "response.deleted"])
    emit(database, tenant.org_id, "response.created", [record(score=s) for s in range(3)])
    emit(database, tenant.org_id, "response.deleted", [record(score=s) for s in range(3, 5)])
    everything = deliveries(client, tenant, hook["id"])
    assert len(everything) == 5
    assert [d["createdAt"] for d in everything] == sorted((d["createdAt"] for d in everything), reverse=True)
    pages = []
    for page in (1, 2, 3, 4):
        r = client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", params={"page": page, "limit": 2}, headers=tenant.admin
        )
        assert r.status_code == 200
        assert r.headers["X-Total-Count"] == "5"
        pages.append([d["id"] for d in r.json()])
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [i for p in pages for i in p] == [d["id"] for d in everything]
    deleted = deliveries(client, tenant, hook["id"], eventType="response.deleted")
    assert sorted(d["payload"]["data"]["score"] for d in deleted) == [3, 4]
    assert deliveries(client, tenant, hook["id"], status="succeeded") == []
    run_pending(database.db)
    assert len(deliveries(client, tenant, hook["id"], status="succeeded")) == 5


# ------------------------------------------------------------------------------------------- SSRF


@pytest.fixture
def guarded(database: TestDatabase) -> Iterator[tuple[TestClient, Database]]:
    """An app that refuses private targets, on its own engine over the same database."""
    settings = database.settings.model_copy(update={"webhook_allow_private": False})
    db = Database(database.url, pool_size=2, settings=settings)
    try:
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as guarded_client:
            yield guarded_client, db
    finally:
        db.dispose()


PRIVATE_TARGETS = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/",
    "http://localhost/hook",
    "http://[::1]/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://100.64.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "https://2130706433/",
]


def test_private_targets_refused(guarded: tuple[TestClient, Database], tenant: Tenant) -> None:
    guarded_client, _ = guarded
    for url in PRIVATE_TARGETS:
        body = assert_error(
            guarded_client.post(
                "/v1/webhooks", json={"url": url, "events": ["response.created"]}, headers=tenant.admin
            ),
            400,
            "url",
        )
        assert "address" in body["message"], (url, body)
    assert guarded_client.get("/v1/webhooks", headers=tenant.admin).json() == []
    # a public address is accepted (nothing is ever sent to it: no event is emitted)...
    r = guarded_client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.215.14/hooks", "events": ["response.created"]},
        headers=tenant.admin,
    )
    assert r.status_code == 201, r.text
    hook_id = r.json()["id"]
    # ...and cannot be moved to a private one
    assert_error(
        guarded_client.patch(
            f"/v1/webhooks/{hook_id}", json={"url": "http://127.0.0.1:9/"}, headers=tenant.admin
        ),
        400,
        "url",
    )
    assert (
        guarded_client.get(f"/v1/webhooks/{hook_id}", headers=tenant.admin).json()["url"]
        == "https://93.184.215.14/hooks"
    )
    assert guarded_client.delete(f"/v1/webhooks/{hook_id}", headers=tenant.admin).status_code == 204


def test_private_target_refused_again_at_delivery(
    client: TestClient,
    database: TestDatabase,
    tenant: Tenant,
    receiver: Receiver,
    guarded: tuple[TestClient, Database],
) -> None:
    """A target that was acceptable when saved is checked again when sending (DNS can change)."""
    hook = create_hook(client, tenant, receiver.url, ["response.created"])
    emit(database, tenant.org_id, "response.created", [record()])
    _, guarded_db = guarded
    run_pending(guarded_db)  # a worker whose settings refuse private targets
    assert receiver.received() == []
    [d] = deliveries(client, tenant, hook["id"])
    assert d["status"] == "pending"
    [attempt] = d["attempts"]
    assert attempt["statusCode"] is None
    assert "loopback address" in attempt["error"]
    make_due(database, tenant.org_id)
    run_pending(database.db)  # this worker allows them
    assert len(receiver.received()) == 1
    assert deliveries(client, tenant, hook["id"])[0]["status"] == "succeeded"


def test_guard_checks_every_address() -> None:
    from npsd.webhooks import guard

    assert guard.forbidden_reason(guard.ipaddress.ip_address("93.184.215.14")) is None
    assert guard.forbidden_reason(guard.ipaddress.ip_address("2606:4700::1111")) is None
    assert guard.forbidden_reason(guard.ipaddress.ip_address("::ffff:10.0.0.1")) == "private"
    assert guard.forbidden_reason(guard.ipaddress.ip_address("169.254.1.1")) == "link-local"
    # names are resolved and each address checked
    with pytest.raises(guard.UnsafeTarget, match="loopback"):
        guard.check_target("http://localhost/", allow_private=False)
    assert guard.check_target("http://localhost:81/", allow_private=True).port == 81


# ------------------------------------------------------------------- end to end through the write paths


def events_of(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    return [verify(secret, r) for r in receiver.received()]


def test_nps_create_update_delete_fire_events(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(
        client, tenant, receiver.url, ["response.created", "response.updated", "response.deleted"]
    )
    r = client.post(
        "/nps", json={"email": "ann@example.com", "score": 9, "comment": "nice"}, headers=tenant.editor
    )
    assert r.status_code == 200, r.text
    created = r.json()
    run_pending(database.db)
    [first] = events_of(receiver, hook["secret"])
    assert first["type"] == "response.created"
    assert first["data"]["_id"] == created["_id"]
    assert (first["data"]["email"], first["data"]["score"], first["data"]["comment"]) == (
        "ann@example.com",
        9,
        "nice",
    )

    r = client.put(f"/nps/{created['_id']}", json={"score": 4}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    run_pending(database.db)
    second = events_of(receiver, hook["secret"])[1]
    assert second["type"] == "response.updated"
    assert (second["data"]["_id"], second["data"]["score"]) == (created["_id"], 4)

    assert client.delete(f"/nps/{created['_id']}", headers=tenant.admin).status_code == 200
    run_pending(database.db)
    third = events_of(receiver, hook["secret"])[2]
    assert third["type"] == "response.deleted"
    assert third["data"]["_id"] == created["_id"]
    assert len(receiver.received()) == 3


def test_bulk_upsert_fires_one_event_per_record(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    r = client.post("/nps", json={"email": "old@example.com", "score": 5}, headers=tenant.editor)
    existing = r.json()
    hook = create_hook(client, tenant, receiver.url, ["response.created", "response.updated"])
    items = [{"email": f"new{i}@example.com", "score": 10 - i} for i in range(3)]
    items.append({"_id": existing["_id"], "score": 8})
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (3, 1)
    run_pending(database.db)
    got = events_of(receiver, hook["secret"])
    created = sorted((e["data"]["email"], e["data"]["score"]) for e in got if e["type"] == "response.created")
    updated = [(e["data"]["_id"], e["data"]["score"]) for e in got if e["type"] == "response.updated"]
    assert created == [("new0@example.com", 10), ("new1@example.com", 9), ("new2@example.com", 8)]
    assert updated == [(existing["_id"], 8)]
    assert len(got) == 4


def test_survey_filter_through_nps(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    hook = create_hook(client, tenant, receiver.url, ["response.created"], surveyIds=["camp-a"])
    for campaign in ("camp-a", "camp-b", None):
        body = {"email": f"u-{secrets.token_hex(3)}@example.com", "score": 7, "campaignId": campaign}
        assert client.post("/nps", json=body, headers=tenant.editor).status_code == 200
    run_pending(database.db)
    got = events_of(receiver, hook["secret"])
    assert [e["data"]["campaignId"] for e in got] == ["camp-a"]


def test_other_tenant_writes_fire_nothing_here(
    client: TestClient, database: TestDatabase, tenant: Tenant, receiver: Receiver
) -> None:
    create_hook(client, tenant, receiver.url)
    outsider = make_tenant(database)
    assert (
        client.post("/nps", json={"email": "o@example.com", "score": 1}, headers=outsider.editor).status_code
        == 200
    )
    assert (
        client.post("/nps", json={"email": "t@example.com", "score": 2}, headers=tenant.editor).status_code
        == 200
    )
    run_pending(database.db)
    assert [r.json()["data"]["email"] for r in receiver.received()] == ["t@example.com"]
