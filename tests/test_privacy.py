"""Erasure (``/v1/erasures``, ``npsd erase``), the hashed unsubscribe list and retention, over
HTTP on both databases.

The erasure tests use the shared test database and app; jobs run when the test calls
``run_jobs``, and webhook events go to a real HTTP receiver. Retention deletes across every
organization, so its tests get a database of their own (module-scoped, one per kind), which is
also where migration 0007 converts an unsubscribe list written by the schema before it.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, String, Text, cast, create_engine, event, func, select, text, update
from typer.testing import CliRunner

from conftest import Tenant, TestDatabase, assert_error, make_tenant, pg_schema
from invariants import rollup_mismatches
from mail_helpers import invite, invite_one, make_survey, run_jobs
from npsd.analytics.nps import nps
from npsd.app import create_app
from npsd.cli import app as cli_app
from npsd.collect.service import address_hash
from npsd.kit.config import Settings
from npsd.kit.db import Database, normalize_url
from npsd.kit.jobs import PERIODIC, Worker, run_pending
from npsd.kit.models import (
    Base,
    Erasure,
    IdempotencyKey,
    Invitation,
    Job,
    NpsRecord,
    Unsubscribe,
    WebhookAttempt,
    WebhookDelivery,
)
from npsd.kit.timeutil import utcnow
from npsd.migrations import upgrade
from npsd.privacy import service as privacy

ALL_EVENTS = [
    "response.created",
    "response.updated",
    "response.deleted",
    "invitation.failed",
    "unsubscribe.created",
    "person.erased",
]
METRICS = "/v1/nps-surveys/nps-metrics"


# ------------------------------------------------------------------------------------ the receiver


@dataclass
class Receiver:
    """A real HTTP server on a loopback port recording the bodies POSTed to its own path."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/{self.token}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == f"/hook/{receiver.token}":
                    with receiver.lock:
                        receiver.bodies.append(body)
                self.send_response(200 if self.path == f"/hook/{receiver.token}" else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for b in self.bodies]

    def clear(self) -> None:
        with self.lock:
            self.bodies.clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


# ------------------------------------------------------------------------------------------ helpers


def places_holding(db: Database, needle: str) -> list[str]:
    """Every ``table.column`` of the database holding ``needle`` (any case) in some row: every text
    and JSON column of every table, asked in SQL."""
    found: list[str] = []
    with db.transaction(write=False) as session:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                hit = session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(func.lower(cast(column, Text)).contains(needle.lower(), autoescape=True))
                )
                if hit:
                    found.append(f"{table.name}.{column.name}")
    return found


