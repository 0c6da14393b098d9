"""Body size limit (413), per-token rate limit (429) and Idempotency-Key replay."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, assert_error, make_tenant
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.models import IdempotencyKey
from npsd.kit.timeutil import utcnow


def client_with(database: TestDatabase, **overrides: object) -> TestClient:
    settings = database.settings.model_copy(update=overrides)
    return TestClient(create_app(settings, database.db), raise_server_exceptions=False)


def test_body_over_limit_is_413_from_content_length(database: TestDatabase, tenant: Tenant) -> None:
    with client_with(database, max_body_bytes=2048) as client:
        body = [{"email": f"u{i}@example.com", "score": 5} for i in range(200)]
        r = client.put("/nps", json=body, headers=tenant.editor)
        assert_error(r, 413, "body")
        assert client.get("/nps", headers=tenant.viewer).json() == []


def test_streamed_body_over_limit_is_413_before_read_whole(database: TestDatabase, tenant: Tenant) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        yield b"["
        for i in range(1000):
            piece = b'{"email": "u%d@example.com", "score": 5},' % i
            sent.append(len(piece))
            yield piece
        yield b'{"email": "last@example.com", "score": 5}]'

    with client_with(database, max_body_bytes=4096) as client:
        r = client.put(
            "/nps", content=chunks(), headers={**tenant.editor, "Content-Type": "application/json"}
        )
        assert_error(r, 413, "body")
        assert client.get("/nps", headers=tenant.viewer).json() == []


def test_body_under_limit_passes(database: TestDatabase, tenant: Tenant) -> None:
    with client_with(database, max_body_bytes=4096) as client:
        r = client.post("/nps", json={"email": "a@example.com", "score": 9}, headers=tenant.editor)
        assert r.status_code == 200, r.text


def test_rate_limit_answers_429_with_headers(database: TestDatabase, tenant: Tenant) -> None:
    with client_with(database, rate_limit=5) as client:
        seen = []
        for _ in range(5):
            r = client.get("/nps", headers=tenant.viewer)
            assert r.status_code == 200
            assert r.headers["X-RateLimit-Limit"] == "5"
            seen.append(int(r.headers["X-RateLimit-Remaining"]))
        assert seen == [4, 3, 2, 1, 0]
        r = client.get("/nps", headers=tenant.viewer)
        body = assert_error(r, 429)
        assert "rate limit" in body["message"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert int(r.headers["X-RateLimit-Reset"]) > 0
        # another token has its own budget
        assert client.get("/nps", headers=tenant.editor).status_code == 200


def test_rate_limit_zero_turns_it_off(database: TestDatabase, tenant: Tenant) -> None:
    with client_with(database, rate_limit=0) as client:
        for _ in range(30):
            r = client.get("/healthz", headers=tenant.viewer)
            assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite: one process, in-memory limiter
def test_rate_limit_is_shared_across_processes_on_postgresql(database: TestDatabase, tenant: Tenant) -> None:
    # two app instances with separate limiters stand for two server processes
    with client_with(database, rate_limit=4) as a, client_with(database, rate_limit=4) as b:
        statuses = [c.get("/nps", headers=tenant.viewer).status_code for c in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_idempotent_post_replays_first_reply(client: TestClient, tenant: Tenant) -> None:
    key = {"Idempotency-Key": secrets.token_hex(8)}
    body = {"email": "idem@example.com", "score": 10}
    first = client.post("/nps", json=body, headers={**tenant.editor, **key})
    second = client.post("/nps", json=body, headers={**tenant.editor, **key})
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    listed = client.get("/nps", params={"email": "idem@example.com"}, headers=tenant.viewer).json()
    assert [r["_id"] for r in listed] == [first.json()["_id"]]


def test_idempotency_key_with_another_body_is_422(client: TestClient, tenant: Tenant) -> None:
    key = {"Idempotency-Key": secrets.token_hex(8)}
    assert (
        client.post(
            "/nps", json={"email": "a@example.com", "score": 1}, headers={**tenant.editor, **key}
        ).status_code
        == 200
    )
    r = client.post("/nps", json={"email": "a@example.com", "score": 2}, headers={**tenant.editor, **key})
    assert_error(r, 422, "Idempotency-Key")


def test_idempotent_bulk_put_replays_206(client: TestClient, tenant: Tenant) -> None:
    key = {"Idempotency-Key": "bulk-" + secrets.token_hex(8)}
    body = [{"email": "x@example.com", "score": 3}, {"email": "bad", "score": 3}]
    first = client.put("/nps", json=body, headers={**tenant.editor, **key})
    second = client.put("/nps", json=body, headers={**tenant.editor, **key})
    assert first.status_code == second.status_code == 206
    assert first.json() == second.json()
    assert len(client.get("/nps", headers=tenant.viewer).json()) == 1


def test_retry_while_first_is_in_flight_is_409(
    database: TestDatabase, client: TestClient, tenant: Tenant
) -> None:
    import hashlib

    import orjson

    key = "inflight-" + secrets.token_hex(6)
    body = {"email": "f@example.com", "score": 4}
    now = utcnow()
    with database.db.transaction() as session:  # the first request is still running
        session.add(
            IdempotencyKey(
                org_id=tenant.org_id,
                key=key,
                method="POST",
                path="/nps",
                body_hash=hashlib.sha256(orjson.dumps(body)).hexdigest(),
                status="pending",
                created_at=now,
                expires_at=now.replace(year=now.year + 1),
            )
        )
    r = client.post(
        "/nps",
        content=orjson.dumps(body),
        headers={**tenant.editor, "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert_error(r, 409, "Idempotency-Key")


def test_idempotency_keys_are_per_organization(
    database: TestDatabase, client: TestClient, tenant: Tenant
) -> None:
    other = make_tenant(database)
    key = {"Idempotency-Key": "shared-" + secrets.token_hex(6)}
    a = client.post("/nps", json={"email": "s@example.com", "score": 5}, headers={**tenant.editor, **key})
    b = client.post("/nps", json={"email": "s@example.com", "score": 5}, headers={**other.editor, **key})
    assert a.status_code == b.status_code == 200
    assert a.json()["_id"] != b.json()["_id"]
    assert "Idempotent-Replayed" not in b.headers


def test_a_revoked_token_neither_stores_nor_replays_a_reply(
    database: TestDatabase, client: TestClient, tenant: Tenant
) -> None:
    """Authentication happens once: a request refused as unauthenticated keeps nothing under its
    key, so a valid token of the same organization retrying with that key really runs."""
    key = {"Idempotency-Key": "revoked-" + secrets.token_hex(6)}
    body = {"email": "rev@example.com", "score": 9}
    with database.db.transaction() as session:
        assert auth_service.revoke_token(session, tenant.jtis["editor"]) is True
    refused = client.post("/nps", json=body, headers={**tenant.editor, **key})
    assert_error(refused, 401)
    with database.db.transaction() as session:
        assert session.get(IdempotencyKey, (tenant.org_id, key["Idempotency-Key"])) is None
    retried = client.post("/nps", json=body, headers={**tenant.admin, **key})
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json()["email"] == "rev@example.com"
    again = client.post("/nps", json=body, headers={**tenant.admin, **key})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == retried.json()


def test_a_forbidden_request_keeps_nothing_under_its_key(
    database: TestDatabase, client: TestClient, tenant: Tenant
) -> None:
    """A viewer's write is refused before any reply is kept: an editor may then use the key."""
    key = {"Idempotency-Key": "viewer-" + secrets.token_hex(6)}
    body = {"email": "view@example.com", "score": 3}
    assert_error(client.post("/nps", json=body, headers={**tenant.viewer, **key}), 403)
    r = client.post("/nps", json=body, headers={**tenant.editor, **key})
    assert r.status_code == 200, r.text
    assert "Idempotent-Replayed" not in r.headers


