"""The alert settings ``/app/settings/alerts`` (admins only), on both databases.

Form handling is checked over HTTP against the app (a client with a session cookie made for the
test's person); the flow a team follows is checked in a real browser against a live server: a
rule made with the form, an answer written through the API, the alert arriving by e-mail (test
SMTP server) and in chat (a local receiver), and the delivery log showing both.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from alert_helpers import ChatReceiver, chat_receiver
from conftest import Tenant, TestDatabase
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from mail_helpers import part, run_jobs
from npsd.auth import service as auth_service
from npsd.kit.models import AlertRule, Organization, User
from npsd.web.session import SESSION_COOKIE

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def session_token(database: TestDatabase, person: Person) -> str:
    with database.db.transaction() as session:
        org = session.get(Organization, person.org_id)
        user = session.get(User, person.user_id)
        assert org is not None and user is not None
        issued = auth_service.create_token(
            session, database.settings, org, user.role, timedelta(hours=1), user=user, kind="session"
        )
    return issued.token


def browser(app: Any, database: TestDatabase, person: Person) -> TestClient:
    """An HTTP client that behaves like a browser: cookies, no automatic redirects."""
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, session_token(database, person))
    return client


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def rules_of(database: TestDatabase, org_id: str) -> list[AlertRule]:
    with database.db.transaction(write=False) as session:
        rules = list(session.scalars(select(AlertRule).where(AlertRule.org_id == org_id)))
        session.expunge_all()
        return rules


@pytest.fixture
def admin_person(database: TestDatabase, tenant: Tenant) -> Person:
    return make_user(database.db, tenant.org_id, "admin")


@pytest.fixture(autouse=True)
def _no_delay(database: TestDatabase) -> Iterator[None]:
    """Alerts about new answers wait NPSD_ALERT_DELAY_SECONDS for a comment; not here."""
    before = database.settings.alert_delay_seconds
    database.settings.alert_delay_seconds = 0
    yield
    database.settings.alert_delay_seconds = before


@pytest.fixture(autouse=True)
def _drop_rules(database: TestDatabase, tenant: Tenant) -> Iterator[None]:
    yield
    with database.db.transaction() as session:
        session.execute(delete(AlertRule).where(AlertRule.org_id == tenant.org_id))


def form(client: TestClient, **fields: str) -> dict[str, str]:
    base = {
        "name": "Detractors",
        "surveyId": "",
        "companyId": "",
        "scoreAtMost": "6",
        "commentContains": "",
        "emails": "",
        "chatWebhookUrl": "",
        "isActive": "true",
    }
    return {**base, **fields, "csrf_token": csrf_of(client.get("/app/settings/alerts").text)}


# ------------------------------------------------------------------------------------------- HTTP


def test_a_rule_is_made_changed_and_deleted_with_the_form(
    app: Any, client: TestClient, database: TestDatabase, tenant: Tenant, admin_person: Person
) -> None:
    admin = browser(app, database, admin_person)
    survey = client.post("/v1/nps-surveys", json={"name": "Onboarding"}, headers=tenant.editor).json()
    page = admin.get("/app/settings/alerts")
    assert page.status_code == 200 and "No alert rules yet." in page.text
    assert f'<option value="{survey["id"]}">Onboarding</option>' in page.text
    r = admin.post(
        "/app/settings/alerts",
        data=form(
            admin,
            name="Onboarding detractors",
            surveyId=survey["id"],
            commentContains="refund, cancel my account",
            emails="a@example.com\nb@example.com, c@example.com",
        ),
    )
    assert r.status_code == 303, r.text
    rule_id = r.headers["location"].split("/")[-1].split("?")[0]
    api = client.get(f"/v1/alert-rules/{rule_id}", headers=tenant.admin).json()
    assert (api["name"], api["surveyId"], api["scoreAtMost"], api["isActive"]) == (
        "Onboarding detractors", survey["id"], 6, True,
    )  # fmt: skip
    assert api["commentContains"] == ["refund", "cancel my account"]
    assert api["emails"] == ["a@example.com", "b@example.com", "c@example.com"]

    shown = admin.get(r.headers["location"]).text
    assert "The rule is saved." in shown and "No alerts yet." in shown
    assert "score 6 or lower; survey Onboarding; comment mentions refund or cancel my account" in shown
    listed = admin.get("/app/settings/alerts").text
    assert f'<a href="/app/settings/alerts/{rule_id}">Onboarding detractors</a>' in listed

    # the edit form shows the rule; emptying the score and switching off saves as the API would
    r = admin.post(
        f"/app/settings/alerts/{rule_id}",
        data={**form(admin, name="Renamed", emails="a@example.com", surveyId=survey["id"]), "scoreAtMost": ""}
        | {"isActive": ""},
    )
    assert r.status_code == 303, r.text
    api = client.get(f"/v1/alert-rules/{rule_id}", headers=tenant.admin).json()
    assert (api["name"], api["scoreAtMost"], api["isActive"], api["emails"]) == (
        "Renamed", None, False, ["a@example.com"],
    )  # fmt: skip
    assert api["commentContains"] is None  # the form sent an empty field: no words

    confirm = admin.get(f"/app/settings/alerts/{rule_id}/delete")
    assert confirm.status_code == 200 and "Delete this alert rule?" in confirm.text
    gone = admin.post(f"/app/settings/alerts/{rule_id}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert gone.status_code == 303 and gone.headers["location"] == "/app/settings/alerts?deleted=1"
    assert rules_of(database, tenant.org_id) == []


def test_form_errors_are_next_to_their_fields(
    app: Any, database: TestDatabase, tenant: Tenant, admin_person: Person
) -> None:
    admin = browser(app, database, admin_person)
    cases = [
        ({"name": ""}, "name"),
        ({"emails": "", "chatWebhookUrl": ""}, "emails"),
        ({"emails": "not-an-address"}, "emails"),
        ({"emails": "a@example.com", "scoreAtMost": "eleven"}, "scoreAtMost"),
        ({"emails": "a@example.com", "scoreAtMost": "11"}, "scoreAtMost"),
        ({"emails": "a@example.com", "chatWebhookUrl": "ftp://x.example/"}, "chatWebhookUrl"),
        ({"emails": "a@example.com", "surveyId": "0" * 24}, "surveyId"),
        ({"emails": "a@example.com", "companyId": "nope"}, "companyId"),
        ({"emails": "a@example.com", "commentContains": "x" * 201}, "commentContains"),
    ]
    for fields, name in cases:
        r = admin.post("/app/settings/alerts", data=form(admin, **fields))
        assert r.status_code in (400, 404), (fields, r.status_code)
        assert field_error(r.text, name), (name, r.text[-2000:])
        if fields.get("emails"):
            assert fields["emails"] in r.text  # what was typed is kept
    assert rules_of(database, tenant.org_id) == []


def test_only_admins_and_only_their_organization(
    app: Any, client: TestClient, database: TestDatabase, tenant: Tenant, other: Tenant, admin_person: Person
) -> None:
    theirs = client.post(
        "/v1/alert-rules", json={"name": "Theirs", "emails": ["x@example.com"]}, headers=other.admin
    ).json()
    admin = browser(app, database, admin_person)
    for path in (f"/app/settings/alerts/{theirs['id']}", f"/app/settings/alerts/{theirs['id']}/delete"):
        r = admin.get(path)
        assert r.status_code == 404 and "Theirs" not in r.text
    token = csrf_of(admin.get("/app/settings/alerts").text)
    r = admin.post(f"/app/settings/alerts/{theirs['id']}/delete", data={"csrf_token": token})
    assert r.status_code == 404
    r = admin.post(
        f"/app/settings/alerts/{theirs['id']}", data=form(admin, name="hijacked", emails="h@example.com")
    )
    assert r.status_code == 404
    assert client.get(f"/v1/alert-rules/{theirs['id']}", headers=other.admin).json()["name"] == "Theirs"
    assert "Theirs" not in admin.get("/app/settings/alerts").text
    assert admin.get("/app/settings/alerts/not-an-id").status_code == 400

    # without the CSRF token nothing changes
    r = admin.post("/app/settings/alerts", data={"name": "forged", "emails": "f@example.com"})
    assert r.status_code == 403 and rules_of(database, tenant.org_id) == []

    for role in ("viewer", "editor"):
        person = make_user(database.db, tenant.org_id, role)
        someone = browser(app, database, person)
        assert someone.get("/app/settings/alerts").status_code == 403
        assert 'href="/app/settings/alerts"' not in someone.get("/app").text


# ---------------------------------------------------------------------------------------- browser


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    with chat_receiver() as receiver:
        yield receiver


def test_browser_a_rule_is_made_and_its_alerts_arrive_and_are_logged(
    site: Site, chromium: Any, chat: ChatReceiver, request: pytest.FixtureRequest
) -> None:
    with site.db.transaction() as session:
        org = auth_service.ensure_org(session, "alerts-" + secrets.token_hex(4))
        org_id = org.id
        token = auth_service.create_token(session, site.settings, org, "editor", timedelta(hours=1)).token
    admin = make_user(site.db, org_id, "admin")
    site.settings.alert_delay_seconds = 0  # this module's server; the delay has its own test
    team = f"team-{secrets.token_hex(4)}@example.com"
    with page_for(chromium, site, request) as page:
        sign_in(page, site, admin, "/app/settings")
        with page.expect_navigation():
            page.get_by_role("navigation", name="Settings sections").get_by_role(
                "link", name="Alerts"
            ).click()
        assert page.inner_text("h1") == "Alerts"
        assert serious_violations(page) == []

        # a mistake first: no one to tell
        page.get_by_label("Name").fill(HOSTILE)
        page.get_by_label("Score").select_option("4")
        with page.expect_navigation():
            page.get_by_role("button", name="Create rule").click()
        assert "give at least one address" in page.locator("#f-emails-error").inner_text()
        assert page.get_by_label("Name").input_value() == HOSTILE  # kept as typed
        assert serious_violations(page) == []

        page.get_by_label("E-mail addresses").fill(team)
        page.get_by_label("Chat webhook URL").fill(chat.url)
        page.get_by_label("Words in the comment").fill("slow, broken")
        with page.expect_navigation():
            page.get_by_role("button", name="Create rule").click()
        assert "The rule is saved." in page.inner_text("main")
        assert HOSTILE in page.inner_text("h1")
        assert page.locator("main script").count() == 0 and page.locator("main img").count() == 0
        rule_path = page.url.split("?")[0]

        headers = {"Authorization": f"Bearer {token}"}
        for score, comment in ((3, "Support is slow"), (2, "Great people"), (9, "slow but fine")):
            r = httpx.post(
                site.url + "/nps",
                json={"email": f"c{score}@example.com", "score": score, "comment": comment},
                headers=headers,
            )
            assert r.status_code == 200, r.text
        run_jobs(site.db)

        [mail] = site.sink.to(team)
        assert "score 3" in str(mail["Subject"]) and "Support is slow" in part(mail, "plain")
        [message] = chat.messages()
        assert "Support is slow" in message["text"]

        page.goto(rule_path)
        table = page.get_by_role("table", name=re.compile("Deliveries"))
        rows = [r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all()]
        assert sorted((r[2], r[4], r[5]) for r in rows) == [("Chat", "sent", "1"), ("E-mail", "sent", "1")]
        assert {r[3] for r in rows} == {team, chat.url}
        assert serious_violations(page) == []

        with page.expect_navigation():
            page.get_by_role("link", name="Delete this rule").click()
        with page.expect_navigation():
            page.get_by_role("button", name="Delete rule").click()
        assert "The rule was deleted" in page.inner_text("main")