def get_json(client: TestClient, tenant: Tenant, url: str, **params: Any) -> Any:
    r = client.get(url, params=params, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()


def summary(scores: list[int]) -> dict[str, Any]:
    p = sum(1 for s in scores if s >= 9)
    d = sum(1 for s in scores if s <= 6)
    return {
        "promoters": p,
        "passives": len(scores) - p - d,
        "detractors": d,
        "totalResponses": len(scores),
        "npsScore": nps(p, len(scores) - p - d, d),
    }


def metrics_of(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    body = get_json(client, tenant, METRICS, **params)
    return {k: body[k] for k in ("promoters", "passives", "detractors", "totalResponses", "npsScore")}


def all_answers(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = get_json(client, tenant, "/nps", npsExpiryDay=0, limit=10000, **params)
    return rows


def company_recount(answers: list[dict[str, Any]], company_id: str) -> tuple[float | None, int]:
    """A company's NPS as npsd defines it, from the answers alone: each contact's latest answer of
    the last 360 days."""
    latest: dict[str, dict[str, Any]] = {}
    for a in answers:
        if a["cId"] == company_id and (
            a["euId"] not in latest
            or (a["dateAnswered"], a["_id"])
            > (
                latest[a["euId"]]["dateAnswered"],
                latest[a["euId"]]["_id"],
            )
        ):
            latest[a["euId"]] = a
    since = (utcnow() - timedelta(days=360)).isoformat(timespec="milliseconds") + "Z"
    scores = [a["score"] for a in latest.values() if a["dateAnswered"] >= since]
    s = summary(scores)
    return s["npsScore"], s["totalResponses"]


def days_ago(days: float) -> str:
    return (utcnow() - timedelta(days=days)).isoformat(timespec="milliseconds") + "Z"


def settle_deliveries(db: Database, org_id: str, deadline: float = 60.0) -> None:
    """Run jobs until none of the organization's webhook deliveries is pending (deliveries may be
    sent concurrently, so one round of jobs is not proof that they all arrived)."""
    give_up = time.monotonic() + deadline
    while True:
        run_jobs(db)
        with db.transaction(write=False) as session:
            pending = session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.org_id == org_id, WebhookDelivery.status == "pending")
            )
        if not pending:
            return
        assert time.monotonic() < give_up, f"{pending} deliveries still pending"
        time.sleep(0.1)


def bulk(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> None:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert r.json()["permissionErrors"] == [] and not r.json().get("errors"), r.text


# ------------------------------------------------------------------------------------------ erasure


def test_erasure_removes_the_person_and_keeps_every_figure_exact(
    client: TestClient, tenant: Tenant, database: TestDatabase, receiver: Receiver
) -> None:
    tag = secrets.token_hex(4)
    companies = []
    for name in ("a", "b"):
        r = client.post(
            "/companies",
            json={"name": f"{name}-{tag}", "domains": [f"{name}-{tag}.test"]},
            headers=tenant.editor,
        )
        assert r.status_code == 200, r.text
        companies.append(r.json()["_id"])
    surveys = [make_survey(client, tenant, name=f"s{i}-{tag}")["id"] for i in range(3)]
    person = f"Erase.Me-{tag}@A-{tag}.test"  # filed under company a by its domain
    key = person.lower()
    hook = client.post("/v1/webhooks", json={"url": receiver.url, "events": ALL_EVENTS}, headers=tenant.admin)
    assert hook.status_code == 201, hook.text

    # two companies' worth of neighbours, in every survey
    neighbours = [f"n{i}-{tag}@{'ab'[i % 2]}-{tag}.test" for i in range(10)]
    bulk(
        client,
        tenant,
        [
            {"email": n, "score": (i * 3 + j) % 11, "campaignId": s, "dateAnswered": days_ago(30 + i + j)}
            for i, n in enumerate(neighbours)
            for j, s in enumerate(surveys)
        ],
    )
    # the person: an answer in every survey (the latest one a promoter, so company a's NPS moves),
    # one without a survey under another spelling, one through an Idempotency-Key reply
    bulk(
        client,
        tenant,
        [
            {
                "email": person,
                "score": 0,
                "campaignId": surveys[0],
                "dateAnswered": days_ago(20),
                "comment": "no",
            },
            {"email": person, "score": 3, "campaignId": surveys[1], "dateAnswered": days_ago(15)},
            {"email": key.upper(), "score": 6, "dateAnswered": days_ago(10)},
        ],
    )
    keyed = client.post(
        "/nps",
        json={"email": person, "score": 10, "campaignId": surveys[2], "dateAnswered": days_ago(1)},
        headers={**tenant.editor, "Idempotency-Key": f"erase-{tag}"},
    )
    assert keyed.status_code == 200, keyed.text
    # invited, then unsubscribed (its queued invitation is cancelled, not deleted)
    invite_one(client, tenant, surveys[0], person)
    assert client.post("/v1/unsubscribes", json={"email": person}, headers=tenant.editor).status_code == 201
    settle_deliveries(
        database.db, tenant.org_id
    )  # response.created, unsubscribe.created: they hold the address
    assert any(key in json.dumps(e).lower() for e in receiver.events())
    receiver.clear()

    mine = all_answers(client, tenant, email=person)
    assert len(mine) == 4 and {a["campaignId"] for a in mine} == {*surveys, None}
    contact_id = mine[0]["euId"]
    before = {s: metrics_of(client, tenant, surveyId=s) for s in surveys}
    everything = all_answers(client, tenant)
    for s in surveys:
        assert before[s] == summary([a["score"] for a in everything if a["campaignId"] == s])
    company_before = get_json(client, tenant, f"/companies/{companies[0]}")
    with database.db.transaction(write=False) as session:
        held_deliveries = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.org_id == tenant.org_id, func.lower(WebhookDelivery.payload).contains(key))
        )
    assert held_deliveries and held_deliveries >= 5

    r = client.post("/v1/erasures", json={"email": f"  {person.upper()} "}, headers=tenant.admin)
    assert r.status_code == 202, r.text
    erasure = r.json()
    assert erasure["state"] == "queued" and erasure["source"] == "api" and erasure["finishedAt"] is None
    assert erasure["counts"] == dict.fromkeys(
        ("answers", "contacts", "invitations", "idempotencyReplies", "webhookDeliveries"), 0
    )
    assert key not in r.text.lower()
    assert get_json(client, tenant, f"/v1/erasures/{erasure['id']}")["state"] == "queued"

    run_jobs(database.db)  # the erasure job

    done = get_json(client, tenant, f"/v1/erasures/{erasure['id']}")
    assert done["state"] == "done", done
    assert done["counts"] == {
        "answers": 4,
        "contacts": 1,
        "invitations": 1,
        "idempotencyReplies": 1,
        "webhookDeliveries": held_deliveries,
    }
    assert done["startedAt"] and done["finishedAt"] and done["error"] is None

    # figures: every roll-up equals a recount of what remains, and the person's answers moved them
    assert rollup_mismatches(database.db, tenant.org_id) == []
    remaining = all_answers(client, tenant)
    assert len(remaining) == len(everything) - 4
    for s in surveys:
        after = metrics_of(client, tenant, surveyId=s)
        assert after == summary([a["score"] for a in remaining if a["campaignId"] == s])
        assert after["totalResponses"] == before[s]["totalResponses"] - 1
    assert metrics_of(client, tenant) == summary([a["score"] for a in remaining])
    for cid in companies:
        company = get_json(client, tenant, f"/companies/{cid}")
        assert (company["nps"], company["npsResponses"]) == company_recount(remaining, cid)
    company_after = get_json(client, tenant, f"/companies/{companies[0]}")
    assert company_after["npsResponses"] == company_before["npsResponses"] - 1

    # lists and exports no longer show the person
    assert all_answers(client, tenant, email=person) == []
    assert get_json(client, tenant, "/endusers", email=person) == []
    for url, params in (
        ("/nps", {"npsExpiryDay": 0, "limit": 10000}),
        ("/endusers", {"limit": 10000}),
        (f"/v1/nps-surveys/{surveys[0]}/invitations", {"limit": 100}),
        (f"/v1/nps-surveys/{surveys[0]}/responses", {"limit": 100}),
    ):
        r = client.get(url, params=params, headers=tenant.admin)
        assert r.status_code == 200, (url, r.text)
        assert key not in r.text.lower() and contact_id not in r.text, url
    exported = client.get("/nps/export", params={"format": "csv", "npsExpiryDay": 0}, headers=tenant.viewer)
    assert exported.status_code == 200 and key not in exported.text.lower()
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(row["_id"] for row in rows) == sorted(a["_id"] for a in remaining)
    exported = client.get("/nps/export", params={"format": "json", "npsExpiryDay": 0}, headers=tenant.viewer)
    assert exported.status_code == 200 and key not in exported.text.lower()
    assert sorted(row["_id"] for row in exported.json()) == sorted(a["_id"] for a in remaining)

    # one person.erased event, with ids and counts, and the address nowhere in what was sent
    settle_deliveries(database.db, tenant.org_id)
    erased = [e for e in receiver.events() if e["type"] == "person.erased"]
    assert len(erased) == 1
    data = erased[0]["data"]
    assert data["id"] == erasure["id"] and data["counts"] == done["counts"]
    assert data["contactId"] == contact_id
    assert sorted(data["responseIds"]) == sorted(a["_id"] for a in mine)
    assert all(e["type"] != "response.deleted" for e in receiver.events())
    for body in receiver.events():
        assert key not in json.dumps(body).lower()

    # still unsubscribed, and the address is held nowhere in the database
    [again] = invite(client, tenant, surveys[1], [{"email": person}])
    assert again["status"] == "unsubscribed"
    assert places_holding(database.db, key) == []
    with database.db.transaction(write=False) as session:
        job = session.scalars(
            select(Job).where(Job.org_id == tenant.org_id, Job.kind == privacy.ERASE_JOB)
        ).one()
        assert job.payload == {"erasure_id": erasure["id"]} and job.status == "done"
        stored = session.get(Erasure, erasure["id"])
        assert stored is not None and stored.email_hash == address_hash(database.settings, person)

    # found again by address (any spelling), never showing it
    assert [e["id"] for e in get_json(client, tenant, "/v1/erasures", email=key.upper())] == [erasure["id"]]
    assert get_json(client, tenant, "/v1/erasures", email=f"x-{tag}@a-{tag}.test") == []
    listed = client.get("/v1/erasures", headers=tenant.admin)
    assert listed.headers["X-Total-Count"] == "1" and listed.json() == [done]


