"""The answer page ``/app/answers/{id}`` and the feed's follow-up filters, on both databases.

Over HTTP against the app: who may read and change what, errors next to their field, another
organization's answer, the feed's filters and badges. In a real browser against a live server:
an editor tags an answer, adds a note, sets its status and assignee, then finds it with the
feed's filters.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, make_tenant, post_nps
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from npsd.auth import service as auth_service
from npsd.kit.models import Organization, User
from npsd.web.session import SESSION_COOKIE


def session_token(database: TestDatabase, person: Person) -> str:
    with database.db.transaction() as session:
        org = session.get_one(Organization, person.org_id)
        user = session.get_one(User, person.user_id)
        issued = auth_service.create_token(
            session, database.settings, org, user.role, timedelta(hours=1), user=user, kind="session"
        )
    return issued.token


def browser(app: Any, database: TestDatabase, person: Person) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, session_token(database, person))
    return client


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


@pytest.fixture
def team(database: TestDatabase) -> tuple[Tenant, dict[str, Person]]:
    tenant = make_tenant(database)
    return tenant, {
        role: make_user(database.db, tenant.org_id, role) for role in ("admin", "editor", "viewer")
    }


def test_viewers_read_the_answer_page_without_forms(
    client: Any, app: Any, database: TestDatabase, team: tuple[Tenant, dict[str, Person]]
) -> None:
    tenant, people = team
    rec = post_nps(client, tenant, "ann@acme.example", 3, comment="Too slow")
    client.put(f"/v1/answers/{rec['_id']}/tags", json={"tags": ["Billing"]}, headers=tenant.editor)
    client.post(f"/v1/answers/{rec['_id']}/notes", json={"text": "<b>called</b>"}, headers=tenant.editor)
    viewer = browser(app, database, people["viewer"])
    page = viewer.get(f"/app/answers/{rec['_id']}")
    assert page.status_code == 200, page.text
    assert "Too slow" in page.text and "Billing" in page.text
    assert "&lt;b&gt;called&lt;/b&gt;" in page.text and "<b>called</b>" not in page.text
    assert 'action="/app/answers/' not in page.text  # no forms for a viewer
    r = viewer.post(
        f"/app/answers/{rec['_id']}/tags",
        data={"tags": "x", "csrf_token": csrf_of(page.text) if "csrf_token" in page.text else ""},
    )
    assert r.status_code in (403, 400)
    assert client.get(f"/v1/answers/{rec['_id']}", headers=tenant.viewer).json()["tags"] == ["Billing"]


def test_editors_change_tags_notes_and_follow_up_with_errors_next_to_fields(
    client: Any, app: Any, database: TestDatabase, team: tuple[Tenant, dict[str, Person]]
) -> None:
    tenant, people = team
    rec = post_nps(client, tenant, "bob@acme.example", 2)
    editor = browser(app, database, people["editor"])
    url = f"/app/answers/{rec['_id']}"
    token = csrf_of(editor.get(url).text)
    r = editor.post(f"{url}/tags", data={"tags": "Billing\r\nvip\r\n\r\nbilling", "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == f"{url}?saved=tags"
    assert "The tags were saved." in editor.get(r.headers["location"]).text
    r = editor.post(f"{url}/tags", data={"tags": "ok\n" + "x" * 51, "csrf_token": token})
    assert r.status_code == 400
    assert field_error(r.text, "tags").startswith("Tag 2:")
    assert "x" * 51 in r.text  # what was typed is kept
    r = editor.post(f"{url}/notes", data={"text": "   ", "csrf_token": token})
    assert r.status_code == 400 and field_error(r.text, "text")
    r = editor.post(f"{url}/notes", data={"text": "Refund agreed", "csrf_token": token})
    assert r.status_code == 303
    r = editor.post(
        f"{url}/follow-up",
        data={"status": "contacted", "assigneeEmail": "nobody@else.example", "csrf_token": token},
    )
    assert r.status_code == 422 and field_error(r.text, "assigneeEmail")
    r = editor.post(f"{url}/follow-up", data={"status": "closed", "assigneeEmail": "", "csrf_token": token})
    assert r.status_code == 400 and field_error(r.text, "status")
    r = editor.post(
        f"{url}/follow-up",
        data={"status": "contacted", "assigneeEmail": people["viewer"].email, "csrf_token": token},
    )
    assert r.status_code == 303
    got = client.get(f"/v1/answers/{rec['_id']}", headers=tenant.viewer).json()
    assert got["tags"] == ["Billing", "vip"]
    assert [n["text"] for n in got["notes"]] == ["Refund agreed"]
    assert got["notes"][0]["authorEmail"] == people["editor"].email
    assert (got["followUp"]["status"], got["followUp"]["assigneeEmail"]) == (
        "contacted",
        people["viewer"].email,
    )
    assert got["followUp"]["history"][0]["changedBy"] == people["editor"].email
    # without the CSRF token nothing changes
    r = editor.post(f"{url}/notes", data={"text": "forged"})
    assert r.status_code == 403
    assert len(client.get(f"/v1/answers/{rec['_id']}", headers=tenant.viewer).json()["notes"]) == 1


def tag_items(html: str) -> dict[str, str]:
    """The answer page's tags: each tag's list item as text (tags stripped, spaces collapsed)."""
    items = re.findall(r'<li data-tag="([^"]*)">(.*?)</li>', html, flags=re.S)
    return {tag: " ".join(re.sub(r"<[^>]+>", "", body).split()) for tag, body in items}


def test_the_answer_page_shows_who_added_each_tag_and_when(
    client: Any, app: Any, database: TestDatabase, team: tuple[Tenant, dict[str, Person]]
) -> None:
    tenant, people = team
    rec = post_nps(client, tenant, "cyd@acme.example", 4)
    url = f"/app/answers/{rec['_id']}"
    editor = browser(app, database, people["editor"])
    token = csrf_of(editor.get(url).text)
    r = editor.post(f"{url}/tags", data={"tags": "Churn risk", "csrf_token": token})
    assert r.status_code == 303, r.text
    # an API token without a user keeps the editor's tag and adds one of its own
    r = client.put(
        f"/v1/answers/{rec['_id']}/tags", json={"tags": ["churn risk", "Billing"]}, headers=tenant.editor
    )
    details = {d["tag"]: d for d in r.json()["tagDetails"]}
    assert details["churn risk"]["addedBy"] == people["editor"].email
    assert details["Billing"]["addedBy"] is None

    page = browser(app, database, people["viewer"]).get(url)
    assert page.status_code == 200, page.text
    when = details["churn risk"]["addedAt"]
    shown = when[:16].replace("T", " ") + " UTC"  # 2026-11-28 14:02 UTC
    items = tag_items(page.text)
    assert list(items) == ["Billing", "churn risk"]
    assert items["churn risk"] == f"churn risk , added by {people['editor'].email} on {shown}"
    assert f'<time datetime="{when}">{shown}</time>' in page.text
    assert items["Billing"].startswith("Billing , added by an unknown user")
    assert f"<span data-added-by>{people['editor'].email}</span>" in page.text
    assert 'aria-label="Tags of this answer, with who added each and when"' in page.text


def test_another_organizations_answer_page_is_a_404(
    client: Any, app: Any, database: TestDatabase, team: tuple[Tenant, dict[str, Person]], other: Tenant
) -> None:
    _, people = team
    theirs = post_nps(client, other, "secret@other.example", 1, comment="secret comment")
    editor = browser(app, database, people["editor"])
    page = editor.get(f"/app/answers/{theirs['_id']}")
    assert page.status_code == 404 and "secret comment" not in page.text
    token = (
        csrf_of(editor.get("/app/responses").text)
        if "csrf_token" in editor.get("/app/responses").text
        else ""
    )
    r = editor.post(f"/app/answers/{theirs['_id']}/notes", data={"text": "hijack", "csrf_token": token})
    assert r.status_code in (403, 404)
    assert client.get(f"/v1/answers/{theirs['_id']}", headers=other.viewer).json()["notes"] == []
    assert editor.get("/app/answers/not-an-id").status_code == 400


def test_the_feed_filters_by_tag_status_and_assignee_and_shows_badges(
    client: Any, app: Any, database: TestDatabase, team: tuple[Tenant, dict[str, Person]]
) -> None:
    tenant, people = team
    tagged, assigned, plain = (
        post_nps(client, tenant, f"{n}@feed.example", s) for n, s in (("t", 1), ("a", 5), ("p", 9))
    )
    client.put(f"/v1/answers/{tagged['_id']}/tags", json={"tags": ["Churn risk"]}, headers=tenant.editor)
    client.put(
        f"/v1/answers/{assigned['_id']}/follow-up",
        json={"status": "open", "assigneeEmail": people["editor"].email},
        headers=tenant.editor,
    )
    viewer = browser(app, database, people["viewer"])

    def rows(**params: str) -> list[str]:
        r = viewer.get("/app/responses", params=params)
        assert r.status_code == 200, r.text
        return re.findall(r'<tr data-answer="([0-9a-f]{24})"', r.text)

    assert set(rows()) == {tagged["_id"], assigned["_id"], plain["_id"]}
    assert rows(tag="churn RISK") == [tagged["_id"]]
    assert rows(followUpStatus="open") == [assigned["_id"]]
    assert set(rows(followUpStatus="none")) == {tagged["_id"], plain["_id"]}
    assert rows(assigneeEmail=people["editor"].email) == [assigned["_id"]]
    assert rows(tag="Churn risk", followUpStatus="open") == []
    page = viewer.get("/app/responses").text
    assert "data-tag>Churn risk</span>" in page and "data-status>Open</span>" in page
    assert f'href="/app/answers/{tagged["_id"]}"' in page
    # bad filters: named next to their field, no answers listed
    for params, name in [
        ({"followUpStatus": "done"}, "followUpStatus"),
        ({"assigneeEmail": "stranger@else.example"}, "assigneeEmail"),
        ({"tag": "x" * 51}, "tag"),
    ]:
        r = viewer.get("/app/responses", params=params)
        assert r.status_code == 400 and field_error(r.text, name), (params, r.text[:300])
        assert "data-answer=" not in r.text
    # the download holds what the filter shows
    r = viewer.get("/app/responses/export.csv", params={"tag": "churn risk"})
    assert r.status_code == 200 and tagged["_id"] in r.text and plain["_id"] not in r.text


# ------------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def site_team(site: Site) -> tuple[str, dict[str, str], dict[str, Person]]:
    """An organization on the live server: its id, an API token's headers, and an editor and a viewer."""
    with site.db.transaction() as session:
        org = auth_service.ensure_org(session, "followup-" + secrets.token_hex(4))
        org_id = org.id
        issued = auth_service.create_token(
            session, site.settings, org, "editor", timedelta(hours=1), name="seed"
        )
    people = {role: make_user(site.db, org_id, role) for role in ("editor", "viewer")}
    return org_id, {"Authorization": f"Bearer {issued.token}"}, people


