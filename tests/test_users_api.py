"""``/v1/users``: admins list, add and remove the people who sign in; nobody else can.

A removed person's sessions end at once: their bearer token from ``/v1/auth/login`` is refused
on the very next request.
"""

from __future__ import annotations

import secrets
from typing import Any

from conftest import Tenant, TestDatabase, assert_error
from dashboard import PASSWORD, make_user


def new_address() -> str:
    return f"person-{secrets.token_hex(5)}@example.com"


def login(client: Any, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def test_admin_adds_lists_and_removes_a_person(client: Any, tenant: Tenant) -> None:
    address = new_address()
    r = client.post(
        "/v1/users",
        json={"email": address.upper(), "role": "editor", "password": PASSWORD},
        headers=tenant.admin,
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) == {"id", "email", "role", "createdAt"}
    assert (made["email"], made["role"]) == (address, "editor")
    assert made["createdAt"].endswith("Z")
    listed = client.get("/v1/users", headers=tenant.admin).json()
    assert [u for u in listed if u["id"] == made["id"]] == [made]
    assert all("password" not in str(u) for u in listed)

    # the new person signs in with the role given, and their session works...
    headers = login(client, address)
    assert client.post("/v1/nps-surveys", json={"name": "by the editor"}, headers=headers).status_code == 201
    assert_error(client.get("/v1/users", headers=headers), 403)
    # ...until they are removed: the very next request is refused
    assert client.delete(f"/v1/users/{made['id']}", headers=tenant.admin).status_code == 204
    assert_error(client.get("/nps", headers=headers), 401)
    assert made["id"] not in [u["id"] for u in client.get("/v1/users", headers=tenant.admin).json()]
    assert_error(client.post("/v1/auth/login", json={"email": address, "password": PASSWORD}), 401)
    assert_error(client.delete(f"/v1/users/{made['id']}", headers=tenant.admin), 404)


def test_editors_and_viewers_cannot_manage_people(
    client: Any, database: TestDatabase, tenant: Tenant
) -> None:
    person = make_user(database.db, tenant.org_id, "viewer")
    for role in ("editor", "viewer"):
        h = tenant.headers(role)
        assert_error(client.get("/v1/users", headers=h), 403)
        body = {"email": new_address(), "role": "admin", "password": PASSWORD}
        assert_error(client.post("/v1/users", json=body, headers=h), 403)
        assert_error(client.delete(f"/v1/users/{person.user_id}", headers=h), 403)
    assert person.user_id in [u["id"] for u in client.get("/v1/users", headers=tenant.admin).json()]


def test_bad_input_names_the_field(client: Any, database: TestDatabase, tenant: Tenant) -> None:
    taken = make_user(database.db, tenant.org_id, "viewer")
    h = tenant.admin
    cases: list[tuple[dict[str, Any], str]] = [
        ({"email": "not an address", "role": "viewer", "password": PASSWORD}, "email"),
        ({"email": "a\x00b@example.com", "role": "viewer", "password": PASSWORD}, "email"),
        ({"email": new_address(), "role": "owner", "password": PASSWORD}, "role"),
        ({"email": new_address(), "role": "viewer", "password": "short"}, "password"),
        ({"email": new_address(), "role": "viewer", "password": "x" * 1025}, "password"),
        ({"email": taken.email.upper(), "role": "viewer", "password": PASSWORD}, "email"),
        ({"email": new_address(), "role": "viewer"}, "password"),
        ({"email": new_address(), "role": "viewer", "password": PASSWORD, "name": "x"}, "name"),
    ]
    before = client.get("/v1/users", headers=h).json()
    for body, field in cases:
        assert_error(client.post("/v1/users", json=body, headers=h), 400, field)
    assert client.get("/v1/users", headers=h).json() == before
    assert_error(client.delete("/v1/users/not-an-id", headers=h), 400, "id")
    assert_error(client.delete("/v1/users/a%00b", headers=h), 400, "id")
    assert_error(client.delete("/v1/users/" + "f" * 24, headers=h), 404)


def test_the_last_admin_and_oneself_stay(client: Any, database: TestDatabase, tenant: Tenant) -> None:
    admin = make_user(database.db, tenant.org_id, "admin")
    # the only admin user of the organization (an API token is nobody)
    body = assert_error(client.delete(f"/v1/users/{admin.user_id}", headers=tenant.admin), 409)
    assert "last admin" in body["message"]
    second = make_user(database.db, tenant.org_id, "admin")
    own = login(client, second.email)
    body = assert_error(client.delete(f"/v1/users/{second.user_id}", headers=own), 409)
    assert "your own account" in body["message"]
    # another admin may remove them; then the first is the last admin again
    assert client.delete(f"/v1/users/{second.user_id}", headers=login(client, admin.email)).status_code == 204
    assert_error(client.get("/v1/users", headers=own), 401)
    assert_error(client.delete(f"/v1/users/{admin.user_id}", headers=tenant.admin), 409)


def test_another_organizations_people_are_invisible(
    client: Any, database: TestDatabase, tenant: Tenant, other: Tenant
) -> None:
    person = make_user(database.db, tenant.org_id, "editor")
    listed = client.get("/v1/users", headers=other.admin).json()
    assert person.user_id not in [u["id"] for u in listed]
    assert person.email not in str(listed)
    assert_error(client.delete(f"/v1/users/{person.user_id}", headers=other.admin), 404)
    assert person.user_id in [u["id"] for u in client.get("/v1/users", headers=tenant.admin).json()]
    login(client, person.email)  # still there, still signs in
