"""Signing in and out of the dashboard: sessions, cookies, CSRF, rate limits, security headers.

Over HTTP against the app (each test its own client, so cookies never leak between tests), and
in a real browser for the sign-in form itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase
from dashboard import PASSWORD, Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from npsd.app import create_app
from npsd.auth import passwords
from npsd.auth import service as auth_service
from npsd.kit.ids import new_id
from npsd.kit.models import Organization
from npsd.web.session import SESSION_COOKIE


def browser_client(app: Any, base_url: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base_url, raise_server_exceptions=False, follow_redirects=False)


def sign_in_http(client: TestClient, email: str, password: str, next_path: str | None = None) -> Any:
    form = client.get("/app/login", params={"next": next_path} if next_path else None)
    assert form.status_code == 200
    data = {"email": email, "password": password, "csrf_token": csrf_of(form.text)}
    if next_path:
        data["next"] = next_path
    return client.post("/app/login", data=data)


@pytest.fixture
def person(database: TestDatabase, tenant: Tenant) -> Person:
    return make_user(database.db, tenant.org_id, "viewer")


def test_a_browser_opening_the_server_lands_on_the_sign_in_page(app: Any) -> None:
    client = browser_client(app)
    root = client.get("/")
    assert (root.status_code, root.headers["location"]) == (303, "/app")
    overview = client.get("/app")
    assert overview.status_code == 303
    assert overview.headers["location"] == "/app/login?next=%2Fapp"
    deep = client.get("/app/responses?category=detractor")
    assert deep.headers["location"] == "/app/login?next=%2Fapp%2Fresponses%3Fcategory%3Ddetractor"


def test_sign_in_sets_a_safe_cookie_and_returns_to_the_page(app: Any, person: Person) -> None:
    client = browser_client(app)
    r = sign_in_http(client, person.email, person.password, next_path="/app/companies")
    assert (r.status_code, r.headers["location"]) == (303, "/app/companies")
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age"} <= attributes
    assert re.search(r"samesite=lax", cookie, re.I)
    assert "secure" not in attributes  # NPSD_BASE_URL is http here
    page = client.get("/app")
    assert page.status_code == 200
    assert "<h1>Overview</h1>" in page.text
    assert person.email in page.text


def test_the_cookie_is_secure_when_the_base_url_is_https(database: TestDatabase, tenant: Tenant) -> None:
    settings = database.settings.model_copy(update={"base_url": "https://nps.example.com"})
    person = make_user(database.db, tenant.org_id, "admin")
    client = browser_client(create_app(settings, database.db), base_url="https://testserver")
    r = sign_in_http(client, person.email, person.password)
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "secure" in cookie.lower()


def test_an_unknown_address_and_a_wrong_password_get_the_same_answer(app: Any, person: Person) -> None:
    wrong_password = sign_in_http(browser_client(app), person.email, "not the password")
    unknown = sign_in_http(browser_client(app), "nobody-" + person.email, person.password)
    assert wrong_password.status_code == unknown.status_code == 401
    assert "Wrong email or password." in wrong_password.text
    assert "Wrong email or password." in unknown.text
    # what was typed stays, the password does not
    assert f'value="{person.email}"' in wrong_password.text
    assert "not the password" not in wrong_password.text
    assert SESSION_COOKIE not in "".join(wrong_password.headers.get_list("set-cookie"))


def test_an_unknown_address_costs_the_same_password_check_as_a_known_one(
    app: Any, person: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "The same time" without a timed test: both answers run exactly one Argon2 verification,
    with the same cost parameters (memory, time, parallelism), so neither is measurably quicker."""
    checked: list[str] = []
    real = passwords._hasher

    class Counting:
        def verify(self, hash: str, password: str) -> bool:
            checked.append(hash.rsplit("$", 2)[0])  # "$argon2id$v=19$m=...,t=...,p=..."
            return bool(real.verify(hash, password))

    monkeypatch.setattr(passwords, "_hasher", Counting())
    sign_in_http(browser_client(app), person.email, "not the password")
    known = list(checked)
    checked.clear()
    sign_in_http(browser_client(app), "nobody-" + person.email, person.password)
    assert len(known) == len(checked) == 1
    assert known == checked and known[0].startswith("$argon2id$")


