"""The dashboard's Surveys section (/app/surveys): the list, a new survey, a survey's page with its
figures, charts, invitations, reminders, public link and downloads, editing, switching on and off,
deleting; by role, across organizations, with hostile text, without a CSRF token.

Most behaviour is checked over HTTP (a TestClient per role on an app of this module's own, so
sign-in attempts are counted apart from other modules); the flows a person follows are checked in
Chromium against a live server. Figures are compared with the API's for the same data.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from mail_helpers import run_jobs, unique_email
from npsd.app import create_app
from npsd.collect import service as collect
from npsd.kit.errors import BadRequest

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


# ---------------------------------------------------------------------------------------- helpers


def browser_client(app: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


def signed_in(app: Any, person: Person) -> TestClient:
    client = browser_client(app)
    form = client.get("/app/login")
    r = client.post(
        "/app/login",
        data={"email": person.email, "password": person.password, "csrf_token": csrf_of(form.text)},
    )
    assert r.status_code == 303, r.text
    return client


def token_of(client: TestClient) -> str:
    """The session's CSRF token (every page carries it)."""
    return csrf_of(client.get("/app/surveys").text)


def figure(page_html: str, name: str) -> str:
    """The text of the element marked ``data-figure="name"``."""
    match = re.search(rf'data-figure="{name}">([^<]*)<', page_html)
    assert match, f"no figure {name}"
    return html.unescape(match.group(1)).strip()