def test_erasure_api_refuses_bad_input_other_roles_and_other_organizations(
    client: TestClient, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    address = f"nobody-{secrets.token_hex(4)}@example.com"
    for role in ("viewer", "editor"):
        headers = tenant.headers(role)
        assert_error(client.post("/v1/erasures", json={"email": address}, headers=headers), 403)
        assert_error(client.get("/v1/erasures", headers=headers), 403)
    for body in ({}, {"email": "nope"}, {"email": 5}, {"email": None}, {"email": ""}, {"email": "a@b.c\x00"}):
        assert_error(client.post("/v1/erasures", json=body, headers=tenant.admin), 400, "email")
    assert_error(
        client.post("/v1/erasures", json={"email": address, "why": 1}, headers=tenant.admin), 400, "why"
    )
    assert_error(client.post("/v1/erasures", json=[address], headers=tenant.admin), 400)
    assert_error(
        client.post(
            "/v1/erasures", content=b"{", headers={**tenant.admin, "content-type": "application/json"}
        ),
        400,
    )
    assert_error(client.get("/v1/erasures", params={"email": "nope"}, headers=tenant.admin), 400, "email")
    assert_error(client.get("/v1/erasures", params={"limit": 0}, headers=tenant.admin), 400, "limit")
    assert_error(client.get("/v1/erasures/not-an-id", headers=tenant.admin), 400, "id")
    assert_error(client.get(f"/v1/erasures/{'0' * 24}", headers=tenant.admin), 404)

    r = client.post("/v1/erasures", json={"email": address}, headers=tenant.admin)
    assert r.status_code == 202, r.text
    erasure_id = r.json()["id"]
    assert_error(client.get(f"/v1/erasures/{erasure_id}", headers=other.admin), 404)
    assert_error(client.get(f"/v1/erasures/{erasure_id}", headers=tenant.viewer), 403)
    assert client.get("/v1/erasures", headers=other.admin).json() == []
    run_jobs(database.db)
    # an address npsd never saw: done, with zeros
    done = get_json(client, tenant, f"/v1/erasures/{erasure_id}")
    assert done["state"] == "done" and set(done["counts"].values()) == {0}


def test_erase_command(client: TestClient, tenant: Tenant, database: TestDatabase) -> None:
    tag = secrets.token_hex(4)
    person = f"Cli-{tag}@example.com"
    r = client.post("/nps", json={"email": person, "score": 4}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    env = {"NPSD_DATABASE_URL": database.url, "NPSD_SECRET_KEY": database.settings.secret_key or ""}

    def npsd(*args: str) -> Any:
        return CliRunner().invoke(cli_app, list(args), env=env)

    unknown = npsd("erase", "--org", f"no-such-org-{tag}", "--email", person)
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert len(unknown.stderr.strip().splitlines()) == 1 and "no organization" in unknown.stderr
    bad = npsd("erase", "--org", tenant.name, "--email", "nope")
    assert bad.exit_code == 1 and "--email" in bad.stderr

    def counts(output: str) -> dict[str, str]:
        first, *rest = output.splitlines()
        assert first.startswith("erasure ") and first.endswith(": done"), output
        return dict(line.strip().rsplit(None, 1) for line in rest)  # type: ignore[misc]

    result = npsd("erase", "--org", tenant.name, "--email", person.upper())
    assert result.exit_code == 0, result.output
    assert counts(result.stdout) == {
        "answers": "1",
        "contacts": "1",
        "invitations": "0",
        "idempotency replies": "0",
        "webhook deliveries": "0",
    }
    assert all_answers(client, tenant, email=person) == []
    assert rollup_mismatches(database.db, tenant.org_id) == []
    listed = get_json(client, tenant, "/v1/erasures")
    assert [(e["source"], e["state"], e["counts"]["answers"]) for e in listed] == [("cli", "done", 1)]

    again = npsd("erase", "--org", tenant.org_id, "--email", person)  # by id too; nothing left
    assert again.exit_code == 0, again.output
    assert set(counts(again.stdout).values()) == {"0"}


def test_unsubscribe_list_keeps_only_a_hash(
    client: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    address = f"Quiet-{secrets.token_hex(4)}@example.com"
    created = client.post("/v1/unsubscribes", json={"email": address}, headers=tenant.editor)
    assert created.status_code == 201 and created.json()["email"] == address.lower()
    with database.db.transaction(write=False) as session:
        row = session.scalars(select(Unsubscribe).where(Unsubscribe.org_id == tenant.org_id)).one()
        assert row.email_key == address_hash(database.settings, address) and len(row.email_key) == 64
    assert places_holding(database.db, address) == []
    assert get_json(client, tenant, "/v1/unsubscribes")[0]["email"] is None
    assert get_json(client, tenant, "/v1/unsubscribes", email=address.upper())[0]["email"] == address.lower()
    [result] = invite(client, tenant, make_survey(client, tenant)["id"], [{"email": address}])
    assert result["status"] == "unsubscribed"


# --------------------------------------------------------- a database of its own: migration, retention


def _old_schema_database(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database at migration 0006 (before the unsubscribe list was hashed)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'privacy.db'}"
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
    else:
        schema = contextlib.ExitStack()
        url = schema.enter_context(pg_schema("npsd_privacy"))
        cleanup = schema.close

    upgrade(url, "0006")
    return url, cleanup


@dataclass
class Own:
    tdb: TestDatabase
    client: TestClient
    old_addresses: list[str]


@pytest.fixture(scope="module")
def own(database: TestDatabase) -> Iterator[Own]:
    secret = "privacy-secret-" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        url, cleanup = _old_schema_database(database.kind, Path(tmp))
        engine = create_engine(normalize_url(url))
        old = [f"Old-{i}-{secrets.token_hex(3)}@Example.com" for i in range(3)]
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO organization (id, name, created_at) VALUES (:id, :n, :t)"),
                {"id": "a" * 24, "n": f"legacy-{secrets.token_hex(4)}", "t": utcnow()},
            )
            for address in old:
                conn.execute(
                    text(
                        "INSERT INTO unsubscribe (org_id, email_key, email, source, created_at)"
                        " VALUES (:o, :k, :e, 'api', :t)"
                    ),
                    {"o": "a" * 24, "k": address.lower(), "e": address, "t": utcnow()},
                )
        engine.dispose()
        saved = os.environ.get("NPSD_SECRET_KEY")
        os.environ["NPSD_SECRET_KEY"] = (
            secret  # as `npsd migrate` runs: the servers' key from the environment
        )
        try:
            upgrade(url)
        finally:
            if saved is None:
                del os.environ["NPSD_SECRET_KEY"]
            else:
                os.environ["NPSD_SECRET_KEY"] = saved
        settings = Settings(
            database_url=url,
            secret_key=secret,
            worker=False,
            rate_limit=0,
            webhook_allow_private=True,
            retention_days=100,
            invitation_retention_days=200,
            webhook_retention_days=10,
            retention_interval_seconds=0.2,
        )
        db = Database(url, pool_size=5, settings=settings)
        tdb = TestDatabase(database.kind, url, settings, db)
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
            yield Own(tdb, client, old)
        db.dispose()
        cleanup()


def test_migration_0007_hashes_an_existing_unsubscribe_list(own: Own) -> None:
    settings = own.tdb.settings
    with own.tdb.db.transaction(write=False) as session:
        keys = set(session.scalars(select(Unsubscribe.email_key).where(Unsubscribe.org_id == "a" * 24)))
        columns = {
            c["name"] for c in own.tdb.db.engine.dialect.get_columns(session.connection(), "unsubscribe")
        }
    assert keys == {address_hash(settings, a) for a in own.old_addresses}
    assert "email" not in columns
    for address in own.old_addresses:
        assert places_holding(own.tdb.db, address) == []
    # the migration's frozen copy of the formula agrees with the code's
    path = Path(upgrade.__code__.co_filename).parent / "versions" / "0007_erasure_retention.py"
    spec = importlib.util.spec_from_file_location("migration_0007", path)
    assert spec is not None and spec.loader is not None
    frozen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frozen)
    assert frozen.address_hash(settings.signing_key, " Mixed@Case.io ") == address_hash(
        settings, "mixed@case.io"
    )


def test_retention_deletes_what_is_past_its_settings_and_keeps_figures_exact(
    own: Own, receiver: Receiver
) -> None:
    db, client = own.tdb.db, own.client
    tenant = make_tenant(own.tdb)
    tag = secrets.token_hex(4)
    r = client.post(
        "/companies", json={"name": f"c-{tag}", "domains": [f"c-{tag}.test"]}, headers=tenant.editor
    )
    company = r.json()["_id"]
    survey = make_survey(client, tenant)["id"]
    hook = client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["response.created"]}, headers=tenant.admin
    )
    assert hook.status_code == 201, hook.text
    x, y, z = (f"{n}-{tag}@c-{tag}.test" for n in "xyz")
    old = [
        {"email": x, "score": 10, "campaignId": survey, "dateAnswered": days_ago(200)},
        {"email": y, "score": 9, "campaignId": survey, "dateAnswered": days_ago(150)},
        {"email": y, "score": 3, "campaignId": survey, "dateAnswered": days_ago(120)},
        *(
            {"email": f"o{i}-{tag}@c-{tag}.test", "score": i % 11, "dateAnswered": days_ago(101 + i)}
            for i in range(7)
        ),
    ]
    new = [
        {"email": x, "score": 0, "campaignId": survey, "dateAnswered": days_ago(10)},
        {"email": z, "score": 10, "campaignId": survey, "dateAnswered": days_ago(99)},
    ]
    bulk(client, tenant, old + new)
    assert len(all_answers(client, tenant)) == 12
    # invitations: one created 300 days ago (its link long expired), one today
    kept_invitation = invite_one(client, tenant, survey, f"i1-{tag}@example.com")
    old_invitation = invite_one(client, tenant, survey, f"i2-{tag}@example.com")
    # deliveries: sent (by a process that keeps everything, so no retention pass runs yet), then
    # aged 20 days; one aged but still pending (being retried) stays
    keep_all = own.tdb.settings.model_copy(
        update={"retention_days": None, "invitation_retention_days": 0, "webhook_retention_days": 0}
    )
    sender = Database(own.tdb.url, pool_size=2, settings=keep_all)
    settle_deliveries(sender, tenant.org_id)
    sender.dispose()
    keyed = client.post(
        "/nps", json={"email": z, "score": 8}, headers={**tenant.editor, "Idempotency-Key": f"old-{tag}"}
    )
    assert keyed.status_code == 200
    assert (
        client.post(
            "/nps", json={"email": z, "score": 9}, headers={**tenant.editor, "Idempotency-Key": f"new-{tag}"}
        ).status_code
        == 200
    )
    with db.transaction() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.id == old_invitation)
            .values(created_at=utcnow() - timedelta(days=300), expires_at=utcnow() - timedelta(days=270))
        )
        deliveries = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.org_id == tenant.org_id, WebhookDelivery.status == "succeeded")
                .order_by(WebhookDelivery.id)
            )
        )
        assert len(deliveries) == 12
        aged, pending = deliveries[:6], deliveries[6]
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([*aged, pending]))
            .values(created_at=utcnow() - timedelta(days=20))
        )
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == pending).values(status="pending"))
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.org_id == tenant.org_id, IdempotencyKey.key == f"old-{tag}")
            .values(expires_at=utcnow() - timedelta(hours=1))
        )
    assert privacy.apply_retention in PERIODIC
    # the worker, as `npsd serve` runs it: its periodic retention pass does the work
    privacy.LAST_RUN.pop(db, None)
    worker = Worker(db, 0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.transaction(write=False) as session:
                left = session.scalar(
                    select(func.count()).select_from(NpsRecord).where(NpsRecord.org_id == tenant.org_id)
                )
            if left == 4 and privacy.LAST_RUN.get(db, {}).get("answers") == 0:
                break
            time.sleep(0.1)
    finally:
        worker.stop()
    assert privacy.LAST_RUN.get(db) is not None, "the worker never ran the retention pass"

    remaining = all_answers(client, tenant)
    assert sorted((a["email"], a["score"]) for a in remaining) == sorted([(x, 0), (z, 10), (z, 8), (z, 9)])
    assert rollup_mismatches(db, tenant.org_id) == []
    assert metrics_of(client, tenant) == summary([a["score"] for a in remaining])
    assert metrics_of(client, tenant, surveyId=survey) == summary([0, 10])
    contacts = {e["email"]: e for e in get_json(client, tenant, "/endusers", limit=100)}
    assert contacts[x]["nps"] == 0 and contacts[y]["nps"] is None and contacts[y]["npsId"] is None
    assert (
        get_json(client, tenant, f"/companies/{company}")["nps"],
        get_json(client, tenant, f"/companies/{company}")["npsResponses"],
    ) == company_recount(remaining, company)
    with db.transaction(write=False) as session:
        invitations = set(session.scalars(select(Invitation.id).where(Invitation.org_id == tenant.org_id)))
        assert invitations == {kept_invitation}
        left_deliveries = set(
            session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.org_id == tenant.org_id))
        )
        assert not set(aged) & left_deliveries
        assert pending in left_deliveries and set(deliveries[7:]) <= left_deliveries
        assert (
            session.scalar(
                select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(aged))
            )
            == 0
        )
        keys = set(session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.org_id == tenant.org_id)))
        assert keys == {f"new-{tag}"}


