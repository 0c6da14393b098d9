"""The digest settings pages ``/app/settings/digests`` (admins only), on both databases.

Over HTTP with a browser-like client (session cookie, CSRF, no automatic redirects): the list,
adding a digest with its errors next to their fields, editing, "Send now" (the mail arrives at
the test SMTP server), deleting, roles and another organization's digest. In a real browser
(Chromium): a digest added through the form by its labels, sent now, and the page free of
serious accessibility findings and of requests to other hosts.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Site, csrf_of, make_user, page_for, serious_violations, sign_in
from mail_helpers import Sink, make_survey, part, run_jobs
from test_dashboard_settings import Org, browser, field_error

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def org(database: TestDatabase) -> Org:
    tenant = make_tenant(database)
    people = {role: make_user(database.db, tenant.org_id, role) for role in ("admin", "editor", "viewer")}
    return Org(tenant, people["admin"], people["editor"], people["viewer"])


def csrf(client: TestClient) -> str:
    return csrf_of(client.get("/app/settings/digests").text)


def form(client: TestClient, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": csrf(client),
        "name": "",
        "surveyId": "",
        "frequency": "daily",
        "weekday": "",
        "hour": "9",
        "timeZone": "Europe/Berlin",
        "emails": f"cx-{secrets.token_hex(4)}@example.com",
        "active": "true",
        **fields,
    }


def add(client: TestClient, **fields: str) -> str:
    r = client.post("/app/settings/digests", data=form(client, **fields))
    assert r.status_code == 303, r.text[:500]
    match = re.fullmatch(r"/app/settings/digests/([0-9a-f]{24})\?created=1", r.headers["location"])
    assert match
    return match.group(1)


def test_a_digest_is_added_edited_sent_and_deleted(
    app: Any, client: TestClient, database: TestDatabase, org: Org, smtp: Sink
) -> None:
    admin = browser(app, database, org.admin)
    survey = make_survey(client, org.tenant, name="Support NPS")
    to = f"cx-{secrets.token_hex(4)}@example.com"
    digest_id = add(
        admin,
        name="Monday " + HOSTILE,
        surveyId=survey["id"],
        frequency="weekly",
        weekday="monday",
        emails=f"{to}, second-{secrets.token_hex(3)}@example.com",
    )
    api = client.get(f"/v1/digests/{digest_id}", headers=org.tenant.admin).json()
    assert api["name"] == "Monday " + HOSTILE and api["surveyId"] == survey["id"]
    assert (api["frequency"], api["weekday"], api["hour"], api["timeZone"]) == (
        "weekly",
        "monday",
        9,
        "Europe/Berlin",
    )
    assert api["emails"][0] == to and len(api["emails"]) == 2 and api["active"] is True

    page = f"/app/settings/digests/{digest_id}"
    shown = admin.get(f"{page}?created=1")
    assert shown.status_code == 200 and "The digest was added" in shown.text
    assert HOSTILE not in shown.text and "Monday &lt;script&gt;" in shown.text
    assert "Weekly on Monday at 09:00, Europe/Berlin" in shown.text and "Support NPS" in shown.text
    listed = admin.get("/app/settings/digests").text
    assert f'href="{page}"' in listed and "Digests (" in listed and HOSTILE not in listed

    sent = admin.post(f"{page}/send", data={"csrf_token": csrf(admin)})
    assert (sent.status_code, sent.headers["location"]) == (303, f"{page}?sent=1")
    assert "A preview was queued" in admin.get(sent.headers["location"]).text
    run_jobs(database.db)
    [mail] = smtp.to(to)
    assert mail["Subject"].startswith("[Preview]") and "Support NPS" in mail["Subject"]
    assert "weekly NPS digest" in part(mail, "plain")
    after = admin.get(page).text
    assert ">sent</span>" in after and "Preview" in after

    saved = admin.post(
        page, data=form(admin, frequency="daily", hour="7", timeZone="Asia/Tokyo", emails=to, active="")
    )
    assert (saved.status_code, saved.headers["location"]) == (303, f"{page}?saved=1")
    api = client.get(f"/v1/digests/{digest_id}", headers=org.tenant.admin).json()
    assert (api["frequency"], api["weekday"], api["hour"], api["timeZone"], api["active"]) == (
        "daily",
        None,
        7,
        "Asia/Tokyo",
        False,
    )
    assert api["surveyId"] is None and api["name"] is None  # the form sent them blank

    confirm = admin.get(f"{page}/delete")
    assert confirm.status_code == 200 and "Delete digest</button>" in confirm.text
    gone = admin.post(f"{page}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert (gone.status_code, gone.headers["location"]) == (303, "/app/settings/digests?deleted=1")
    assert "The digest was deleted" in admin.get(gone.headers["location"]).text
    assert client.get(f"/v1/digests/{digest_id}", headers=org.tenant.admin).status_code == 404
    assert admin.get(page).status_code == 404


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"timeZone": ""}, "timeZone"),
        ({"hour": "25"}, "hour"),
        ({"hour": "nine"}, "hour"),
        ({"frequency": "weekly"}, "weekday"),
        ({"frequency": "monthly"}, "frequency"),
        ({"emails": ""}, "emails"),
        ({"emails": "someone, not-an-address"}, "emails"),
        ({"surveyId": "0" * 24}, "surveyId"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_errors_are_shown_next_to_their_fields(
    app: Any, database: TestDatabase, org: Org, fields: dict[str, str], name: str
) -> None:
    admin = browser(app, database, org.admin)
    before = admin.get("/app/settings/digests").text.count('href="/app/settings/digests/')
    r = admin.post("/app/settings/digests", data=form(admin, **fields))
    assert r.status_code == 400, r.text[:300]
    assert field_error(r.text, name), (name, r.text[:2000])
    assert 'aria-invalid="true"' in r.text
    assert admin.get("/app/settings/digests").text.count('href="/app/settings/digests/') == before
    # on the edit form too, and nothing changes
    digest_id = add(admin)
    edited = admin.post(f"/app/settings/digests/{digest_id}", data=form(admin, **fields))
    assert edited.status_code == 400 and field_error(edited.text, name)


def test_only_admins_reach_digest_settings(app: Any, database: TestDatabase, org: Org) -> None:
    admin = browser(app, database, org.admin)
    digest_id = add(admin)
    for person in (org.editor, org.viewer):
        other = browser(app, database, person)
        for path in ("/app/settings/digests", f"/app/settings/digests/{digest_id}"):
            assert other.get(path).status_code == 403
    assert browser(app, database).get("/app/settings/digests").status_code in (303, 401)
    # a form without its CSRF token changes nothing
    r = admin.post(f"/app/settings/digests/{digest_id}/delete", data={})
    assert r.status_code in (400, 403)
    assert admin.get(f"/app/settings/digests/{digest_id}").status_code == 200


def test_another_organizations_digest_is_a_404_page(
    app: Any, client: TestClient, database: TestDatabase, org: Org
) -> None:
    elsewhere: Tenant = make_tenant(database)
    theirs = client.post(
        "/v1/digests",
        json={
            "name": "theirs",
            "frequency": "daily",
            "hour": 9,
            "timeZone": "UTC",
            "emails": ["t@example.com"],
        },
        headers=elsewhere.admin,
    ).json()
    admin = browser(app, database, org.admin)
    token = csrf(admin)
    page = f"/app/settings/digests/{theirs['id']}"
    for r in (
        admin.get(page),
        admin.get(f"{page}/delete"),
        admin.post(f"{page}/send", data={"csrf_token": token}),
        admin.post(page, data=form(admin, name="hijacked")),
        admin.post(f"{page}/delete", data={"csrf_token": token}),
    ):
        assert r.status_code == 404 and "theirs" not in r.text.replace(theirs["id"], "")
    after = client.get(f"/v1/digests/{theirs['id']}", headers=elsewhere.admin).json()
    assert after == theirs
    assert client.get(f"/v1/digests/{theirs['id']}/deliveries", headers=elsewhere.admin).json() == []
    assert admin.get("/app/settings/digests/not-an-id").status_code == 400


def test_a_digest_added_and_sent_in_a_browser(
    site: Site, chromium: Any, database: TestDatabase, org: Org, smtp: Sink, request: pytest.FixtureRequest
) -> None:
    to = f"browser-{secrets.token_hex(4)}@example.com"
    with page_for(chromium, site, request) as page:
        sign_in(page, site, org.admin, "/app/settings/digests")
        assert page.get_by_role("heading", level=1).inner_text() == "Digests"
        assert page.get_by_role("link", name="Digests").first.get_attribute("aria-current") == "true"
        page.get_by_label("Name").fill("Browser digest")
        page.get_by_label("Frequency").select_option("weekly")
        page.get_by_label("Weekday (weekly digests)").select_option("friday")
        page.get_by_label("Hour").select_option("16")
        page.get_by_label("Time zone").fill("America/New_York")
        page.get_by_label("Recipients").fill(to)
        with page.expect_navigation():
            page.get_by_role("button", name="Add digest").click()
        assert "The digest was added" in page.content()
        assert "Weekly on Friday at 16:00, America/New_York" in page.content()
        assert serious_violations(page) == []
        with page.expect_navigation():
            page.get_by_role("button", name="Send now").click()
        assert "A preview was queued" in page.content()
        run_jobs(database.db)
        page.reload()
        assert page.locator("td span.badge").first.inner_text() == "sent"
        assert serious_violations(page) == []
    [mail] = smtp.to(to)
    assert "Browser digest" in part(mail, "plain")


def test_the_digests_feed_link_opens_the_periods_detractors(
    app: Any, client: TestClient, database: TestDatabase, org: Org
) -> None:
    from test_digests import answers_in_two_days

    survey = make_survey(client, org.tenant)
    answers_in_two_days(client, org.tenant, survey["id"])
    digest = client.post(
        "/v1/digests",
        json={
            "surveyId": survey["id"],
            "frequency": "daily",
            "hour": 9,
            "timeZone": "UTC",
            "emails": ["t@example.com"],
        },
        headers=org.tenant.admin,
    ).json()
    figures = client.post(f"/v1/digests/{digest['id']}/send", headers=org.tenant.admin).json()["figures"]
    url = figures["feedUrl"]
    feed = browser(app, database, org.admin).get(url[url.index("/app/responses") :])
    assert feed.status_code == 200
    assert "<strong data-count>2 responses</strong>" in feed.text
    assert "Too slow" in feed.text and "The export &lt;broke&gt; again" in feed.text
    assert "today&#39;s answer" not in feed.text and "other survey" not in feed.text
