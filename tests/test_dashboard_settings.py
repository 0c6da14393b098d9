"""Settings ``/app/settings`` (admins only): API tokens, users and webhooks.

Most behaviour is checked over HTTP against the app (a fresh client per test, signed in with a
session made for the test's person); the flows a person follows are checked in a real browser
against a live server: a token shown once, a user made and removed, a webhook registered, tested
with a real receiver and its delivery seen. Everything happens in one organization made for this
module (and a second one for isolation), on both databases.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook as StandardWebhook

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from mail_helpers import run_jobs
from npsd.auth import service as auth_service
from npsd.kit.models import Organization, User, Webhook
from npsd.web.session import SESSION_COOKIE

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
PAGES = ["/app/settings", "/app/settings/tokens", "/app/settings/users", "/app/settings/webhooks"]


# ------------------------------------------------------------------------------------------ set-up


@dataclass
class Org:
    """This module's organization: its tenant (API tokens per role) and a person per role."""

    tenant: Tenant
    admin: Person
    editor: Person
    viewer: Person


@pytest.fixture(scope="module")
def org(database: TestDatabase) -> Org:
    tenant = make_tenant(database)
    people = {role: make_user(database.db, tenant.org_id, role) for role in ("admin", "editor", "viewer")}
    return Org(tenant, people["admin"], people["editor"], people["viewer"])


@pytest.fixture(scope="module")
def elsewhere(database: TestDatabase) -> Tenant:
    """Another organization, whose objects this module's admin must never reach."""
    return make_tenant(database)


def session_token(database: TestDatabase, person: Person) -> str:
    """A dashboard session for ``person``, as signing in makes it (the sign-in form has its own
    tests; going through it here would spend the per-client attempt limit)."""
    with database.db.transaction() as session:
        org = session.get(Organization, person.org_id)
        user = session.get(User, person.user_id)
        assert org is not None and user is not None
        issued = auth_service.create_token(
            session, database.settings, org, user.role, timedelta(hours=1), user=user, kind="session"
        )
    return issued.token


def browser(app: Any, database: TestDatabase, person: Person | None = None) -> TestClient:
    """An HTTP client that behaves like a browser: cookies, no automatic redirects."""
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    if person is not None:
        client.cookies.set(SESSION_COOKIE, session_token(database, person))
    return client


def csrf(client: TestClient) -> str:
    return csrf_of(client.get("/app/settings/tokens").text)


def field_error(html: str, name: str) -> str:
    """The message shown next to field ``name`` (empty when there is none)."""
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def input_value(html: str, name: str) -> str | None:
    match = re.search(
        rf'<input id="f-{re.escape(name)}" name="{re.escape(name)}" type="[a-z]+" value="([^"]*)"', html
    )
    return match.group(1) if match else None


def api_tokens(database: TestDatabase, org_id: str) -> list[tuple[str, str | None, Any]]:
    with database.db.transaction(write=False) as session:
        org = session.get_one(Organization, org_id)
        return [
            (t.jti, t.name, t.revoked_at) for t in auth_service.list_tokens(session, org) if t.kind == "api"
        ]


def user_emails(database: TestDatabase, org_id: str) -> list[str]:
    with database.db.transaction(write=False) as session:
        return [u.email for u in auth_service.list_users(session, org_id)]


def webhook_rows(database: TestDatabase, org_id: str) -> list[tuple[str, bool, str | None]]:
    from sqlalchemy import select

    with database.db.transaction(write=False) as session:
        hooks = session.scalars(select(Webhook).where(Webhook.org_id == org_id).order_by(Webhook.id))
        return [(h.id, h.is_active, h.description) for h in hooks]


def register(client: Any, url: str, description: str = "", events: list[str] | None = None) -> Any:
    data: dict[str, Any] = {
        "csrf_token": csrf(client),
        "url": url,
        "events": events if events is not None else ["response.created"],
        "description": description,
    }
    return client.post("/app/settings/webhooks", data=data)


def new_address(prefix: str = "person") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.com"


# ----------------------------------------------------------------------------------- the receiver