def test_retention_runs_at_most_once_per_interval_in_batches(own: Own) -> None:
    tdb = own.tdb
    tenant = make_tenant(tdb)
    tag = secrets.token_hex(4)
    bulk(
        own.client,
        tenant,
        [
            {"email": f"b{i}-{tag}@example.com", "score": i % 11, "dateAnswered": days_ago(150 + i)}
            for i in range(7)
        ],
    )
    # a second process's view of the same database, with a long interval
    slow = Database(
        tdb.url, pool_size=2, settings=tdb.settings.model_copy(update={"retention_interval_seconds": 3600})
    )
    deletes: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM NPS_RECORD"):
            deletes.append(statement)

    event.listen(slow.engine, "before_cursor_execute", count)
    try:
        done = privacy.run_retention(slow, slow.config, batch=3)
        assert done.answers == 7 and not done.more
        assert len(deletes) == 3  # 3 + 3 + 1
        assert rollup_mismatches(slow, tenant.org_id) == []
        bulk(
            own.client,
            tenant,
            [{"email": f"late-{tag}@example.com", "score": 5, "dateAnswered": days_ago(300)}],
        )
        assert privacy.apply_retention(slow) == 1  # first pass in this process: at once
        bulk(
            own.client,
            tenant,
            [{"email": f"later-{tag}@example.com", "score": 5, "dateAnswered": days_ago(300)}],
        )
        assert privacy.apply_retention(slow) == 0  # within the hour: not again
        assert len(all_answers(own.client, tenant)) == 1
    finally:
        event.remove(slow.engine, "before_cursor_execute", count)
        slow.dispose()