def h1(page_html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", page_html, re.S)
    assert match, "no h1"
    return html.unescape(match.group(1))


def error_of(page_html: str, field: str) -> str:
    """The message shown next to ``field`` (the form macros' ``f-<field>-error``)."""
    match = re.search(rf'id="f-{re.escape(field)}-error">([^<]*)<', page_html)
    assert match, f"no error next to {field}"
    return html.unescape(match.group(1))


def one(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def api_survey(client: TestClient, tenant: Tenant, survey_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/nps-surveys/{survey_id}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return dict(r.json())


def new_survey(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/nps-surveys", json={"name": f"Survey {unique_email('s')}", **fields}, headers=tenant.editor
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def answer(client: TestClient, tenant: Tenant, survey_id: str, score: int, **fields: Any) -> None:
    r = client.post(
        f"/v1/nps-surveys/{survey_id}/responses",
        json={"email": unique_email("a"), "score": score, **fields},
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text


def iso_days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------------------- fixtures


@dataclass
class Org:
    """An organization of this module with a person of each role signed in (HTTP clients)."""

    tenant: Tenant
    people: dict[str, Person]
    pages: dict[str, TestClient]
    api: TestClient

    def page(self, role: str) -> TestClient:
        return self.pages[role]


@pytest.fixture(scope="module")
def org(database: TestDatabase) -> Iterator[Org]:
    app = create_app(database.settings, database.db)  # sign-in attempts counted for this module alone
    tenant = make_tenant(database)
    people = {role: make_user(database.db, tenant.org_id, role) for role in ("viewer", "editor", "admin")}
    pages = {role: signed_in(app, person) for role, person in people.items()}
    api = browser_client(app)
    yield Org(tenant, people, pages, api)
    for c in (*pages.values(), api):
        c.close()


@pytest.fixture(scope="module")
def answered(org: Org) -> dict[str, Any]:
    """A survey with 17 answers over the last 100 days (one 40 days ago, so presets differ)."""
    survey = new_survey(
        org.api, org.tenant, name="Customer pulse", description="Quarterly relationship survey"
    )
    scores = [10, 10, 9, 9, 9, 8, 7, 7, 6, 5, 3, 0, 10, 9, 8, 2, 10]
    for i, score in enumerate(scores):
        days = 40 if i == 0 else 100 if i == 1 else i % 20
        answer(org.api, org.tenant, survey["id"], score, respondedAt=iso_days_ago(days), comment=f"c{i}")
    return survey


# ------------------------------------------------------------------------------------------- list


def test_the_list_shows_each_survey_with_its_answers_and_nps(org: Org, answered: dict[str, Any]) -> None:
    empty = new_survey(org.api, org.tenant, name="Not asked yet", surveyType="TRANSACTIONAL", isActive=False)
    r = org.page("viewer").get("/app/surveys")
    assert r.status_code == 200
    assert h1(r.text) == "Surveys"
    assert "<caption>Surveys</caption>" in r.text
    api = api_survey(org.api, org.tenant, answered["id"])
    breakdown = org.api.get(f"/v1/nps-surveys/{answered['id']}/responses", headers=org.tenant.viewer).json()[
        "breakdown"
    ]
    row = re.search(rf'href="/app/surveys/{answered["id"]}">Customer pulse</a>.*?</tr>', r.text, re.S)
    assert row, r.text
    assert "Relationship" in row.group(0) and "Active" in row.group(0)
    assert figure(row.group(0), "responseCount") == str(api["responseCount"]) == "17"
    assert figure(row.group(0), "nps") == f"{one(api['npsScore'])} ± {one(breakdown['marginOfError'])}"
    other = re.search(rf'href="/app/surveys/{empty["id"]}">Not asked yet</a>.*?</tr>', r.text, re.S)
    assert other and "Transactional" in other.group(0) and "Inactive" in other.group(0)
    assert figure(other.group(0), "nps") == "—"
    # a viewer is not offered a new survey; an editor is
    assert "New survey" not in r.text
    assert 'href="/app/surveys/new">New survey</a>' in org.page("editor").get("/app/surveys").text
    # the filters are the API's
    inactive = org.page("viewer").get("/app/surveys", params={"isActive": "false", "q": "asked"})
    assert "Not asked yet" in inactive.text and "Customer pulse" not in inactive.text


def test_the_list_refuses_a_malformed_filter_by_name(org: Org) -> None:
    for params, name in (
        ({"page": "0"}, "page"),
        ({"isActive": "maybe"}, "isActive"),
        ({"page": "x"}, "page"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "x" * 201}, "q"),
    ):
        r = org.page("viewer").get("/app/surveys", params=params)
        assert r.status_code == 400, params
        assert name in r.text


# ------------------------------------------------------------------------------------- new survey


def form_data(client: TestClient, **fields: str) -> dict[str, str]:
    data = {
        "csrf_token": token_of(client),
        "name": "Onboarding",
        "description": "After the first week",
        "surveyType": "TRANSACTIONAL",
        "triggerEvent": "onboarding.done",
        "question": "How likely are you to recommend our onboarding?",
        "followUpQuestion": "What could be better?",
        "isActive": "true",
        "language": "de",
        "throttleDays": "30",
        "reminderAfterDays": "",
        "thankYouMessage": "Danke!",
        "startsAt": "2030-01-01",
        "endsAt": "2030-03-31",
    }
    data.update(fields)
    return data


def test_the_new_survey_form_has_every_field_the_api_takes(org: Org) -> None:
    from npsd.surveys.schemas import SurveyCreate

    r = org.page("editor").get("/app/surveys/new")
    assert r.status_code == 200
    assert h1(r.text) == "New survey"
    for name in SurveyCreate.model_fields:
        assert f'name="{name}"' in r.text or f'name="{name}.' in r.text, name  # translations.de.question
    assert re.search(r'<label for="f-name">Name</label>', r.text)
    assert re.search(r'<select id="f-surveyType" name="surveyType"', r.text)
    assert 'type="checkbox" value="true" checked' in r.text  # isActive defaults on
    assert 'id="f-startsAt" name="startsAt" type="date"' in r.text
    assert re.search(r'<textarea id="f-question" name="question"[^>]*>How likely', r.text)
    assert 'value="90"' in r.text  # throttleDays' default, from the API's schema
    assert re.search(r'<form method="post" action="/app/surveys"', r.text)
    assert '<button type="submit">Create survey</button>' in r.text
    assert org.page("viewer").get("/app/surveys/new").status_code == 403


def test_creating_a_survey_through_the_form(org: Org) -> None:
    client = org.page("editor")
    r = client.post("/app/surveys", data=form_data(client, reminderAfterDays="5"))
    assert r.status_code == 303, r.text
    survey_id = r.headers["location"].rsplit("/", 1)[-1]
    assert r.headers["location"] == f"/app/surveys/{survey_id}"
    made = api_survey(org.api, org.tenant, survey_id)
    assert {k: made[k] for k in ("name", "description", "surveyType", "triggerEvent", "language")} == {
        "name": "Onboarding",
        "description": "After the first week",
        "surveyType": "TRANSACTIONAL",
        "triggerEvent": "onboarding.done",
        "language": "de",
    }
    assert (made["throttleDays"], made["reminderAfterDays"], made["isActive"]) == (30, 5, True)
    assert made["followUpQuestion"] == "What could be better?"
    assert made["startsAt"] == "2030-01-01T00:00:00.000Z"
    assert made["endsAt"] == "2030-03-31T23:59:59.000Z"  # "Ends on" a day: until its end
    page = client.get(r.headers["location"])
    assert h1(page.text) == "Onboarding"
    # an unchecked box is false, an empty optional text is none
    r = client.post("/app/surveys", data={**form_data(client, description="  ", name="Off"), "isActive": ""})
    off = api_survey(org.api, org.tenant, r.headers["location"].rsplit("/", 1)[-1])
    assert (off["isActive"], off["description"]) == (False, None)


def count_surveys(org: Org) -> int:
    r = org.api.get("/v1/nps-surveys", params={"limit": 1}, headers=org.tenant.viewer)
    return int(r.headers["x-total-count"])


def test_bad_input_is_named_next_to_its_field_and_what_was_typed_is_kept(org: Org) -> None:
    client = org.page("editor")
    before = count_surveys(org)
    r = client.post("/app/surveys", data=form_data(client, name="", throttleDays="often", language="??"))
    assert r.status_code == 400
    assert error_of(r.text, "name")
    assert error_of(r.text, "throttleDays") == "Enter a whole number of days."
    assert "language tag" in error_of(r.text, "language")
    assert 'value="onboarding.done"' in r.text and 'value="often"' in r.text and "Danke!" in r.text
    assert '<option value="TRANSACTIONAL" selected>' in r.text
    # the service's own rule: a window that ends before it starts
    r = client.post("/app/surveys", data=form_data(client, startsAt="2030-05-01", endsAt="2030-04-01"))
    assert r.status_code == 400
    assert "after startsAt" in error_of(r.text, "endsAt")
    assert 'value="2030-04-01"' in r.text
    r = client.post("/app/surveys", data=form_data(client, endsAt="31/12/2030", reminderAfterDays="999"))
    assert r.status_code == 400
    assert error_of(r.text, "endsAt") == "Enter a date as YYYY-MM-DD."
    assert error_of(r.text, "reminderAfterDays")
    r = client.post("/app/surveys", data=form_data(client, name="x" * 201, surveyType="WEEKLY"))
    assert r.status_code == 400 and error_of(r.text, "name") and error_of(r.text, "surveyType")
    assert count_surveys(org) == before  # nothing half-written


# ---------------------------------------------------------------------------------- a survey's page


def test_the_survey_page_shows_the_apis_figures(org: Org, answered: dict[str, Any]) -> None:
    sid = answered["id"]
    r = org.page("viewer").get(f"/app/surveys/{sid}")
    assert r.status_code == 200
    assert h1(r.text) == "Customer pulse"
    api = api_survey(org.api, org.tenant, sid)
    b = org.api.get(f"/v1/nps-surveys/{sid}/responses", headers=org.tenant.viewer).json()["breakdown"]
    assert figure(r.text, "npsScore") == one(api["npsScore"]) == one(b["npsScore"])
    assert figure(r.text, "totalResponses") == str(api["responseCount"]) == str(b["total"])
    assert figure(r.text, "marginOfError") == f"±{one(b['marginOfError'])}"
    low, high = b["confidenceInterval"]
    assert figure(r.text, "confidenceInterval") == f"{one(low)} to {one(high)}"
    for key in ("promoter", "passive", "detractor"):
        assert figure(r.text, f"{key}s") == str(b[f"{key}s"])
        assert figure(r.text, f"{key}Percentage") == f"{one(b[f'{key}Percentage'])}%"
    assert b["lowSample"] is True and "data-low-sample" in r.text
    # charts: the trend with its band, the distribution whose bars open the feed
    assert 'role="img"' in r.text and "NPS trend" in r.text and "Score distribution" in r.text
    assert "<caption>NPS trend</caption>" in r.text and "<caption>Score distribution</caption>" in r.text
    assert f'href="/app/responses?surveyId={sid}&amp;period=all&amp;score=10"' in r.text
    assert f'href="/app/responses?surveyId={sid}&amp;period=all&amp;category=detractor"' in r.text
    # a period: the same figures as nps-metrics for that survey and those days
    today = datetime.now(UTC).date()
    r = org.page("viewer").get(f"/app/surveys/{sid}", params={"period": "30d"})
    metrics = org.api.get(
        "/v1/nps-surveys/nps-metrics",
        params={"surveyId": sid, "since": str(today - timedelta(days=29)), "until": str(today)},
        headers=org.tenant.viewer,
    ).json()
    assert figure(r.text, "totalResponses") == str(metrics["totalResponses"]) == "15"
    assert figure(r.text, "npsScore") == one(metrics["npsScore"])
    assert figure(r.text, "marginOfError") == f"±{one(metrics['marginOfError'])}"


def test_a_malformed_page_filter_is_named_next_to_it(org: Org, answered: dict[str, Any]) -> None:
    r = org.page("viewer").get(f"/app/surveys/{answered['id']}", params={"since": "yesterday"})
    assert r.status_code == 400
    assert error_of(r.text, "since") == "Enter a date as YYYY-MM-DD."
    assert figure(r.text, "totalResponses") == "17"  # the default period meanwhile
    r = org.page("viewer").get(f"/app/surveys/{answered['id']}", params={"page": "-1"})
    assert r.status_code == 400 and "page" in r.text
    r = org.page("viewer").get(f"/app/surveys/{answered['id']}", params={"until": "2026-01-01\x00"})
    assert r.status_code == 400 and "until" in r.text
    r = org.page("viewer").get(
        f"/app/surveys/{answered['id']}", params={"since": "2026-02-01", "until": "2026-01-01"}
    )
    assert r.status_code == 400
    assert error_of(r.text, "until") == "The end must not be before the start."


def test_another_organizations_survey_is_not_found(database: TestDatabase, org: Org) -> None:
    stranger = make_tenant(database)
    theirs = new_survey(org.api, stranger, name="Their survey")
    client = org.page("admin")
    unknown = "0123456789abcdef01234567"
    token = token_of(client)
    for sid in (theirs["id"], unknown):
        for path in ("", "/edit", "/delete", "/export.csv", "/export.xlsx"):
            r = client.get(f"/app/surveys/{sid}{path}")
            assert r.status_code == 404, (sid, path)
            assert "Not found" in r.text and "Their survey" not in r.text
        for path in ("/toggle", "/edit", "/invitations", "/reminders", "/link", "/delete"):
            r = client.post(f"/app/surveys/{sid}{path}", data={"csrf_token": token, "recipients": "a@b.co"})
            assert r.status_code == 404, (sid, path)
    assert api_survey(org.api, stranger, theirs["id"]) == theirs  # untouched
    r = client.get("/app/surveys/not-an-id")
    assert r.status_code == 400 and "24-character" in r.text


def test_stored_text_is_shown_as_text(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name=HOSTILE, description=HOSTILE, question=HOSTILE + "?")
    client = org.page("editor")
    client.post(
        f"/app/surveys/{survey['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": f"{HOSTILE} <{unique_email()}>"},
    )
    for path in ("/app/surveys", f"/app/surveys/{survey['id']}", f"/app/surveys/{survey['id']}/edit"):
        r = client.get(path)
        assert "<script>alert(1)" not in r.text and "<img src=x" not in r.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in r.text, path


# ------------------------------------------------------------------------------ roles and CSRF


def test_a_viewer_sees_no_controls_and_is_refused_every_change(org: Org, answered: dict[str, Any]) -> None:
    sid = answered["id"]
    viewer = org.page("viewer")
    page = viewer.get(f"/app/surveys/{sid}").text
    for control in (
        "Deactivate",
        "Edit settings",
        "Send invitations",
        "Recipients",
        "Send reminders now",
        "Delete survey",
        "Create public link",
    ):
        assert control not in page, control
    for label in ("CSV", "XLSX", "JSON", "NDJSON"):  # reading is for everyone
        assert f">{label}</a>" in page
    token = token_of(viewer)
    for path in ("/toggle", "/edit", "/invitations", "/reminders", "/link", "/delete"):
        r = viewer.post(
            f"/app/surveys/{sid}{path}", data={"csrf_token": token, "recipients": "a@b.co", "name": "x"}
        )
        assert r.status_code == 403, path
    assert viewer.post("/app/surveys", data={"csrf_token": token, "name": "x"}).status_code == 403
    assert viewer.get(f"/app/surveys/{sid}/edit").status_code == 403
    after = api_survey(org.api, org.tenant, sid)
    assert (after["name"], after["isActive"]) == ("Customer pulse", True)
    assert org.api.get(f"/v1/nps-surveys/{sid}/invitations", headers=org.tenant.viewer).json() == []
    # an editor changes surveys but does not delete them
    editor = org.page("editor")
    editor_page = editor.get(f"/app/surveys/{sid}").text
    assert "Deactivate" in editor_page and "Delete survey" not in editor_page
    assert editor.get(f"/app/surveys/{sid}/delete").status_code == 403
    assert editor.post(f"/app/surveys/{sid}/delete", data={"csrf_token": token_of(editor)}).status_code == 403
    assert api_survey(org.api, org.tenant, sid)["responseCount"] == 17


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    org: Org, answered: dict[str, Any]
) -> None:
    sid = answered["id"]
    admin = org.page("admin")
    before = count_surveys(org)
    for data in ({}, {"csrf_token": "forged"}):
        assert admin.post("/app/surveys", data={**data, "name": "Sneaky"}).status_code == 403
        for path in ("/toggle", "/invitations", "/reminders", "/link", "/delete", "/edit"):
            r = admin.post(f"/app/surveys/{sid}{path}", data={**data, "recipients": "x@y.co", "name": "n"})
            assert r.status_code == 403, path
            assert "security token" in r.text
    assert count_surveys(org) == before
    after = api_survey(org.api, org.tenant, sid)
    assert (after["name"], after["isActive"], after["responseCount"]) == ("Customer pulse", True, 17)


# ------------------------------------------------------------------------- editing, toggling, deleting


def test_editing_changes_only_what_was_changed(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Pulse", endsAt="2031-06-30T14:00:00Z", reminderAfterDays=3)
    client = org.page("editor")
    form = client.get(f"/app/surveys/{survey['id']}/edit")
    assert form.status_code == 200
    assert h1(form.text) == "Edit Pulse"
    assert 'value="2031-06-30"' in form.text and 'value="Pulse"' in form.text
    shown = dict(
        re.findall(r'<input id="f-(\w+)" name="\w+" type="(?:text|number|date)" value="([^"]*)"', form.text)
    )
    data = {"csrf_token": csrf_of(form.text), **shown, "isActive": "true", "surveyType": "RELATIONSHIP"}
    for name in ("description", "question", "followUpQuestion", "thankYouMessage"):
        match = re.search(rf'<textarea id="f-{name}" name="{name}"[^>]*>([^<]*)</textarea>', form.text)
        assert match
        data[name] = html.unescape(match.group(1)).replace("\n", "\r\n")  # as a browser sends it
    r = client.post(
        f"/app/surveys/{survey['id']}/edit", data={**data, "name": "Pulse 2", "reminderAfterDays": ""}
    )
    assert (r.status_code, r.headers["location"]) == (303, f"/app/surveys/{survey['id']}")
    after = api_survey(org.api, org.tenant, survey["id"])
    assert (after["name"], after["reminderAfterDays"]) == ("Pulse 2", None)
    assert after["endsAt"] == "2031-06-30T14:00:00.000Z"  # untouched: not rewritten to the day's end
    assert after["question"] == survey["question"]
    # a refusal keeps what was typed
    r = client.post(f"/app/surveys/{survey['id']}/edit", data={**data, "startsAt": "2032-01-01"})
    assert r.status_code == 400
    assert "after startsAt" in error_of(r.text, "endsAt")
    assert 'value="2032-01-01"' in r.text
    assert api_survey(org.api, org.tenant, survey["id"])["startsAt"] is None


def test_toggling_flips_the_button_and_the_api_agrees(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Switch")
    client = org.page("editor")
    path = f"/app/surveys/{survey['id']}"
    assert ">Deactivate</button>" in client.get(path).text
    r = client.post(path + "/toggle", data={"csrf_token": token_of(client)})
    assert (r.status_code, r.headers["location"]) == (303, path)
    assert api_survey(org.api, org.tenant, survey["id"])["isActive"] is False
    assert ">Activate</button>" in client.get(path).text
    client.post(path + "/toggle", data={"csrf_token": token_of(client)})
    assert api_survey(org.api, org.tenant, survey["id"])["isActive"] is True


def test_an_admin_deletes_a_survey_after_confirming(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Doomed")
    answer(org.api, org.tenant, survey["id"], 9)
    admin = org.page("admin")
    page = admin.get(f"/app/surveys/{survey['id']}").text
    assert f'href="/app/surveys/{survey["id"]}/delete">Delete survey</a>' in page
    confirm = admin.get(f"/app/surveys/{survey['id']}/delete")
    assert confirm.status_code == 200
    assert h1(confirm.text) == "Delete Doomed?" and "1 answer" in confirm.text
    assert api_survey(org.api, org.tenant, survey["id"])["responseCount"] == 1  # a GET deletes nothing
    r = admin.post(f"/app/surveys/{survey['id']}/delete", data={"csrf_token": csrf_of(confirm.text)})
    assert (r.status_code, r.headers["location"]) == (303, "/app/surveys?deleted=1")
    assert "The survey was deleted" in admin.get(r.headers["location"]).text
    assert org.api.get(f"/v1/nps-surveys/{survey['id']}", headers=org.tenant.viewer).status_code == 404


def test_the_public_link_is_created_by_a_button(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Linked")
    path = f"/app/surveys/{survey['id']}"
    viewer, editor = org.page("viewer"), org.page("editor")
    assert "no public link yet" in viewer.get(path).text
    assert "Create public link" in editor.get(path).text
    r = editor.post(path + "/link", data={"csrf_token": token_of(editor)})
    assert (r.status_code, r.headers["location"]) == (303, path + "#link")
    link = org.api.get(f"/v1/nps-surveys/{survey['id']}/link", headers=org.tenant.viewer).json()
    page = viewer.get(path).text
    assert f"data-public-url>{link['url']}</p>" in page
    assert "Create public link" not in editor.get(path).text


# ------------------------------------------------------------------------------- inviting people


def outcome_of(page_html: str) -> list[tuple[str, str]]:
    """(recipient, status) per row of the outcome table."""
    table = re.search(r'<table id="outcome">.*?</table>', page_html, re.S)
    assert table, "no outcome table"
    return [
        (html.unescape(email).strip(), status)
        for status, email in re.findall(
            r'<tr data-status="(\w+)">\s*<td[^>]*>\d+</td>\s*<td>(.*?)</td>', table.group(0), re.S
        )
    ]


def test_inviting_pasted_addresses_reports_each_outcome(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Invites", throttleDays=0)
    gone, fresh, named = unique_email("gone"), unique_email("fresh"), unique_email("named")
    assert (
        org.api.post("/v1/unsubscribes", json={"email": gone}, headers=org.tenant.editor).status_code == 201
    )
    client = org.page("editor")
    typed = "\r\n".join(
        [fresh, "not an address", fresh.upper(), gone, f"Ada Lovelace <{named}>", "", "x@y.co, X, 12!"]
    )
    r = client.post(
        f"/app/surveys/{survey['id']}/invitations", data={"csrf_token": token_of(client), "recipients": typed}
    )
    assert r.status_code == 200, r.text
    assert outcome_of(r.text) == [
        (fresh, "queued"),
        ("not an address", "invalid"),
        (fresh.upper(), "duplicate"),
        (gone, "unsubscribed"),
        (named, "queued"),
        ("x@y.co", "invalid"),
    ]
    assert "must be a valid e-mail address" in r.text and "language tag" in r.text
    listed = org.api.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=org.tenant.viewer).json()
    assert {(i["email"], i["name"]) for i in listed} == {(fresh, None), (named, "Ada Lovelace")}
    assert "Invitations, newest first (2)" in r.text
    # sending the same again: open invitations are duplicates, as the API says
    again = client.post(
        f"/app/surveys/{survey['id']}/invitations", data={"csrf_token": token_of(client), "recipients": fresh}
    )
    assert outcome_of(again.text) == [(fresh, "duplicate")]


def test_a_recently_surveyed_address_is_reported_throttled_with_its_date(org: Org) -> None:
    """The throttle spans the organization's surveys: an address invited by one survey is
    throttled by another whose throttleDays has not passed, and the page says until when, with
    the date the API gives."""
    first = new_survey(org.api, org.tenant, name="First", throttleDays=0)
    second = new_survey(org.api, org.tenant, name="Second", throttleDays=30)
    address = unique_email("throttled")
    client = org.page("editor")
    r = client.post(
        f"/app/surveys/{first['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": address},
    )
    assert outcome_of(r.text) == [(address, "queued")]
    r = client.post(
        f"/app/surveys/{second['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": f"{address}\n{unique_email('fresh')}"},
    )
    assert r.status_code == 200, r.text
    assert [status for _, status in outcome_of(r.text)] == ["throttled", "queued"]
    assert "1 throttled" in r.text and "1 queued" in r.text
    # the API's answer for the same address names the date the page shows
    [api] = org.api.post(
        f"/v1/nps-surveys/{second['id']}/invitations",
        json={"recipients": [{"email": address}]},
        headers=org.tenant.editor,
    ).json()["results"]
    assert api["status"] == "throttled"
    row = re.search(r'<tr data-status="throttled">.*?</tr>', r.text, re.S)
    assert row and "surveyed recently; can be asked again from" in row.group(0)
    assert f"can be asked again from {api['nextEligibleAt'][:16].replace('T', ' ')} UTC" in row.group(0)


def test_inviting_the_rows_of_a_csv_file(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="CSV invites", throttleDays=0)
    a, b = unique_email("csv"), unique_email("csv")
    content = f"\ufeffName;E-Mail;Locale;Team\r\nÄda;{a};de;x\r\n;{b};;\r\n\r\n;;;\r\n".encode()
    client = org.page("editor")
    r = client.post(
        f"/app/surveys/{survey['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": ""},
        files={"file": ("people.csv", content, "text/csv")},
    )
    assert r.status_code == 200, r.text
    assert outcome_of(r.text) == [(a, "queued"), (b, "queued")]
    listed = org.api.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=org.tenant.viewer).json()
    assert {(i["email"], i["name"], i["locale"]) for i in listed} == {(a, "Äda", "de"), (b, None, None)}


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("people.xlsx", b"PK\x03\x04", "must be a CSV file"),
        ("people.csv", b"PK\x03\x04\x00\x00", "binary data"),
        ("people.csv", b"name,locale\nAda,en\n", "header row"),
        ("people.csv", b"email\n", "no recipients"),
        ("people.csv", b"email\n" + b"a@example.com\n" * 200_000, "larger than 2 MB"),
    ],
)
def test_a_file_that_is_not_a_recipients_csv_is_named_next_to_the_file_field(
    org: Org, answered: dict[str, Any], filename: str, content: bytes, message: str
) -> None:
    client = org.page("editor")
    typed = unique_email("kept")
    r = client.post(
        f"/app/surveys/{answered['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": typed},
        files={"file": (filename, content, "application/octet-stream")},
    )
    assert r.status_code == 400
    assert message in error_of(r.text, "file")
    assert typed in r.text  # what was typed is kept
    listed = org.api.get(f"/v1/nps-surveys/{answered['id']}/invitations", headers=org.tenant.viewer).json()
    assert typed not in [i["email"] for i in listed]


