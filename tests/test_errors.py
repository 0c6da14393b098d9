"""The one error shape, whatever goes wrong: unknown routes, wrong methods, unreadable bodies,
bodies of the wrong JSON type, bad parameters."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, assert_error
from conftest import TestDatabase as DatabaseFixture
from npsd.app import create_app


def test_unknown_route_is_404_in_the_shape(client, tenant: Tenant) -> None:
    r = client.get("/no/such/route", headers=tenant.viewer)
    body = assert_error(r, 404)
    assert body["error"] == "Not Found" and body["path"] == "/no/such/route"
    assert body["details"] == []
    assert len(body["requestId"]) >= 8 and r.headers["x-request-id"] == body["requestId"]
    # even without credentials
    assert assert_error(client.post("/nowhere"), 404)["path"] == "/nowhere"


def test_request_id_is_echoed(client) -> None:
    r = client.get("/no/such/route", headers={"X-Request-ID": "trace-123"})
    assert assert_error(r, 404)["requestId"] == "trace-123"
    assert r.headers["x-request-id"] == "trace-123"


def test_two_errors_get_different_request_ids(client) -> None:
    a = assert_error(client.get("/nope"), 404)["requestId"]
    b = assert_error(client.get("/nope"), 404)["requestId"]
    assert a != b


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/companies"),
        ("PATCH", "/companies/0123456789abcdef01234567"),
        ("PUT", "/endusers"),
        ("GET", "/v1/auth/login"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_method_is_405(client, tenant: Tenant, method: str, path: str) -> None:
    r = client.request(method, path, headers=tenant.admin)
    body = assert_error(r, 405)
    assert body["error"] == "Method Not Allowed" and body["path"] == path and body["requestId"]
    assert r.headers["allow"]
    assert body["message"].startswith(f"{method} is not allowed") and r.headers["allow"] in body["message"]


@pytest.mark.parametrize("path", ["/companies", "/endusers", "/v1/auth/login"])
@pytest.mark.parametrize(
    "raw", [b"{", b'{"name": "x",}', b"{'name': 'x'}", b'{"name": "x"} trailing', b"\xff\xfe", b"NaN"]
)
def test_malformed_json_is_400(client, tenant: Tenant, path: str, raw: bytes) -> None:
    r = client.post(path, content=raw, headers={**tenant.editor, "Content-Type": "application/json"})
    body = assert_error(r, 400, "body")
    assert body["path"] == path and body["requestId"]


@pytest.mark.parametrize("path", ["/companies", "/endusers", "/v1/auth/login"])
@pytest.mark.parametrize("payload", [[{"name": "x", "email": "a@b.com"}], [], "a string", 42, None, True])
def test_non_object_body_is_400(client, tenant: Tenant, path: str, payload: object) -> None:
    body = assert_error(client.post(path, json=payload, headers=tenant.editor), 400, "body")
    assert body["path"] == path


def test_non_object_body_on_put_is_400(client, tenant: Tenant) -> None:
    cid = client.post("/companies", json={"name": "A"}, headers=tenant.editor).json()["_id"]
    assert_error(client.put(f"/companies/{cid}", json=[{"name": "B"}], headers=tenant.editor), 400, "body")
    assert_error(
        client.put(
            f"/companies/{cid}", content=b"[", headers={**tenant.editor, "Content-Type": "application/json"}
        ),
        400,
    )
    assert client.get(f"/companies/{cid}", headers=tenant.viewer).json()["name"] == "A"


def test_missing_body_is_400(client, tenant: Tenant) -> None:
    body = assert_error(client.post("/companies", headers=tenant.editor), 400, "body")
    assert body["message"] == "body is required"
    assert_error(
        client.post("/companies", content=b"", headers={**tenant.editor, "Content-Type": "application/json"}),
        400,
    )


def test_non_json_content_type_is_4xx(client, tenant: Tenant) -> None:
    r = client.post(
        "/companies", content=b'{"name": "x"}', headers={**tenant.editor, "Content-Type": "text/plain"}
    )
    assert r.status_code in (400, 415), r.text
    assert_error(r, r.status_code)
    r = client.post("/companies", data={"name": "x"}, headers=tenant.editor)  # form encoded
    assert r.status_code in (400, 415), r.text
    assert_error(r, r.status_code)


def test_validation_errors_list_every_field(client, tenant: Tenant) -> None:
    body = assert_error(
        client.post("/companies", json={"name": 1, "custom": 2, "bogus": 3}, headers=tenant.editor), 400
    )
    assert {d["field"] for d in body["details"]} == {"name", "custom", "bogus"}
    assert all(d["issue"] for d in body["details"])
    assert body["error"] == "Bad Request"


def test_query_parameter_errors_name_the_parameter(client, tenant: Tenant) -> None:
    body = assert_error(
        client.get("/companies", params={"limit": "many"}, headers=tenant.viewer), 400, "limit"
    )
    assert body["path"] == "/companies"


def test_errors_carry_the_path_of_the_request(client, tenant: Tenant) -> None:
    body = assert_error(client.get("/companies/0123456789abcdef01234567", headers=tenant.viewer), 404)
    assert body["path"] == "/companies/0123456789abcdef01234567"
    assert "0123456789abcdef01234567" in body["message"]


def test_healthz_needs_no_token(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_unexpected_crash_is_500_in_the_shape(database: DatabaseFixture) -> None:
    """An unforeseen exception still leaves in the one shape, with the request id, and no details."""
    app = create_app(database.settings, database.db)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "crash-1"})
    body = assert_error(r, 500)
    assert body["requestId"] == "crash-1" and r.headers["x-request-id"] == "crash-1"
    assert "secret internals" not in r.text and body["path"] == "/boom"


def test_openapi_documents_contacts(client) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/companies",
        "/companies/{key}",
        "/companies/{key}/endusers",
        "/endusers",
        "/endusers/{key}",
        "/v1/auth/login",
    ):
        assert path in doc["paths"], path
    assert "ErrorBody" in doc["components"]["schemas"]
    assert set(doc["paths"]["/companies/{key}"]) == {"get", "put", "delete"}


def test_bound_errors_are_said_in_words(client: TestClient, tenant: Tenant) -> None:
    """Pydantic's "Value should have at least 1 item after validation, not 0" reads as a bug to
    a person filling a form; bounds are said plainly, on the API and on the dashboard alike."""
    empty = client.post("/v1/nps-surveys", json={"name": ""}, headers=tenant.editor)
    assert {"field": "name", "issue": "must not be empty"} in empty.json()["details"], empty.text
    short = client.post(
        "/v1/tokens", json={"name": "t", "role": "viewer", "ttlDays": 0}, headers=tenant.admin
    )
    assert {"field": "ttlDays", "issue": "must be at least 1"} in short.json()["details"], short.text