def test_browser_an_editor_follows_up_an_answer_and_finds_it_in_the_feed(
    site: Site,
    chromium: Any,
    site_team: tuple[str, dict[str, str], dict[str, Person]],
    request: pytest.FixtureRequest,
) -> None:
    _, headers, people = site_team
    unhappy = httpx.post(
        site.url + "/nps",
        json={"email": "zoe@client.example", "score": 2, "comment": "Nobody answers"},
        headers=headers,
    ).json()
    httpx.post(
        site.url + "/nps",
        json={"email": "yan@client.example", "score": 10, "comment": "Great"},
        headers=headers,
    )
    with page_for(chromium, site, request) as page:
        sign_in(page, site, people["editor"], "/app/responses")
        with page.expect_navigation():
            page.locator(f'tr[data-answer="{unhappy["_id"]}"] td.date a').click()
        assert page.inner_text("h1") == "Answer from zoe@client.example"
        assert "Nobody answers" in page.inner_text("main")
        assert serious_violations(page) == []

        page.get_by_label("Tags, one per line").fill("Support\nChurn risk")
        with page.expect_navigation():
            page.get_by_role("button", name="Save tags").click()
        assert "The tags were saved." in page.inner_text("main")
        assert page.locator("li[data-tag] .badge").all_inner_texts() == ["Churn risk", "Support"]
        assert page.locator("li[data-tag] [data-added-by]").all_inner_texts() == [people["editor"].email] * 2

        page.get_by_label("New note").fill("Called Zoe: a ticket was lost.\nRefund offered.")
        with page.expect_navigation():
            page.get_by_role("button", name="Add note").click()
        note = page.locator("[data-note]").first.inner_text()
        assert "a ticket was lost." in note and people["editor"].email in note

        page.get_by_label("Status").select_option("contacted")
        page.get_by_label("Assignee").select_option(people["viewer"].email)
        with page.expect_navigation():
            page.get_by_role("button", name="Save follow-up").click()
        assert "The follow-up was saved." in page.inner_text("main")
        assert page.locator("[data-assignee]").inner_text() == people["viewer"].email
        history = page.get_by_role("table", name=re.compile("Changes of the follow-up")).inner_text()
        assert "Contacted" in history and people["editor"].email in history
        # an error lands next to its field
        page.get_by_label("Tags, one per line").fill("ok\n" + "y" * 60)
        with page.expect_navigation():
            page.get_by_role("button", name="Save tags").click()
        assert page.locator("#f-tags-error").inner_text().startswith("Tag 2:")
        assert serious_violations(page) == []

        # the feed, filtered by what was just set
        page.goto(site.url + "/app/responses")
        page.get_by_label("Tag").select_option("Churn risk")
        page.get_by_label("Follow-up").select_option("contacted")
        page.get_by_label("Assignee").select_option(people["viewer"].email)
        page.get_by_role("button", name="Apply").click()  # the feed updates in place (htmx)
        page.wait_for_url(re.compile(r"tag=Churn(\+|%20)risk"))
        query = parse_qs(urlsplit(page.url).query)
        assert (query["tag"], query["followUpStatus"]) == (["Churn risk"], ["contacted"])
        answers = page.locator("tr[data-answer]")
        assert answers.count() == 1
        assert answers.first.get_attribute("data-answer") == unhappy["_id"]
        assert "Contacted" in answers.first.inner_text() and "Churn risk" in answers.first.inner_text()
        assert serious_violations(page) == []

    with page_for(chromium, site, request) as page:  # a viewer reads, with no forms
        sign_in(page, site, people["viewer"], f"/app/answers/{unhappy['_id']}")
        assert "Refund offered." in page.inner_text("main")
        assert page.locator("form[action*='/app/answers/']").count() == 0