def test_a_malformed_idempotency_key_is_400(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        "/nps",
        json={"email": "k@example.com", "score": 3},
        headers={**tenant.editor, "Idempotency-Key": "x" * 201},
    )
    assert_error(r, 400, "Idempotency-Key")


def test_a_viewer_neither_replays_nor_stores_a_survey_write_reply(client: TestClient, tenant: Tenant) -> None:
    """On routes that look a survey up (which viewers may do) before checking the editor role, the
    key is claimed only by the editor check: a viewer gets its 403, never the editor's reply."""
    survey = client.post("/v1/nps-surveys", json={"name": "keyed"}, headers=tenant.admin).json()
    path = f"/v1/nps-surveys/{survey['id']}/invitations"
    body = {"recipients": [{"email": "keyed@example.com"}]}
    key = {"Idempotency-Key": "inv-" + secrets.token_hex(6)}
    first = client.post(path, json=body, headers={**tenant.editor, **key})
    assert first.status_code == 200, first.text
    assert_error(client.post(path, json=body, headers={**tenant.viewer, **key}), 403)
    other_key = {"Idempotency-Key": "rem-" + secrets.token_hex(6)}
    reminders = f"/v1/nps-surveys/{survey['id']}/reminders"
    assert_error(client.post(reminders, headers={**tenant.viewer, **other_key}), 403)
    r = client.post(reminders, headers={**tenant.editor, **other_key})
    assert r.status_code == 200, r.text
    assert "Idempotent-Replayed" not in r.headers