@dataclass
class Receiver:
    """A real HTTP server on a free loopback port that records what is POSTed to its own path."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
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
                ours = self.path == f"/hook/{receiver.token}"
                if ours:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200 if ours else 404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    assert r.server is not None
    r.server.shutdown()
    r.server.server_close()


# -------------------------------------------------------------------------------------- roles


def test_only_admins_see_and_use_settings(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    overview = admin.get("/app").text
    assert '<a href="/app/settings"' in overview
    for path in PAGES:
        r = admin.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert r.text.count("<h1") == 1
        assert r.headers["cache-control"] == "no-store"
    assert "<h1>Settings</h1>" in admin.get("/app/settings").text

    hook_id = re.search(
        r'/app/settings/webhooks/([0-9a-f]{24})/test"', register(admin, "http://127.0.0.1:9/roles").text
    )
    assert hook_id
    tokens_before = api_tokens(database, org.tenant.org_id)
    users_before = user_emails(database, org.tenant.org_id)
    hooks_before = webhook_rows(database, org.tenant.org_id)
    jti = tokens_before[0][0]
    for person in (org.viewer, org.editor):
        client = browser(app, database, person)
        home = client.get("/app").text
        assert '<a href="/app/settings"' not in home  # no Settings link for them
        token = csrf_of(home)
        for path in [
            *PAGES,
            f"/app/settings/webhooks/{hook_id.group(1)}",
            f"/app/settings/users/{org.admin.user_id}/remove",
        ]:
            r = client.get(path)
            assert r.status_code == 403, (person.role, path)
            assert "Not allowed" in r.text and "admin role" in r.text
        writes = [
            ("/app/settings/tokens", {"name": "sneaky", "role": "admin", "ttlDays": "1"}),
            (f"/app/settings/tokens/{jti}/revoke", {}),
            ("/app/settings/users", {"email": new_address(), "role": "admin", "password": "long enough"}),
            (f"/app/settings/users/{org.admin.user_id}/remove", {}),
            ("/app/settings/webhooks", {"url": "http://127.0.0.1:9/x", "events": ["response.created"]}),
            (f"/app/settings/webhooks/{hook_id.group(1)}/test", {}),
            (f"/app/settings/webhooks/{hook_id.group(1)}/active", {"isActive": "false"}),
            (f"/app/settings/webhooks/{hook_id.group(1)}/delete", {}),
        ]
        for path, data in writes:
            r = client.post(path, data={**data, "csrf_token": token})
            assert r.status_code == 403, (person.role, path, r.status_code)
    assert api_tokens(database, org.tenant.org_id) == tokens_before
    assert user_emails(database, org.tenant.org_id) == users_before
    assert webhook_rows(database, org.tenant.org_id) == hooks_before


def test_without_a_session_settings_ask_to_sign_in(app: Any, database: TestDatabase) -> None:
    client = browser(app, database)
    r = client.get("/app/settings/users")
    assert r.status_code == 303
    assert r.headers["location"] == "/app/login?next=%2Fapp%2Fsettings%2Fusers"
    assert client.post("/app/settings/users", data={"email": new_address()}).status_code == 303


def test_a_post_without_the_csrf_token_changes_nothing(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    hook = re.search(
        r'/app/settings/webhooks/([0-9a-f]{24})/test"', register(admin, "http://127.0.0.1:9/csrf").text
    )
    assert hook
    removable = make_user(database.db, org.tenant.org_id, "viewer")
    tokens_before = api_tokens(database, org.tenant.org_id)
    users_before = user_emails(database, org.tenant.org_id)
    hooks_before = webhook_rows(database, org.tenant.org_id)
    writes = [
        ("/app/settings/tokens", {"name": "forged", "role": "admin", "ttlDays": "1"}),
        (f"/app/settings/tokens/{tokens_before[0][0]}/revoke", {}),
        ("/app/settings/users", {"email": new_address(), "role": "admin", "password": "long enough"}),
        (f"/app/settings/users/{removable.user_id}/remove", {}),
        ("/app/settings/webhooks", {"url": "http://127.0.0.1:9/forged", "events": ["response.created"]}),
        (f"/app/settings/webhooks/{hook.group(1)}/test", {}),
        (f"/app/settings/webhooks/{hook.group(1)}/active", {"isActive": "false"}),
        (f"/app/settings/webhooks/{hook.group(1)}/delete", {}),
    ]
    for path, data in writes:
        for token in (None, "forged"):
            sent = data if token is None else {**data, "csrf_token": token}
            r = admin.post(path, data=sent)
            assert r.status_code == 403, (path, r.status_code)
            assert "security token" in r.text
    assert api_tokens(database, org.tenant.org_id) == tokens_before
    assert user_emails(database, org.tenant.org_id) == users_before
    assert webhook_rows(database, org.tenant.org_id) == hooks_before
    page = admin.get(f"/app/settings/webhooks/{hook.group(1)}").text
    assert "No deliveries yet." in page  # the test event was not queued


# ------------------------------------------------------------------------------------------ tokens


def test_a_new_token_is_shown_once_and_works_until_revoked(
    app: Any, client: TestClient, database: TestDatabase, org: Org
) -> None:
    admin = browser(app, database, org.admin)
    name = "warehouse " + secrets.token_hex(3)
    r = admin.post(
        "/app/settings/tokens",
        data={"csrf_token": csrf(admin), "name": name, "role": "viewer", "ttlDays": "30"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    token = re.search(r'<p class="secret" id="token-value">([^<]+)</p>', r.text)
    assert token, r.text
    assert "will not be shown again" in r.text
    secret = token.group(1)
    headers = {"Authorization": f"Bearer {secret}"}
    # the API knows it by the same name and role
    listed = {t["name"]: t for t in client.get("/v1/tokens", headers=org.tenant.admin).json()}
    assert listed[name]["role"] == "viewer" and listed[name]["kind"] == "api"
    assert client.get("/nps", headers=headers).status_code == 200
    assert (
        client.post("/nps", json={"email": "x@example.com", "score": 1}, headers=headers).status_code == 403
    )

    later = admin.get("/app/settings/tokens").text
    assert secret not in later  # shown once
    assert name in later
    row = re.search(rf"<tr>\s*<td>{re.escape(name)}</td>(.*?)</tr>", later, re.S)
    assert row
    # role, kind, and the use just made (the API notes it)
    assert "<td>Viewer</td>" in row.group(1) and "<td>api</td>" in row.group(1) and "Active" in row.group(1)
    assert "Never" not in row.group(1)
    jti = listed[name]["jti"]
    revoked = admin.post(f"/app/settings/tokens/{jti}/revoke", data={"csrf_token": csrf(admin)})
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/app/settings/tokens?revoked=1")
    assert client.get("/nps", headers=headers).status_code == 401  # at once
    after = admin.get(revoked.headers["location"]).text
    assert "The token was revoked" in after
    row = re.search(rf"<tr>\s*<td>{re.escape(name)}</td>(.*?)</tr>", after, re.S)
    assert row and "Revoked" in row.group(1) and "Revoke</button>" not in row.group(1)
    assert secret not in after


def test_a_hostile_token_name_is_shown_as_text(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    r = admin.post(
        "/app/settings/tokens",
        data={"csrf_token": csrf(admin), "name": HOSTILE, "role": "viewer", "ttlDays": "1"},
    )
    assert r.status_code == 201
    for html in (r.text, admin.get("/app/settings/tokens").text):
        assert HOSTILE not in html
        assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;</td>" in html
        assert 'aria-label="Revoke &lt;script&gt;' in html


def test_sessions_are_not_listed_as_tokens(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    page = admin.get("/app/settings/tokens").text
    assert f"login {org.admin.email}" not in page
    assert ">session<" not in page


def test_token_form_errors_are_next_to_their_fields(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    before = api_tokens(database, org.tenant.org_id)
    cases = [
        ({"name": "x", "role": "viewer", "ttlDays": "0"}, "ttlDays"),
        ({"name": "x", "role": "viewer", "ttlDays": "3651"}, "ttlDays"),
        ({"name": "x", "role": "viewer", "ttlDays": "soon"}, "ttlDays"),
        ({"name": "x", "role": "viewer", "ttlDays": ""}, "ttlDays"),
        ({"name": "x", "role": "owner", "ttlDays": "5"}, "role"),
        ({"name": "n" * 201, "role": "viewer", "ttlDays": "5"}, "name"),
        ({"name": "a\x00b", "role": "viewer", "ttlDays": "5"}, "name"),
    ]
    for data, name in cases:
        r = admin.post("/app/settings/tokens", data={**data, "csrf_token": csrf(admin)})
        assert r.status_code == 400, (data, r.status_code)
        assert field_error(r.text, name), (name, r.text[-3000:])
        assert 'class="secret"' not in r.text
    kept = admin.post(
        "/app/settings/tokens",
        data={"csrf_token": csrf(admin), "name": "kept name", "role": "editor", "ttlDays": "0"},
    ).text
    assert input_value(kept, "name") == "kept name"
    assert input_value(kept, "ttlDays") == "0"
    assert '<option value="editor" selected>' in kept
    assert api_tokens(database, org.tenant.org_id) == before


def test_another_organizations_token_cannot_be_revoked(
    app: Any, client: TestClient, database: TestDatabase, org: Org, elsewhere: Tenant
) -> None:
    admin = browser(app, database, org.admin)
    token = csrf(admin)
    page = admin.post(f"/app/settings/tokens/{elsewhere.jtis['viewer']}/revoke", data={"csrf_token": token})
    assert page.status_code == 404 and "Not found" in page.text
    assert (
        admin.post("/app/settings/tokens/" + "0" * 32 + "/revoke", data={"csrf_token": token}).status_code
        == 404
    )
    assert (
        admin.post("/app/settings/tokens/" + "z" * 65 + "/revoke", data={"csrf_token": token}).status_code
        == 400
    )
    assert client.get("/nps", headers=elsewhere.viewer).status_code == 200
    assert elsewhere.jtis["viewer"] not in admin.get("/app/settings/tokens").text


# ------------------------------------------------------------------------------------------- users


def test_users_are_added_with_a_role_and_sign_in(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    page = admin.get("/app/settings/users").text
    assert org.admin.email in page and org.viewer.email in page
    address = new_address("added")
    r = admin.post(
        "/app/settings/users",
        data={"csrf_token": csrf(admin), "email": address, "role": "editor", "password": "a fine password"},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/app/settings/users?added=1")
    listed = admin.get(r.headers["location"]).text
    assert "The user was added" in listed
    row = re.search(rf"<td>{re.escape(address)}</td>\s*<td>([^<]+)</td>", listed)
    assert row and row.group(1) == "Editor"
    # the new person signs in with that password and has that role
    person = browser(app, database)
    form = person.get("/app/login").text
    signed = person.post(
        "/app/login", data={"email": address, "password": "a fine password", "csrf_token": csrf_of(form)}
    )
    assert signed.status_code == 303
    assert "(Editor)" in person.get("/app").text
    assert person.get("/app/settings").status_code == 403


def test_user_form_errors_are_next_to_their_fields(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    before = user_emails(database, org.tenant.org_id)
    cases = [
        ({"email": "not-an-address", "role": "viewer", "password": "long enough"}, "email", "not a valid"),
        ({"email": "", "role": "viewer", "password": "long enough"}, "email", ""),
        ({"email": new_address(), "role": "viewer", "password": "short"}, "password", "at least 8"),
        (
            {"email": org.viewer.email.upper(), "role": "viewer", "password": "long enough"},
            "email",
            "already exists",
        ),
        ({"email": new_address(), "role": "owner", "password": "long enough"}, "role", ""),
        ({"email": new_address(), "role": "viewer", "password": "p" * 1025}, "password", ""),
    ]
    for data, name, words in cases:
        r = admin.post("/app/settings/users", data={**data, "csrf_token": csrf(admin)})
        assert r.status_code == 400, (data, r.status_code)
        message = field_error(r.text, name)
        assert message and words in message, (name, message)
        assert input_value(r.text, "email") == data["email"]  # kept...
        assert data["password"] not in r.text  # ...but never the password
    assert user_emails(database, org.tenant.org_id) == before


def test_removing_a_user_ends_their_sessions(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    leaving = make_user(database.db, org.tenant.org_id, "editor")
    their_browser = browser(app, database, leaving)
    assert their_browser.get("/app").status_code == 200
    confirm = admin.get(f"/app/settings/users/{leaving.user_id}/remove")
    assert confirm.status_code == 200
    assert f"Remove {leaving.email}?" in confirm.text and "Remove user</button>" in confirm.text
    assert leaving.email in user_emails(database, org.tenant.org_id)  # asking changes nothing
    r = admin.post(
        f"/app/settings/users/{leaving.user_id}/remove", data={"csrf_token": csrf_of(confirm.text)}
    )
    assert (r.status_code, r.headers["location"]) == (303, "/app/settings/users?removed=1")
    assert "The user was removed" in admin.get(r.headers["location"]).text
    assert leaving.email not in user_emails(database, org.tenant.org_id)
    gone = their_browser.get("/app")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/app/login")
    assert "expired=1" in gone.headers["location"]
    again = admin.post(f"/app/settings/users/{leaving.user_id}/remove", data={"csrf_token": csrf(admin)})
    assert again.status_code == 404


def test_an_admin_cannot_remove_themself(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    page = admin.get("/app/settings/users").text
    assert f'/app/settings/users/{org.admin.user_id}/remove"' not in page  # no link for oneself
    assert f'/app/settings/users/{org.viewer.user_id}/remove"' in page
    confirm = admin.get(f"/app/settings/users/{org.admin.user_id}/remove").text
    assert "You cannot remove your own account" in confirm and "Remove user</button>" not in confirm
    r = admin.post(f"/app/settings/users/{org.admin.user_id}/remove", data={"csrf_token": csrf(admin)})
    assert r.status_code == 409
    assert "you cannot remove your own account" in r.text
    assert org.admin.email in user_emails(database, org.tenant.org_id)
    assert admin.get("/app/settings").status_code == 200  # still signed in


def test_another_organizations_user_is_a_404_page(
    app: Any, database: TestDatabase, org: Org, elsewhere: Tenant
) -> None:
    stranger = make_user(database.db, elsewhere.org_id, "viewer")
    admin = browser(app, database, org.admin)
    assert stranger.email not in admin.get("/app/settings/users").text
    for r in (
        admin.get(f"/app/settings/users/{stranger.user_id}/remove"),
        admin.post(f"/app/settings/users/{stranger.user_id}/remove", data={"csrf_token": csrf(admin)}),
        admin.get("/app/settings/users/" + "f" * 24 + "/remove"),
    ):
        assert r.status_code == 404 and "Not found" in r.text
    bad = admin.get("/app/settings/users/nope/remove")
    assert bad.status_code == 400 and "<strong>id</strong>" in bad.text
    assert stranger.email in user_emails(database, elsewhere.org_id)


# ---------------------------------------------------------------------------------------- webhooks


def test_webhook_registration_errors_are_next_to_their_fields(
    app: Any, database: TestDatabase, org: Org
) -> None:
    admin = browser(app, database, org.admin)
    before = webhook_rows(database, org.tenant.org_id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "ftp://example.com/x", "events": ["response.created"]}, "url"),
        ({"url": "", "events": ["response.created"]}, "url"),
        ({"url": "not a url", "events": ["response.created"]}, "url"),
        ({"url": "http://127.0.0.1:9/x", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/x", "events": ["response.exploded"]}, "events"),
        (
            {"url": "http://127.0.0.1:9/x", "events": ["response.created"], "description": "d" * 501},
            "description",
        ),
    ]
    for data, name in cases:
        r = admin.post("/app/settings/webhooks", data={"description": "", **data, "csrf_token": csrf(admin)})
        assert r.status_code == 400, (data, r.status_code)
        assert field_error(r.text, name), (name, r.text[-3000:])
        assert "whsec_" not in r.text
    kept = admin.post(
        "/app/settings/webhooks",
        data={
            "csrf_token": csrf(admin),
            "url": "ftp://kept.example/x",
            "events": ["response.deleted"],
            "description": "kept",
        },
    ).text
    assert input_value(kept, "url") == "ftp://kept.example/x"
    assert input_value(kept, "description") == "kept"
    assert re.search(r'value="response.deleted" checked', kept)
    assert not re.search(r'value="response.created" checked', kept)
    assert webhook_rows(database, org.tenant.org_id) == before


def test_a_webhook_is_registered_with_its_secret_shown_once(
    app: Any, client: TestClient, database: TestDatabase, org: Org
) -> None:
    admin = browser(app, database, org.admin)
    r = register(
        admin, "http://127.0.0.1:9/once", "CRM " + HOSTILE, ["response.created", "unsubscribe.created"]
    )
    assert r.status_code == 201, r.text
    secret = re.search(r'<p class="secret" id="secret-value">(whsec_[^<]+)</p>', r.text)
    assert secret and "will not be shown again" in r.text
    hook_id = re.search(r'/app/settings/webhooks/([0-9a-f]{24})/test"', r.text)
    assert hook_id
    api = client.get(f"/v1/webhooks/{hook_id.group(1)}", headers=org.tenant.admin).json()
    assert api["events"] == ["response.created", "unsubscribe.created"]
    assert api["description"] == "CRM " + HOSTILE and api["isActive"] is True
    for path in (f"/app/settings/webhooks/{hook_id.group(1)}", "/app/settings/webhooks"):
        page = admin.get(path).text
        assert secret.group(1) not in page  # shown once
        assert HOSTILE not in page and "CRM &lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in page
    listed = admin.get("/app/settings/webhooks").text
    assert f'href="/app/settings/webhooks/{hook_id.group(1)}">http://127.0.0.1:9/once</a>' in listed


def test_a_webhook_is_tested_switched_and_deleted(
    app: Any, client: TestClient, database: TestDatabase, org: Org
) -> None:
    admin = browser(app, database, org.admin)
    created = register(admin, "http://127.0.0.1:9/switch").text
    hook = re.search(r'/app/settings/webhooks/([0-9a-f]{24})/test"', created)
    assert hook
    hook_id = hook.group(1)
    page = f"/app/settings/webhooks/{hook_id}"
    r = admin.post(f"{page}/test", data={"csrf_token": csrf(admin)})
    assert (r.status_code, r.headers["location"]) == (303, f"{page}?tested=1")
    shown = admin.get(r.headers["location"]).text
    assert "A test event was queued" in shown
    api = client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=org.tenant.admin).json()
    assert [(d["eventType"], d["status"]) for d in api] == [("webhook.test", "pending")]
    assert "<code>webhook.test</code>" in shown and ">pending</span>" in shown

    off = admin.post(f"{page}/active", data={"csrf_token": csrf(admin), "isActive": "false"})
    assert (off.status_code, off.headers["location"]) == (303, page)
    assert client.get(f"/v1/webhooks/{hook_id}", headers=org.tenant.admin).json()["isActive"] is False
    assert "Activate</button>" in admin.get(page).text
    bad = admin.post(f"{page}/active", data={"csrf_token": csrf(admin), "isActive": "maybe"})
    assert bad.status_code == 400 and "isActive" in bad.text

    confirm = admin.get(f"{page}/delete")
    assert confirm.status_code == 200 and "Delete webhook</button>" in confirm.text
    assert client.get(f"/v1/webhooks/{hook_id}", headers=org.tenant.admin).status_code == 200
    gone = admin.post(f"{page}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert (gone.status_code, gone.headers["location"]) == (303, "/app/settings/webhooks?deleted=1")
    assert "The webhook was deleted" in admin.get(gone.headers["location"]).text
    assert client.get(f"/v1/webhooks/{hook_id}", headers=org.tenant.admin).status_code == 404
    assert admin.get(page).status_code == 404


def test_deliveries_are_paged(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    hook = re.search(
        r'/app/settings/webhooks/([0-9a-f]{24})/test"', register(admin, "http://127.0.0.1:9/paged").text
    )
    assert hook
    page = f"/app/settings/webhooks/{hook.group(1)}"
    token = csrf(admin)
    for _ in range(21):
        assert admin.post(f"{page}/test", data={"csrf_token": token}).status_code == 303
    first = admin.get(page).text
    assert "Deliveries (21)" in first and "Page 1 of 2" in first
    assert first.count("<code>webhook.test</code>") == 20
    assert f'href="{page}?page=2"' in first
    second = admin.get(f"{page}?page=2").text
    assert second.count("<code>webhook.test</code>") == 1 and f'href="{page}?page=1"' in second
    for bad in ("0", "two", "-1"):
        r = admin.get(f"{page}?page={bad}")
        assert r.status_code == 400 and "<strong>page</strong>" in r.text, bad
    assert admin.get("/app/settings/webhooks?page=x").status_code == 400


def test_another_organizations_webhook_is_a_404_page(
    app: Any, client: TestClient, database: TestDatabase, org: Org, elsewhere: Tenant
) -> None:
    theirs = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/theirs", "events": ["response.created"], "description": "theirs"},
        headers=elsewhere.admin,
    ).json()
    admin = browser(app, database, org.admin)
    token = csrf(admin)
    page = f"/app/settings/webhooks/{theirs['id']}"
    for r in (
        admin.get(page),
        admin.get(f"{page}/delete"),
        admin.post(f"{page}/test", data={"csrf_token": token}),
        admin.post(f"{page}/active", data={"csrf_token": token, "isActive": "false"}),
        admin.post(f"{page}/delete", data={"csrf_token": token}),
    ):
        assert (
            r.status_code == 404
            and "Not found" in r.text
            and "theirs" not in r.text.replace(theirs["id"], "")
        )
    assert "127.0.0.1:9/theirs" not in admin.get("/app/settings/webhooks").text
    after = client.get(f"/v1/webhooks/{theirs['id']}", headers=elsewhere.admin).json()
    assert after["isActive"] is True
    assert client.get(f"/v1/webhooks/{theirs['id']}/deliveries", headers=elsewhere.admin).json() == []
    malformed = admin.get("/app/settings/webhooks/not-an-id")
    assert malformed.status_code == 400 and "<strong>id</strong>" in malformed.text


# ------------------------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def site_org(site: Site) -> Org:
    """This module's people on the live server's database (the same database, another org)."""
    with site.db.transaction() as session:
        org = auth_service.ensure_org(session, "settings-" + secrets.token_hex(4))
        org_id = org.id
    people = {role: make_user(site.db, org_id, role) for role in ("admin", "editor", "viewer")}
    return Org(Tenant(org_id, "", {}, {}), people["admin"], people["editor"], people["viewer"])


def test_browser_a_token_is_created_by_keyboard_and_shown_once(
    site: Site, chromium: Any, site_org: Org, request: pytest.FixtureRequest
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, site_org.admin, "/app/settings")
        assert page.inner_text("h1") == "Settings"
        assert serious_violations(page) == []
        page.get_by_role("navigation", name="Settings sections").get_by_role(
            "link", name="API tokens"
        ).click()
        assert page.inner_text("h1") == "API tokens"
        assert serious_violations(page) == []
        # keyboard only: Tab to the form, fill it, submit with Enter
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "f-name":
                break
        assert page.evaluate("document.activeElement.id") == "f-name"
        page.keyboard.type("Nightly export")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "f-role"
        page.keyboard.press("ArrowDown")  # Viewer -> Editor
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "f-ttlDays"
        page.keyboard.press("Control+a")
        page.keyboard.type("7")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Create token"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        secret = page.locator(".secret").inner_text().strip()
        assert secret.count(".") == 2  # a JWT
        assert "will not be shown again" in page.inner_text("main")
        assert serious_violations(page) == []
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(site.url + "/nps", headers=headers).status_code == 200
        row = page.get_by_role("row", name=re.compile("Nightly export"))
        assert "Editor" in row.inner_text()

        page.goto(site.url + "/app/settings/tokens")  # a later page: the token is gone
        assert secret not in page.content()
        with page.expect_navigation():
            page.get_by_role("row", name=re.compile("Nightly export")).get_by_role(
                "button", name=re.compile("^Revoke")
            ).click()
        assert "The token was revoked" in page.inner_text("main")
        assert httpx.get(site.url + "/nps", headers=headers).status_code == 401  # at once


def test_browser_a_user_is_created_signs_in_and_is_removed(
    site: Site, chromium: Any, site_org: Org, request: pytest.FixtureRequest
) -> None:
    address = new_address("newcomer")
    with page_for(chromium, site, request) as admin:
        sign_in(admin, site, site_org.admin, "/app/settings/users")
        assert admin.inner_text("h1") == "Users"
        assert serious_violations(admin) == []
        admin.get_by_label("Email").fill("not an address")
        admin.get_by_label("Role").select_option("editor")
        admin.get_by_label("Password").fill("short")
        with admin.expect_navigation():
            admin.get_by_role("button", name="Add user").click()
        assert admin.locator("#f-email-error").is_visible()
        assert "at least 8 characters" in admin.locator("#f-password-error").inner_text()
        assert admin.get_by_label("Email").input_value() == "not an address"
        assert admin.get_by_label("Role").input_value() == "editor"
        assert serious_violations(admin) == []
        admin.get_by_label("Email").fill(address)
        admin.get_by_label("Password").fill("newcomer's password")
        with admin.expect_navigation():
            admin.get_by_role("button", name="Add user").click()
        assert "The user was added" in admin.inner_text("main")
        assert "Editor" in admin.get_by_role("row", name=re.compile(re.escape(address))).inner_text()

        newcomer = Person(address, "newcomer's password", "editor", site_org.admin.org_id, "")
        with page_for(chromium, site, request) as theirs:
            sign_in(theirs, site, newcomer)
            assert theirs.inner_text("h1") == "Overview"
            assert "(Editor)" in theirs.inner_text("header")
            assert theirs.get_by_role("link", name="Settings").count() == 0

            with admin.expect_navigation():
                admin.get_by_role("link", name=f"Remove {address}").click()
            assert admin.inner_text("h1") == f"Remove {address}?"
            assert serious_violations(admin) == []
            with admin.expect_navigation():
                admin.get_by_role("button", name="Remove user").click()
            assert "The user was removed" in admin.inner_text("main")
            assert address not in admin.inner_text("main table")

            theirs.reload()  # their session ended: the next page is the sign-in form
            assert theirs.url.startswith(site.url + "/app/login")
            assert "Your session has ended" in theirs.inner_text("main")


def test_browser_a_webhook_is_registered_tested_and_its_delivery_shown(
    site: Site, chromium: Any, site_org: Org, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, site_org.admin, "/app/settings/webhooks")
        assert page.inner_text("h1") == "Webhooks"
        assert serious_violations(page) == []
        page.get_by_label("URL").fill(receiver.url)
        for label in (
            "A response is updated",
            "A response is deleted",
            "An invitation cannot be delivered",
            "Someone unsubscribes",
        ):
            page.get_by_label(label).uncheck()
        page.get_by_label("Description").fill(HOSTILE)
        with page.expect_navigation():
            page.get_by_role("button", name="Register webhook").click()
        secret = page.locator("#secret-value").inner_text().strip()
        assert secret.startswith("whsec_")
        # the description is text: visible as typed, no element made of it
        assert HOSTILE in page.inner_text("main")
        assert page.locator("main script").count() == 0 and page.locator("main img").count() == 0
        assert serious_violations(page) == []

        with page.expect_navigation():
            page.get_by_role("button", name="Send test event").click()
        assert "A test event was queued" in page.inner_text("main")
        assert "pending" in page.get_by_role("table", name=re.compile("Deliveries")).inner_text()
        run_jobs(site.db)
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        event = StandardWebhook(secret).verify(body, headers)  # signed with the secret shown once
        assert event["type"] == "webhook.test"
        page.reload()
        table = page.get_by_role("table", name=re.compile("Deliveries"))
        cells = table.locator("tbody tr").first.locator("td").all_inner_texts()
        assert cells[1:5] == ["webhook.test", "succeeded", "1", "200"]
        assert secret not in page.content()
        assert serious_violations(page) == []

        with page.expect_navigation():
            page.get_by_role("link", name="Delete webhook").click()
        assert page.inner_text("h1") == "Delete this webhook?"
        assert serious_violations(page) == []
        with page.expect_navigation():
            page.get_by_role("button", name="Delete webhook").click()
        assert "The webhook was deleted" in page.inner_text("main")
        assert receiver.url not in page.inner_text("main")


def test_browser_viewers_and_editors_are_refused_and_see_no_settings(
    site: Site, chromium: Any, site_org: Org, request: pytest.FixtureRequest
) -> None:
    for person in (site_org.viewer, site_org.editor):
        with page_for(chromium, site, request) as page:
            sign_in(page, site, person)
            assert (
                page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").count() == 0
            )
            response = page.goto(site.url + "/app/settings")
            assert response is not None and response.status == 403
            assert page.inner_text("h1") == "Not allowed"
            assert "admin role" in page.inner_text("main")
            assert serious_violations(page) == []


def test_browser_settings_on_a_phone_and_another_organizations_webhook(
    site: Site, chromium: Any, site_org: Org, request: pytest.FixtureRequest
) -> None:
    with site.db.transaction() as session:
        other = auth_service.ensure_org(session, "settings-other-" + secrets.token_hex(4))
        other_id = other.id
    from npsd.webhooks import service as webhook_service
    from npsd.webhooks.schemas import WebhookCreate

    with site.db.transaction() as session:
        theirs = webhook_service.create_webhook(
            session,
            other_id,
            WebhookCreate(url="http://127.0.0.1:9/theirs", events=["response.created"]),
            True,
        )
    with page_for(chromium, site, request, viewport={"width": 375, "height": 740}) as page:
        sign_in(page, site, site_org.admin, "/app/settings/tokens")
        assert page.inner_text("h1") == "API tokens"
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone
        assert page.get_by_role("button", name="Create token").is_visible()
        assert serious_violations(page) == []
        response = page.goto(site.url + f"/app/settings/webhooks/{theirs['id']}")
        assert response is not None and response.status == 404
        assert page.inner_text("h1") == "Not found"
        assert "127.0.0.1:9/theirs" not in page.content()
        assert serious_violations(page) == []
