"""``/v1/tokens``: admins manage their organization's tokens; nobody else can."""

from __future__ import annotations

from typing import Any

from conftest import Tenant, assert_error


def test_admin_creates_lists_and_revokes(client: Any, tenant: Tenant) -> None:
    r = client.post(
        "/v1/tokens", json={"role": "viewer", "name": "dashboard", "ttlDays": 7}, headers=tenant.admin
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["role"] == "viewer" and made["name"] == "dashboard" and made["revokedAt"] is None
    new_headers = {"Authorization": f"Bearer {made['token']}"}
    assert client.get("/nps", headers=new_headers).status_code == 200
    assert (
        client.post("/nps", json={"email": "a@example.com", "score": 5}, headers=new_headers).status_code
        == 403
    )
    listed = client.get("/v1/tokens", headers=tenant.admin).json()
    assert made["jti"] in [t["jti"] for t in listed]
    assert all("token" not in t for t in listed)
    assert client.delete(f"/v1/tokens/{made['jti']}", headers=tenant.admin).status_code == 204
    assert_error(client.get("/nps", headers=new_headers), 401)
    revoked = {t["jti"]: t for t in client.get("/v1/tokens", headers=tenant.admin).json()}[made["jti"]]
    assert revoked["revokedAt"] is not None


def test_editor_and_viewer_cannot_manage_tokens(client: Any, tenant: Tenant) -> None:
    for role in ("editor", "viewer"):
        h = tenant.headers(role)
        assert_error(client.get("/v1/tokens", headers=h), 403)
        assert_error(client.post("/v1/tokens", json={"role": "admin"}, headers=h), 403)
        assert_error(client.delete(f"/v1/tokens/{tenant.jtis['admin']}", headers=h), 403)
    assert client.get("/nps", headers=tenant.admin).status_code == 200


def test_other_organization_tokens_are_invisible(client: Any, tenant: Tenant, other: Tenant) -> None:
    listed = client.get("/v1/tokens", headers=other.admin).json()
    assert not {t["jti"] for t in listed} & set(tenant.jtis.values())
    assert_error(client.delete(f"/v1/tokens/{tenant.jtis['viewer']}", headers=other.admin), 404)
    assert client.get("/nps", headers=tenant.viewer).status_code == 200


def test_bad_token_requests(client: Any, tenant: Tenant) -> None:
    assert_error(client.post("/v1/tokens", json={"role": "owner"}, headers=tenant.admin), 400, "role")
    assert_error(
        client.post("/v1/tokens", json={"role": "viewer", "ttlDays": 0}, headers=tenant.admin), 400, "ttlDays"
    )
    assert_error(client.post("/v1/tokens", json={"role": "viewer", "x": 1}, headers=tenant.admin), 400, "x")
    assert_error(client.delete("/v1/tokens/" + "f" * 32, headers=tenant.admin), 404)