def test_inviting_nobody_or_to_a_switched_off_survey_says_why(org: Org) -> None:
    survey = new_survey(org.api, org.tenant, name="Closed", isActive=False)
    client = org.page("editor")
    r = client.post(
        f"/app/surveys/{survey['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": " \n "},
    )
    assert r.status_code == 400
    assert "at least one address" in error_of(r.text, "recipients")
    address = unique_email()
    r = client.post(
        f"/app/surveys/{survey['id']}/invitations",
        data={"csrf_token": token_of(client), "recipients": address},
    )
    assert r.status_code == 409
    assert "survey is not active" in r.text and "switched off" in r.text
    assert address in r.text  # kept for after switching it on
    assert org.api.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=org.tenant.viewer).json() == []


def test_reminders_now(org: Org, database: TestDatabase) -> None:
    from mail_helpers import smtp_server

    survey = new_survey(org.api, org.tenant, name="Remind", throttleDays=0)
    client = org.page("editor")
    people = [unique_email("rem") for _ in range(3)]
    with smtp_server(database.settings):
        client.post(
            f"/app/surveys/{survey['id']}/invitations",
            data={"csrf_token": token_of(client), "recipients": "\n".join(people)},
        )
        run_jobs(database.db)
        r = client.post(f"/app/surveys/{survey['id']}/reminders", data={"csrf_token": token_of(client)})
        assert r.status_code == 200
        assert 'data-reminded="3">3 reminders queued.' in r.text
        run_jobs(database.db)
    statuses = {
        i["status"]
        for i in org.api.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=org.tenant.viewer).json()
    }
    assert statuses == {"reminded"}
    r = client.post(f"/app/surveys/{survey['id']}/reminders", data={"csrf_token": token_of(client)})
    assert 'data-reminded="0">0 reminders queued.' in r.text
    org.api.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=org.tenant.editor)
    r = client.post(f"/app/surveys/{survey['id']}/reminders", data={"csrf_token": token_of(client)})
    assert r.status_code == 409 and "switched off" in r.text