def _hold_deletes_of(db: Database, enduser_id: str) -> Callable[[], None]:
    """Make the database refuse to delete one contact (a trigger): a real failure in the middle of
    an erasure. Returns the function that lifts it."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER hold_enduser BEFORE DELETE ON enduser "
                f"WHEN old.id = '{enduser_id}' BEGIN SELECT RAISE(ABORT, 'held by the test'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION hold_enduser() RETURNS trigger AS $$ BEGIN "
                f"IF OLD.id = '{enduser_id}' THEN RAISE EXCEPTION 'held by the test'; END IF; "
                "RETURN OLD; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER hold_enduser BEFORE DELETE ON enduser FOR EACH ROW EXECUTE FUNCTION hold_enduser()"
            )

    def lift() -> None:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER hold_enduser" + ("" if db.is_sqlite else " ON enduser"))
            if not db.is_sqlite:
                conn.exec_driver_sql("DROP FUNCTION hold_enduser()")

    return lift


def test_a_failed_erasure_changes_nothing_and_forgets_the_address(own: Own) -> None:
    client = own.client
    tenant = make_tenant(own.tdb)
    person = f"Held-{secrets.token_hex(4)}@example.com"
    record = client.post("/nps", json={"email": person, "score": 9}, headers=tenant.editor).json()
    keep_all = own.tdb.settings.model_copy(
        update={"retention_days": None, "invitation_retention_days": 0, "webhook_retention_days": 0}
    )
    db = Database(own.tdb.url, pool_size=2, settings=keep_all)
    lift = _hold_deletes_of(db, record["euId"])
    try:
        r = client.post("/v1/erasures", json={"email": person}, headers=tenant.admin)
        assert r.status_code == 202, r.text
        erasure_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while get_json(client, tenant, f"/v1/erasures/{erasure_id}")["state"] != "failed":
            assert time.monotonic() < deadline, "the erasure never gave up"
            with db.transaction() as session:  # each retry due now, instead of after its backoff
                session.execute(
                    update(Job)
                    .where(Job.org_id == tenant.org_id, Job.kind == privacy.ERASE_JOB, Job.status == "queued")
                    .values(run_at=utcnow() - timedelta(seconds=1))
                )
            run_pending(db)
    finally:
        lift()
        db.dispose()
    failed = get_json(client, tenant, f"/v1/erasures/{erasure_id}")
    assert failed["error"] and person.lower() not in failed["error"].lower() and failed["finishedAt"]
    assert set(failed["counts"].values()) == {0}
    # nothing half-done: the answer, its contact and every figure are as before
    assert [a["_id"] for a in all_answers(client, tenant, email=person)] == [record["_id"]]
    assert rollup_mismatches(own.tdb.db, tenant.org_id) == []
    with own.tdb.db.transaction(write=False) as session:
        job = session.scalars(
            select(Job).where(Job.org_id == tenant.org_id, Job.kind == privacy.ERASE_JOB)
        ).one()
    assert job.status == "failed" and job.attempts == privacy.ERASE_ATTEMPTS
    assert job.payload == {"erasure_id": erasure_id}  # the address is forgotten with the request
    assert person.lower() not in (job.last_error or "").lower()