def test_empty_fields_are_named_next_to_them(app: Any) -> None:
    r = sign_in_http(browser_client(app), "", "")
    assert r.status_code == 400
    assert 'id="f-email-error"' in r.text and "Enter your email address." in r.text
    assert 'id="f-password-error"' in r.text and "Enter your password." in r.text


def test_sign_in_without_the_forms_token_is_refused(app: Any, person: Person) -> None:
    client = browser_client(app)
    r = client.post("/app/login", data={"email": person.email, "password": person.password})
    assert r.status_code == 403
    assert SESSION_COOKIE not in "".join(r.headers.get_list("set-cookie"))


def test_sign_in_never_sends_a_person_to_another_site(app: Any, person: Person) -> None:
    for target in ("https://evil.example/app", "//evil.example/app", "/app\\@evil.example", "/elsewhere"):
        r = sign_in_http(browser_client(app), person.email, person.password, next_path=target)
        assert (r.status_code, r.headers["location"]) == (303, "/app"), target


def test_attempts_are_limited_per_address(database: TestDatabase, person: Person) -> None:
    client = browser_client(create_app(database.settings, database.db))  # an app with fresh counters
    answers = [sign_in_http(client, person.email, "wrong password").status_code for _ in range(10)]
    assert answers == [401] * 10
    limited = sign_in_http(client, person.email, person.password)  # even the right password now
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "Too many failed sign-in attempts" in limited.text
    # another address from the same client is still let in
    other = make_user(database.db, person.org_id, "viewer")
    assert sign_in_http(client, other.email, other.password).status_code == 303


def test_only_failed_attempts_count(database: TestDatabase, person: Person) -> None:
    """An office signing in all morning behind one address is never locked out."""
    client = browser_client(create_app(database.settings, database.db))
    answers = {sign_in_http(client, person.email, person.password).status_code for _ in range(35)}
    assert answers == {303}


def test_attempts_are_limited_per_client(database: TestDatabase, tenant: Tenant) -> None:
    client = browser_client(create_app(database.settings, database.db))
    answers = {sign_in_http(client, f"guess{i}@example.com", "guess-guess").status_code for i in range(30)}
    assert answers == {401}
    person = make_user(database.db, tenant.org_id, "viewer")
    assert sign_in_http(client, person.email, person.password).status_code == 429


def test_sign_out_ends_the_session_on_the_server(app: Any, person: Person) -> None:
    client = browser_client(app)
    assert sign_in_http(client, person.email, person.password).status_code == 303
    cookie = client.cookies[SESSION_COOKIE]
    page = client.get("/app")
    out = client.post("/app/logout", data={"csrf_token": csrf_of(page.text)})
    assert (out.status_code, out.headers["location"]) == (303, "/app/login?signed_out=1")
    # the old cookie, kept by someone, no longer opens anything
    replay = browser_client(app)
    replay.cookies.set(SESSION_COOKIE, cookie)
    r = replay.get("/app")
    assert r.status_code == 303 and r.headers["location"].startswith("/app/login")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(app: Any, person: Person) -> None:
    client = browser_client(app)
    sign_in_http(client, person.email, person.password)
    for data in ({}, {"csrf_token": "forged"}):
        r = client.post("/app/logout", data=data)
        assert r.status_code == 403
        assert "security token" in r.text
    assert client.get("/app").status_code == 200  # still signed in: the sign-out did not happen