# ------------------------------------------------------------------------------------- downloads


def test_the_downloads_are_the_apis_files(org: Org, answered: dict[str, Any]) -> None:
    import openpyxl

    sid = answered["id"]
    client = org.page("viewer")
    page = client.get(f"/app/surveys/{sid}").text
    files: dict[str, httpx.Response] = {}
    for label, fmt, media in (
        ("CSV", "csv", "text/csv"),
        ("XLSX", "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("JSON", "json", "application/json"),
        ("NDJSON", "ndjson", "application/x-ndjson"),
    ):
        href = f"/app/surveys/{sid}/export.{fmt}"
        assert f'<a href="{href}" download>{label}</a>' in page
        r = client.get(href)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith(media)
        assert f"nps-survey-{sid}-responses-" in r.headers["content-disposition"]
        files[fmt] = r
        api = org.api.get(
            f"/v1/nps-surveys/{sid}/responses/export", params={"format": fmt}, headers=org.tenant.viewer
        )
        if fmt != "xlsx":  # an XLSX file carries its time of writing
            assert r.content == api.content, fmt
    count = api_survey(org.api, org.tenant, sid)["responseCount"]
    rows = list(csv.DictReader(io.StringIO(files["csv"].text)))
    assert len(rows) == count == 17
    assert {row["comment"] for row in rows} == {f"c{i}" for i in range(17)}
    assert rows[0]["surveyName"] == "Customer pulse"
    assert len(json.loads(files["json"].content)) == count
    assert len(files["ndjson"].text.strip().splitlines()) == count
    sheet = openpyxl.load_workbook(io.BytesIO(files["xlsx"].content), read_only=True).active
    assert sheet is not None and len(list(sheet.iter_rows())) == count + 1
    assert client.get(f"/app/surveys/{sid}/export.pdf").status_code == 400


# ------------------------------------------------------------------- reading recipients (collect)


def test_recipients_from_lines() -> None:
    typed = 'a@example.com\n  Ada Lovelace <ada@example.com> \n\n"Bob" <bob@example.com>\nc@example.com, Cy, fr\nd@example.com\tDee\n'
    assert collect.recipients_from_lines(typed) == [
        {"email": "a@example.com"},
        {"email": "ada@example.com", "name": "Ada Lovelace"},
        {"email": "bob@example.com", "name": "Bob"},
        {"email": "c@example.com", "name": "Cy", "locale": "fr"},
        {"email": "d@example.com", "name": "Dee"},
    ]


def test_recipients_from_csv() -> None:
    assert collect.recipients_from_csv(b'email,name\r\na@example.com,"Lovelace, Ada"\r\n') == [
        {"email": "a@example.com", "name": "Lovelace, Ada"}
    ]
    latin = "email;name\nb@example.com;Zoë\n".encode("cp1252")
    assert collect.recipients_from_csv(latin, "x.CSV") == [{"email": "b@example.com", "name": "Zoë"}]
    with pytest.raises(BadRequest) as exc:
        collect.recipients_from_csv(b"email\n" + b"a@example.com\n" * 5001)
    assert exc.value.details == [
        {"field": "file", "issue": "has 5001 recipients; at most 5000 can be invited at once"}
    ]
    with pytest.raises(BadRequest):
        collect.recipients_from_csv(b'email\n"unterminated\n' + b"x" * 200_000)


# ------------------------------------------------------------------------------------- in a browser


@dataclass
class LiveOrg:
    """An organization on the live server: API tokens, an editor and a viewer, a survey with answers."""

    tenant: Tenant
    editor: Person
    viewer: Person
    admin: Person
    api: httpx.Client
    answered: dict[str, Any]
    stranger_survey: str


@pytest.fixture(scope="module")
def live(database: TestDatabase, site: Site) -> Iterator[LiveOrg]:
    tenant = make_tenant(database)
    api = httpx.Client(base_url=site.url, timeout=30)
    survey = new_survey(api, tenant, name="Live pulse")  # type: ignore[arg-type]
    for i, score in enumerate([10, 9, 9, 8, 7, 6, 3, 10, 10, 0]):
        answer(
            api,
            tenant,
            survey["id"],
            score,
            respondedAt=iso_days_ago(i * 5),
            comment=HOSTILE if i == 0 else None,
        )  # type: ignore[arg-type]
    stranger = make_tenant(database)
    theirs = new_survey(api, stranger, name="Not yours")  # type: ignore[arg-type]
    yield LiveOrg(
        tenant,
        make_user(site.db, tenant.org_id, "editor"),
        make_user(site.db, tenant.org_id, "viewer"),
        make_user(site.db, tenant.org_id, "admin"),
        api,
        survey,
        theirs["id"],
    )
    api.close()


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching ``selector`` has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_an_editor_creates_toggles_and_invites_in_a_browser(
    site: Site, chromium: Any, request: pytest.FixtureRequest, live: LiveOrg
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, live.editor, "/app/surveys")
        assert page.url == site.url + "/app/surveys"
        assert page.inner_text("h1") == "Surveys"
        assert serious_violations(page) == []
        # keyboard only: the link, the form, an empty name, then a name
        tab_to(page, 'a[href="/app/surveys/new"]')
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.inner_text("h1") == "New survey"
        assert serious_violations(page) == []
        tab_to(page, "#f-triggerEvent")
        page.keyboard.type("signup.done")
        tab_to(page, "#f-throttleDays")
        page.keyboard.press("Control+A")
        page.keyboard.type("0")
        tab_to(page, "main form button[type=submit]")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator("#f-name-error").is_visible()
        assert page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"
        assert page.get_by_label("Trigger event").input_value() == "signup.done"
        assert page.locator("#f-throttleDays").input_value() == "0"
        tab_to(page, "#f-name")
        page.keyboard.type("Browser survey")
        tab_to(page, "main form button[type=submit]")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.inner_text("h1") == "Browser survey"
        survey_id = page.url.rsplit("/", 1)[-1]
        made = api_survey(live.api, live.tenant, survey_id)  # type: ignore[arg-type]
        assert (made["triggerEvent"], made["throttleDays"], made["isActive"]) == ("signup.done", 0, True)
        assert serious_violations(page) == []

        # switch off and on again: the button's text flips, the API agrees
        tab_to(page, "main form[action$='/toggle'] button")
        assert page.evaluate("document.activeElement.textContent") == "Deactivate"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.get_by_role("button", name="Activate", exact=True).is_visible()
        assert api_survey(live.api, live.tenant, survey_id)["isActive"] is False  # type: ignore[arg-type]
        with page.expect_navigation():
            page.get_by_role("button", name="Activate", exact=True).click()
        assert page.get_by_role("button", name="Deactivate").is_visible()
        assert api_survey(live.api, live.tenant, survey_id)["isActive"] is True  # type: ignore[arg-type]

        # invite by pasting: an invalid address, a duplicate, an unsubscribed one
        first, second, gone = unique_email("b1"), unique_email("b2"), unique_email("gone")
        r = live.api.post("/v1/unsubscribes", json={"email": gone}, headers=live.tenant.editor)
        assert r.status_code == 201
        page.get_by_label("Recipients").fill("\n".join([first, "no-at-sign", first, gone, f"Bea <{second}>"]))
        with page.expect_navigation():
            page.get_by_role("button", name="Send invitations").click()
        rows = page.locator("#outcome tbody tr")
        assert [rows.nth(i).get_attribute("data-status") for i in range(rows.count())] == [
            "queued",
            "invalid",
            "duplicate",
            "unsubscribed",
            "queued",
        ]
        assert "must be a valid e-mail address" in rows.nth(1).inner_text()
        assert serious_violations(page) == []
        run_jobs(site.db)
        assert len(site.sink.to(first)) == len(site.sink.to(second)) == 1
        assert site.sink.to(gone) == []

        # a CSV file through the file input
        third, fourth = unique_email("csv"), unique_email("csv")
        page.get_by_label("CSV file").set_input_files(
            files=[
                {
                    "name": "people.csv",
                    "mimeType": "text/csv",
                    "buffer": f"email;name\n{third};Cy\n{fourth};\n".encode(),
                }
            ]
        )
        with page.expect_navigation():
            page.get_by_role("button", name="Send invitations").click()
        assert [rows.nth(i).get_attribute("data-status") for i in range(rows.count())] == ["queued", "queued"]
        assert page.locator("#outcome").inner_text().count("queued") >= 2
        run_jobs(site.db)
        assert len(site.sink.to(third)) == 1

        # reminders now: to the four who were sent an invitation
        with page.expect_navigation():
            page.get_by_role("button", name="Send reminders now").click()
        assert page.locator("[data-reminded]").inner_text() == "4 reminders queued."
        run_jobs(site.db)
        assert len(site.sink.to(first)) == 2
        invitations = live.api.get(
            f"/v1/nps-surveys/{survey_id}/invitations", headers=live.tenant.viewer
        ).json()
        assert sorted(i["status"] for i in invitations) == ["reminded"] * 4
        assert page.locator("#invitations table tbody tr").count() == 4


def test_a_viewer_reads_a_survey_in_a_browser(
    site: Site, chromium: Any, request: pytest.FixtureRequest, live: LiveOrg
) -> None:
    import openpyxl

    sid = live.answered["id"]
    dialogs: list[str] = []
    with page_for(chromium, site, request) as page:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in(page, site, live.viewer, f"/app/surveys/{sid}")
        assert page.inner_text("h1") == "Live pulse"
        # the figures are the API's
        api = api_survey(live.api, live.tenant, sid)  # type: ignore[arg-type]
        b = live.api.get(f"/v1/nps-surveys/{sid}/responses", headers=live.tenant.viewer).json()["breakdown"]
        shown = {
            el.get_attribute("data-figure"): el.inner_text() for el in page.locator("[data-figure]").all()
        }
        assert shown["npsScore"] == one(api["npsScore"])
        assert shown["totalResponses"] == str(api["responseCount"]) == "10"
        assert shown["marginOfError"] == f"±{one(b['marginOfError'])}"
        assert (shown["promoters"], shown["passives"], shown["detractors"]) == tuple(
            str(b[k]) for k in ("promoters", "passives", "detractors")
        )
        # the charts are named images with their tables; a bar opens the feed at its score
        assert page.get_by_role("img", name=re.compile("NPS trend")).count() == 1
        assert page.get_by_role("img", name=re.compile("Score distribution")).count() == 1
        assert page.locator("caption", has_text="Score distribution").count() == 1
        bar = page.get_by_role("link", name=re.compile(r"^Score 10 \(promoter\): 3 answers"))
        assert bar.get_attribute("href") == f"/app/responses?surveyId={sid}&period=all&score=10"
        with page.expect_navigation():
            bar.click()
        assert page.inner_text("h1") == "Responses"
        assert page.get_by_text("3 responses", exact=True).count() == 1
        page.go_back()
        with page.expect_navigation():
            page.get_by_role("link", name="Detractors", exact=True).click()
        assert parse_qs(urlsplit(page.url).query) == {
            "surveyId": [sid],
            "period": ["all"],
            "category": ["detractor"],
        }
        assert page.get_by_text("3 responses", exact=True).count() == 1
        page.go_back()
        # a viewer reads: no control to change anything
        for name in (
            "Deactivate",
            "Activate",
            "Send invitations",
            "Send reminders now",
            "Create public link",
        ):
            assert page.get_by_role("button", name=name, exact=True).count() == 0, name
        assert page.get_by_label("Recipients").count() == 0
        assert page.get_by_role("link", name="Edit settings").count() == 0
        assert serious_violations(page) == []
        # ... and the server refuses a forged change, even with the session's own token
        token = page.get_attribute('meta[name="csrf-token"]', "content")
        forged = page.request.post(f"{site.url}/app/surveys/{sid}/toggle", form={"csrf_token": token})
        assert forged.status == 403
        assert api_survey(live.api, live.tenant, sid)["isActive"] is True  # type: ignore[arg-type]
        # the downloads: the right type, every answer
        media = {
            "CSV": "text/csv",
            "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "JSON": "application/json",
            "NDJSON": "application/x-ndjson",
        }
        bodies: dict[str, bytes] = {}
        for label, kind in media.items():
            href = page.get_by_role("link", name=label, exact=True).get_attribute("href")
            got = page.request.get(site.url + href)
            assert got.status == 200 and got.headers["content-type"].startswith(kind), label
            bodies[label] = got.body()
        assert len(list(csv.DictReader(io.StringIO(bodies["CSV"].decode("utf-8-sig"))))) == 10
        sheet = openpyxl.load_workbook(io.BytesIO(bodies["XLSX"]), read_only=True).active
        assert sheet is not None and len(list(sheet.iter_rows())) == 11
        assert len(json.loads(bodies["JSON"])) == 10
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV", exact=True).click()
        assert download.value.suggested_filename.startswith(f"nps-survey-{sid}-responses-")
        # the list, for a viewer: no "New survey"
        page.goto(site.url + "/app/surveys")
        assert page.get_by_role("link", name="New survey").count() == 0
        assert page.get_by_role("link", name="Live pulse").count() == 1
        # another organization's survey is a 404 page
        response = page.goto(f"{site.url}/app/surveys/{live.stranger_survey}")
        assert response is not None and response.status == 404
        assert page.inner_text("h1") == "Not found" and "Not yours" not in page.content()
    assert dialogs == []


def test_hostile_text_stays_text_in_a_browser(
    site: Site, chromium: Any, request: pytest.FixtureRequest, live: LiveOrg
) -> None:
    survey = new_survey(live.api, live.tenant, name=HOSTILE, description=HOSTILE)  # type: ignore[arg-type]
    dialogs: list[str] = []
    with page_for(chromium, site, request) as page:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in(page, site, live.editor, f"/app/surveys/{survey['id']}")
        assert page.inner_text("h1") == HOSTILE
        assert HOSTILE in page.inner_text("main .comment")
        page.get_by_label("Recipients").fill(f"{HOSTILE} <{unique_email()}>")
        with page.expect_navigation():
            page.get_by_role("button", name="Send invitations").click()
        assert HOSTILE in page.locator("#invitations").inner_text()
        page.goto(site.url + "/app/surveys")
        assert page.get_by_role("link", name=HOSTILE).count() == 1
        for path in ("/app/surveys", f"/app/surveys/{survey['id']}"):
            page.goto(site.url + path)
            assert page.locator("main script, main img").count() == 0, path
    assert dialogs == []


def test_an_admin_edits_and_deletes_a_survey_in_a_browser(
    site: Site, chromium: Any, request: pytest.FixtureRequest, live: LiveOrg
) -> None:
    survey = new_survey(live.api, live.tenant, name="Short-lived")  # type: ignore[arg-type]
    answer(live.api, live.tenant, survey["id"], 8)  # type: ignore[arg-type]
    with page_for(chromium, site, request) as page:
        sign_in(page, site, live.admin, f"/app/surveys/{survey['id']}")
        with page.expect_navigation():
            page.get_by_role("link", name="Edit settings").click()
        assert page.inner_text("h1") == "Edit Short-lived"
        assert serious_violations(page) == []
        page.get_by_label("Name", exact=True).fill("Renamed")
        page.get_by_label("Reminder after (days)").fill("")
        with page.expect_navigation():
            page.get_by_role("button", name="Save changes").click()
        assert page.inner_text("h1") == "Renamed"
        after = api_survey(live.api, live.tenant, survey["id"])  # type: ignore[arg-type]
        assert (after["name"], after["reminderAfterDays"], after["question"]) == (
            "Renamed",
            None,
            survey["question"],
        )
        with page.expect_navigation():
            page.get_by_role("link", name="Delete survey").click()
        assert page.inner_text("h1") == "Delete Renamed?"
        assert serious_violations(page) == []
        with page.expect_navigation():
            page.get_by_role("button", name="Delete the survey and its answers").click()
        assert page.inner_text("h1") == "Surveys"
        assert "The survey was deleted" in page.inner_text("main")
        assert page.get_by_role("link", name="Renamed").count() == 0
        assert serious_violations(page) == []
    gone = live.api.get(f"/v1/nps-surveys/{survey['id']}", headers=live.tenant.viewer)
    assert gone.status_code == 404


def test_a_survey_page_on_a_phone(
    site: Site, chromium: Any, request: pytest.FixtureRequest, live: LiveOrg
) -> None:
    with page_for(chromium, site, request, viewport={"width": 375, "height": 740}) as page:
        sign_in(page, site, live.editor, f"/app/surveys/{live.answered['id']}")
        assert page.inner_text("h1") == "Live pulse"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways: {width}px"
        assert page.get_by_role("button", name="Send invitations").is_visible()
        assert page.get_by_label("Recipients").bounding_box()["width"] <= 375
        assert serious_violations(page) == []