def routes_of(routes: Any, prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, included routers walked (FastAPI keeps them nested)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from routes_of(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods)


def test_every_form_of_the_dashboard_refuses_a_post_without_the_token(
    app: Any, database: TestDatabase, person: Person
) -> None:
    """Not only sign-out: each POST route of /app (as an admin, so that no role check answers
    first, and with made-up ids, so that nothing could be changed anyway) is a 403 without the
    session's CSRF token. A route added later without the check fails here."""
    admin = make_user(database.db, person.org_id, "admin")
    client = browser_client(app)
    sign_in_http(client, admin.email, admin.password)
    posts = sorted(
        path for path, methods in routes_of(app.routes) if "POST" in methods and path.startswith("/app/")
    )
    assert len(posts) > 20  # the dashboard's forms, found
    answers = {}
    for path in posts:
        if path == "/app/login":  # before a session there is none: it has its own form token
            continue
        url = re.sub(r"\{[^}]+\}", new_id(), path)
        answers[path] = client.post(url, data={"name": "x"}).status_code
    assert {p: s for p, s in answers.items() if s != 403} == {}
    assert client.get("/app").status_code == 200  # still signed in


def test_another_sessions_csrf_token_does_not_work(app: Any, person: Person) -> None:
    first, second = browser_client(app), browser_client(app)
    sign_in_http(first, person.email, person.password)
    sign_in_http(second, person.email, person.password)
    token_of_first = csrf_of(first.get("/app").text)
    assert second.post("/app/logout", data={"csrf_token": token_of_first}).status_code == 403


def test_an_expired_session_asks_to_sign_in_again(database: TestDatabase, person: Person, app: Any) -> None:
    with database.db.transaction() as session:
        org = session.get(Organization, person.org_id)
        assert org is not None
        from npsd.kit.models import User

        user = session.get(User, person.user_id)
        issued = auth_service.create_token(
            session, database.settings, org, "viewer", timedelta(seconds=-120), user=user, kind="session"
        )
    client = browser_client(app)
    client.cookies.set(SESSION_COOKIE, issued.token)
    r = client.get("/app")
    assert r.status_code == 303
    assert "expired=1" in r.headers["location"]
    assert "Your session has ended" in client.get(r.headers["location"]).text


def test_an_api_token_in_the_cookie_is_not_a_session(app: Any, tenant: Tenant) -> None:
    client = browser_client(app)
    client.cookies.set(SESSION_COOKIE, tenant.tokens["admin"])  # a machine token has no user
    assert client.get("/app").status_code == 303


def test_pages_send_a_strict_content_security_policy(app: Any, person: Person) -> None:
    client = browser_client(app)
    for r in (
        client.get("/app/login"),
        (sign_in_http(client, person.email, person.password), client.get("/app"))[1],
    ):
        policy = r.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert r.headers["x-frame-options"] == "DENY"
        # every script and stylesheet is npsd's own, under a content-hashed name
        for src in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', r.text):
            assert re.fullmatch(r"/app/static/[\w/.-]+\.[0-9a-f]{12}\.(js|css)", src), src
            asset = client.get(src)
            assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]


def test_sign_in_and_out_in_a_browser(site: Site, chromium: Any, request: pytest.FixtureRequest) -> None:
    from npsd.kit.models import Organization as Org

    with site.db.transaction() as session:
        org = auth_service.ensure_org(session, "browser-auth-" + PASSWORD[:3])
        org_id = session.get(Org, org.id).id  # type: ignore[union-attr]
    person = make_user(site.db, org_id, "admin")
    with page_for(chromium, site, request) as page:
        page.goto(site.url + "/")
        assert page.url == site.url + "/app/login?next=%2Fapp"
        assert serious_violations(page) == []
        page.get_by_label("Email").fill(person.email)
        page.get_by_label("Password").fill("wrong password")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        assert "Wrong email or password." in page.inner_text("main")
        assert page.get_by_label("Email").input_value() == person.email
        sign_in(page, site, person)
        assert page.url == site.url + "/app"
        assert page.inner_text("h1") == "Overview"
        nav = page.get_by_role("navigation")
        for name in ("Overview", "Surveys", "Responses", "Companies", "Settings"):
            assert nav.get_by_role("link", name=name).count() == 1, name
        assert serious_violations(page) == []
        # a form posted from elsewhere with the browser's cookie but without the page's token
        # (what a cross-site form would send) is refused, and the session goes on
        for form in ({}, {"csrf_token": "forged"}):
            refused = page.request.post(site.url + "/app/logout", form=form, max_redirects=0)
            assert refused.status == 403 and "security token" in refused.text()
        page.reload()
        assert page.inner_text("h1") == "Overview"
        with page.expect_navigation():
            page.get_by_role("button", name="Sign out").click()
        assert "You are signed out." in page.inner_text("main")
        page.goto(site.url + "/app")
        assert page.url.startswith(site.url + "/app/login")
