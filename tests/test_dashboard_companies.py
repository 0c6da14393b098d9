"""Companies and contacts in the dashboard: ``/app/companies``, a company's page, a contact's page.

The companies table's figures are the metrics API's grouped by company for the same period, its
Planhat column is ``GET /companies/{id}``'s ``nps``, each row's trend line is the API's monthly
trend for that company; a company's page shows the API's figures for ``companyId`` and the
contacts as ``GET /endusers`` lists them; a contact's page shows exactly ``GET /nps?email=``.
Nothing of another organization shows; hostile names and comments stay text; bad parameters are
a 400 naming them; only admins delete, and only with the form's token.

Over HTTP (TestClients with a dashboard session) for the figures, and in Chromium for the flow a
person clicks (and types) through, on a desktop and a phone-sized screen.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from npsd.analytics.trends import last_months, month_labels
from npsd.app import create_app
from npsd.kit.timeutil import utcnow
from npsd.web.render import one_decimal

METRICS = "/v1/nps-surveys/nps-metrics"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@dataclass
class Org:
    """One organization's companies, contacts and answers, made once for the module."""

    tenant: Tenant
    companies: dict[str, str]  # label -> id
    contacts: dict[str, str]  # address -> id
    other: Tenant
    other_company: str
    other_contact: str
    people: dict[str, Person]


def answered(days_ago: int, hour: int = 10) -> str:
    return f"{(utcnow().date() - timedelta(days=days_ago)).isoformat()}T{hour:02d}:30:00Z"


def put(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> None:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text


def new_company(client: TestClient, tenant: Tenant, name: str, **fields: Any) -> str:
    r = client.post("/companies", json={"name": name, **fields}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


@pytest.fixture(scope="module")
def org(database: TestDatabase, client: TestClient) -> Org:
    """Last 90 days: Acme NPS 20 (5 answers, two of them Ann's), Beta -50 (2), Gamma 33.3 (3), the hostile one 100
    (1), Delta none; answers without a company -20 (5). Older answers: Acme's in two earlier
    months (its trend line), Gamma's 400 days ago (all time only; not in its Planhat NPS)."""
    tenant = make_tenant(database)
    ids = {
        "acme": new_company(client, tenant, "Acme", domains=["acme.example"]),
        "beta": new_company(client, tenant, "Beta"),
        "gamma": new_company(client, tenant, "Gamma"),
        "delta": new_company(client, tenant, "Delta"),
        "hostile": new_company(client, tenant, HOSTILE),
    }
    items: list[dict[str, Any]] = []

    def add(email: str, score: int, days_ago: int, company: str | None = None, **extra: Any) -> None:
        item: dict[str, Any] = {"email": email, "score": score, "dateAnswered": answered(days_ago), **extra}
        if company:
            item["cId"] = ids[company]
        items.append(item)

    survey = client.post("/v1/nps-surveys", json={"name": "Quarterly"}, headers=tenant.editor).json()["id"]
    add("ann@acme.example", 10, 2, comment="Great support", campaignId=survey)
    add("ann@acme.example", 6, 40, comment="Slow at first")
    add("bob@acme.example", 10, 5)
    add("cy@acme.example", 9, 20)
    add("dee@acme.example", 3, 70, comment=HOSTILE)
    add("old1@acme.example", 0, 150)
    add("old2@acme.example", 10, 250)
    add("eve@beta.example", 8, 3, "beta")
    add("fay@beta.example", 2, 30, "beta")
    add("gus@gamma.example", 10, 1, "gamma")
    add("hal@gamma.example", 7, 10, "gamma")
    add("ida@gamma.example", 7, 60, "gamma")
    add("jon@gamma.example", 0, 400, "gamma")
    add("kim@hostile.example", 9, 4, "hostile", comment=HOSTILE)
    for i, score in enumerate([6, 6, 10, 9, 0]):
        add(f"loner{i}@nowhere.example", score, 5 + i)
    put(client, tenant, items)
    contacts = {
        e["email"]: e["_id"]
        for e in client.get("/endusers", params={"limit": 1000}, headers=tenant.viewer).json()
    }
    other = make_tenant(database)
    other_company = new_company(client, other, "Other org's company")
    put(client, other, [{"email": "spy@other.example", "score": 0, "cId": other_company}])
    other_contact = client.get("/endusers", headers=other.viewer).json()[0]["_id"]
    people = {role: make_user(database.db, tenant.org_id, role) for role in ("viewer", "editor", "admin")}
    return Org(tenant, ids, contacts, other, other_company, other_contact, people)


@pytest.fixture(scope="module")
def pages_app(database: TestDatabase) -> Any:
    """An app of this module's own (its sign-in counters are its own), not entered: the API
    client's app owns the lifespan."""
    return create_app(database.settings, database.db)


def signed_in(app: Any, person: Person) -> TestClient:
    """A browser-like client (cookies, no redirects followed) signed in as ``person``."""
    browser = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    form = browser.get("/app/login")
    r = browser.post(
        "/app/login",
        data={"email": person.email, "password": person.password, "csrf_token": csrf_of(form.text)},
    )
    assert r.status_code == 303, r.text
    return browser


@pytest.fixture(scope="module")
def viewer(pages_app: Any, org: Org) -> TestClient:
    return signed_in(pages_app, org.people["viewer"])


@pytest.fixture(scope="module")
def admin(pages_app: Any, org: Org) -> TestClient:
    return signed_in(pages_app, org.people["admin"])


# ------------------------------------------------------------------------------- reading pages


def text_of(fragment: str) -> str:
    """The text of an HTML fragment, as a person reads it."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


@dataclass
class Row:
    key: str  # the company id, or "none" for the answers without a company
    name: str
    figures: dict[str, str]
    trend: list[float | None]


def table_rows(page: str) -> list[Row]:
    """The rows of the companies table, in order."""
    body = page.split("<caption>Companies</caption>", 1)[1].split("</table>", 1)[0]
    rows = []
    for chunk in body.split('<tr data-company="')[1:]:
        key = chunk.split('"', 1)[0]
        name = text_of(re.search(r'<th scope="row">(.*?)</th>', chunk, re.S).group(1))  # type: ignore[union-attr]
        figures = {k: text_of(v) for k, v in re.findall(r'data-figure="(\w+)">(.*?)</td>', chunk, re.S)}
        label = html.unescape(
            re.search(r'<svg class="spark" role="img" aria-label="([^"]*)"', chunk).group(1)
        )  # type: ignore[union-attr]
        values = label.rsplit(": ", 1)[1]
        trend = (
            [None] * 12
            if values == "no answers"
            else [None if v == "—" else float(v) for v in values.split(", ")]
        )
        rows.append(Row(key, name, figures, trend))
    return rows


def figures(page: str) -> dict[str, str]:
    """The figures a page shows, by the API field they print (``data-figure``)."""
    found = re.findall(r'<(\w+)[^>]*? data-figure="(\w+)">(.*?)</\1>', page, re.S)
    return {name: text_of(value) for _, name, value in found}


def metrics(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = client.get(METRICS, params=params, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def period_params(days: int) -> dict[str, str]:
    """The API's since/until of the preset of ``days`` days ending today."""
    today = utcnow().date()
    return {"since": (today - timedelta(days=days - 1)).isoformat(), "until": today.isoformat()}


def moe(value: float | None) -> str:
    return "—" if value is None else "±" + one_decimal(value)


# ------------------------------------------------------------------------------------- the table


@pytest.mark.parametrize(("preset", "days"), [("90d", 90), ("all", None), ("30d", 30)])
def test_the_table_shows_the_apis_figures_by_company(
    client: TestClient, viewer: TestClient, org: Org, preset: str, days: int | None
) -> None:
    page = viewer.get("/app/companies", params={"period": preset})
    assert page.status_code == 200, page.text
    assert "<h1>Companies</h1>" in page.text
    for column in ("Company", "NPS", "Responses"):
        assert re.search(rf'<th scope="col"[^>]*>(<a [^>]*>)?{column}(</a>)?', page.text), column
    rows = {r.key: r for r in table_rows(page.text)}
    api = metrics(client, org.tenant, groupBy="company", **(period_params(days) if days else {}))
    groups = {g["key"] or "none": g for g in api["groups"]}
    assert set(groups) - {"none"} <= set(org.companies.values())
    for key, g in groups.items():
        row = rows[key]
        assert row.figures["npsScore"] == one_decimal(g["npsScore"]), (key, row)
        assert row.figures["marginOfError"] == moe(g["marginOfError"])
        assert row.figures["responses"] == str(g["responses"])
    # every company is a row, with or without answers in the period
    assert set(rows) == set(org.companies.values()) | {"none"}
    for key in set(org.companies.values()) - set(groups):
        assert (rows[key].figures["npsScore"], rows[key].figures["responses"]) == ("—", "0")
    assert rows["none"].name == "No company"
    assert sum(int(r.figures["responses"]) for r in rows.values()) == api["totalResponses"]


def test_the_design_of_the_data(viewer: TestClient, org: Org) -> None:
    """The figures the sorting tests rely on, read from the page (and equal to the API above)."""
    rows = {r.name: r.figures for r in table_rows(viewer.get("/app/companies?period=90d").text)}
    assert {name: (f["npsScore"], f["responses"]) for name, f in rows.items()} == {
        "Acme": ("20.0", "5"),
        "Beta": ("-50.0", "2"),
        "Gamma": ("33.3", "3"),
        "Delta": ("—", "0"),
        HOSTILE: ("100.0", "1"),
        "No company": ("-20.0", "5"),
    }


def test_the_planhat_column_is_each_companys_nps(client: TestClient, viewer: TestClient, org: Org) -> None:
    rows = {r.key: r for r in table_rows(viewer.get("/app/companies?period=30d").text)}
    for company_id in org.companies.values():
        api = client.get(f"/companies/{company_id}", headers=org.tenant.viewer).json()
        assert rows[company_id].figures["planhatNps"] == f"{one_decimal(api['nps'])} ({api['npsResponses']})"
    assert rows["none"].figures["planhatNps"] == "—"
    # the two figures differ, and the page says what each counts
    acme = rows[org.companies["acme"]].figures
    assert acme["npsScore"] != acme["planhatNps"].split(" ")[0]
    page = viewer.get("/app/companies").text
    assert "Contacts' latest (360 days)" in page and "every answer of the period" in page


ORDERS = {
    "name": [HOSTILE, "Acme", "Beta", "Delta", "Gamma", "No company"],
    "-name": ["No company", "Gamma", "Delta", "Beta", "Acme", HOSTILE],
    "nps": ["Beta", "No company", "Acme", "Gamma", HOSTILE, "Delta"],
    "-nps": [HOSTILE, "Gamma", "Acme", "No company", "Beta", "Delta"],
    "responses": ["Delta", HOSTILE, "Beta", "Gamma", "Acme", "No company"],
    "-responses": ["Acme", "No company", "Gamma", "Beta", HOSTILE, "Delta"],
}


@pytest.mark.parametrize("sort", list(ORDERS))
def test_sorting_by_each_column_both_ways(viewer: TestClient, org: Org, sort: str) -> None:
    page = viewer.get("/app/companies", params={"period": "90d", "sort": sort})
    assert page.status_code == 200
    assert [r.name for r in table_rows(page.text)] == ORDERS[sort]
    column = sort.lstrip("-")
    direction = "descending" if sort.startswith("-") else "ascending"
    assert len(re.findall(r"aria-sort=", page.text)) == 1
    assert f'aria-sort="{direction}"' in page.text
    # the sorted column's header link turns the order around, keeping the period
    other_way = column if sort.startswith("-") else "-" + column
    assert f'<a href="/app/companies?period=90d&amp;sort={other_way}">' in page.text


def test_responses_with_equal_counts_are_ordered_by_name(viewer: TestClient, org: Org) -> None:
    """Acme and "No company" both have 5 answers: the tie follows the name, the same on every
    request and database ("No company" after every company)."""
    rows = table_rows(viewer.get("/app/companies?period=90d&sort=-responses").text)
    assert [r.name for r in rows[:2]] == ["Acme", "No company"]


def test_each_trend_line_is_the_apis_monthly_trend(client: TestClient, viewer: TestClient, org: Org) -> None:
    months = last_months(utcnow().date())
    labels = month_labels(months)
    rows = {r.key: r for r in table_rows(viewer.get("/app/companies?period=all").text)}
    for company_id in org.companies.values():
        api = metrics(client, org.tenant, companyId=company_id, interval="month", since=months[0].isoformat())
        by_month = {p["period"]: p["npsScore"] for p in api["trend"]}
        assert rows[company_id].trend == [by_month.get(label) for label in labels], company_id
    acme = rows[org.companies["acme"]].trend
    assert sum(v is not None for v in acme) >= 3  # answers in three different months at least
    assert rows[org.companies["delta"]].trend == [None] * 12


def test_the_trend_lines_come_from_one_query(database: TestDatabase, viewer: TestClient, org: Org) -> None:
    """Six rows, each with its trend line: the roll-up is read three times in all (the metrics'
    days and groups, and the trend lines of every row at once), never once per company."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "nps_rollup" in statement:
            statements.append(statement)

    event.listen(database.db.engine, "before_cursor_execute", record)
    try:
        page = viewer.get("/app/companies?period=all")
    finally:
        event.remove(database.db.engine, "before_cursor_execute", record)
    assert len(table_rows(page.text)) == 6
    assert len(statements) == 3, statements
    # the trend lines' query: one sum per month of the twelve, grouped by company and score
    trend = [s for s in statements if s.count("CASE WHEN") == 12]
    assert len(trend) == 1 and "GROUP BY nps_rollup.company_id, nps_rollup.score" in trend[0]


def test_the_table_is_paged_by_fifty(client: TestClient, database: TestDatabase, pages_app: Any) -> None:
    tenant = make_tenant(database)
    for i in range(53):
        new_company(client, tenant, f"Company {i:02d}")
    browser = signed_in(pages_app, make_user(database.db, tenant.org_id, "viewer"))
    first = browser.get("/app/companies?sort=-name")
    assert [r.name for r in table_rows(first.text)] == [f"Company {i:02d}" for i in range(52, 2, -1)]
    assert "Page 1 of 2" in first.text
    assert 'href="/app/companies?period=90d&amp;sort=-name&amp;page=2" rel="next"' in first.text
    second = browser.get("/app/companies?sort=-name&page=2")
    assert [r.name for r in table_rows(second.text)] == ["Company 02", "Company 01", "Company 00"]
    assert "Page 2 of 2" in second.text and 'rel="prev"' in second.text
    assert table_rows(browser.get("/app/companies?page=9").text) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sort=bogus", "sort"),
        ("sort=--nps", "sort"),
        ("sort=%00", "sort"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=-1", "page"),
        ("page=99999999999999999999", "page"),
        ("period=tomorrow", "period"),
        ("since=2026-13-01", "since"),
        ("until=yesterday", "until"),
        ("since=2026-03-01&until=2026-02-01", "until"),
        ("since=" + "9" * 300, "since"),
    ],
)
def test_a_malformed_parameter_is_a_400_naming_it(
    viewer: TestClient, org: Org, query: str, field: str
) -> None:
    r = viewer.get("/app/companies?" + query)
    assert r.status_code == 400, r.text
    if field in ("sort", "page"):
        assert f"<strong>{field}</strong>" in r.text  # the error page names it
    elif field == "period":
        assert "period: Choose one of" in r.text
    else:
        assert f'id="f-{field}-error"' in r.text  # the message next to the field, what was typed kept
        assert 'aria-invalid="true"' in r.text


# ------------------------------------------------------------------------------- a company's page


def test_a_companys_page_shows_the_apis_figures(client: TestClient, viewer: TestClient, org: Org) -> None:
    acme = org.companies["acme"]
    for preset, days in (("90d", 90), ("all", None), ("12m", 365)):
        page = viewer.get(f"/app/companies/{acme}", params={"period": preset})
        assert page.status_code == 200
        assert "<h1>Acme</h1>" in page.text
        api = metrics(
            client, org.tenant, companyId=acme, **(period_params(days) if days else {}), interval="week"
        )
        shown = figures(page.text)
        assert shown["npsScore"] == one_decimal(api["npsScore"])
        assert shown["marginOfError"] == moe(api["marginOfError"])
        low, high = api["confidenceInterval"]
        assert shown["confidenceInterval"] == f"{one_decimal(low)} to {one_decimal(high)}"
        assert shown["totalResponses"] == str(api["totalResponses"])
        for key in ("promoter", "passive", "detractor"):
            assert shown[key + "s"] == str(api[key + "s"])
            assert shown[key + "Percentage"] == one_decimal(api[key + "Percentage"]) + "%"
        assert ("data-low-sample" in page.text) == api["lowSample"]
        # the distribution's numbers, each linking to the feed of that score for this company
        for score, count in enumerate(api["distribution"]):
            assert re.search(
                rf'<a href="/app/responses\?period={preset}&amp;companyId={acme}&amp;score={score}">{count}</a>',
                page.text,
            ), score
    company = client.get(f"/companies/{acme}", headers=org.tenant.viewer).json()
    assert figures(page.text)["planhatNps"] == one_decimal(company["nps"])
    assert figures(page.text)["npsResponses"] == str(company["npsResponses"])
    assert f'<a href="/app/responses?companyId={acme}">All answers</a>' in page.text


def test_a_companys_trend_is_the_apis(client: TestClient, viewer: TestClient, org: Org) -> None:
    acme = org.companies["acme"]
    page = viewer.get(f"/app/companies/{acme}?period=all&interval=month").text
    api = metrics(client, org.tenant, companyId=acme, interval="month")
    table = page.split("<caption>NPS trend</caption>", 1)[1].split("</table>", 1)[0]
    shown = re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', table)
    assert shown == [(p["period"], one_decimal(p["npsScore"])) for p in api["trend"]]
    assert 'aria-current="true">By month</a>' in page


def test_a_companys_contacts_with_their_latest_scores(
    client: TestClient, viewer: TestClient, org: Org
) -> None:
    acme = org.companies["acme"]
    page = viewer.get(f"/app/companies/{acme}").text
    api = client.get(
        "/endusers", params={"companyId": acme, "sort": "email"}, headers=org.tenant.viewer
    ).json()
    body = page.split("<caption>Contacts</caption>", 1)[1].split("</table>", 1)[0]
    shown = []
    for chunk in body.split('<tr data-contact="')[1:]:
        cells = {k: text_of(v) for k, v in re.findall(r'data-figure="(\w+)">(.*?)</td>', chunk, re.S)}
        shown.append((chunk.split('"', 1)[0], cells["nps"], cells["npsDate"]))
    assert shown == [(e["_id"], str(e["nps"]), e["npsDate"][:10]) for e in api]
    assert len(api) == 6 and f"{len(api)} contacts" in page
    # each links to its page
    for e in api:
        assert f'href="/app/contacts/{e["_id"]}"' in page


def test_a_companys_latest_answers_newest_first(client: TestClient, viewer: TestClient, org: Org) -> None:
    acme = org.companies["acme"]
    page = viewer.get(f"/app/companies/{acme}").text
    api = client.get(
        "/nps", params={"companyId": acme, "npsExpiryDay": 0, "limit": 10}, headers=org.tenant.viewer
    ).json()
    body = page.split("<caption>Latest answers</caption>", 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<tr data-answer="(\w+)">', body) == [r["_id"] for r in api]
    assert "Quarterly" in body and "No survey" in body  # the survey's name, or "No survey"


def test_another_orgs_or_an_unknown_company_is_a_404_page(viewer: TestClient, org: Org) -> None:
    for key in (org.other_company, "0" * 24, "not-an-id", "extid-x"):
        r = viewer.get(f"/app/companies/{key}")
        assert r.status_code == 404, key
        assert "<h1>Not found</h1>" in r.text
        assert "Other org" not in r.text
    table = viewer.get("/app/companies?period=all").text
    assert org.other_company not in table and "Other org" not in table


# ------------------------------------------------------------------------------- a contact's page


def test_a_contacts_page_shows_exactly_its_answers(client: TestClient, viewer: TestClient, org: Org) -> None:
    ann = org.contacts["ann@acme.example"]
    page = viewer.get(f"/app/contacts/{ann}")
    assert page.status_code == 200
    assert "<h1>ann@acme.example</h1>" in page.text  # no name: the address
    api = client.get(
        "/nps", params={"email": "ann@acme.example", "npsExpiryDay": 0}, headers=org.tenant.viewer
    ).json()
    body = page.text.split("<caption>Answers</caption>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r'<tr data-answer="(\w+)">\s*<td>([^<]*)</td>\s*<td class="num"><span class="(\w+)">(\d+)</span>',
        body,
    )
    assert rows == [(r["_id"], r["dateAnswered"][:10], r["scoreType"], str(r["score"])) for r in api]
    assert len(rows) == 2
    assert "Great support" in body and "Slow at first" in body and "Quarterly" in body
    contact = client.get(f"/endusers/{ann}", headers=org.tenant.viewer).json()
    assert figures(page.text)["nps"] == f"{contact['nps']} on {contact['npsDate'][:10]}"
    assert f'<a href="/app/companies/{org.companies["acme"]}">Acme</a>' in page.text


def test_a_named_contact_without_a_company(client: TestClient, viewer: TestClient, org: Org) -> None:
    loner = org.contacts["loner0@nowhere.example"]
    r = client.put(f"/endusers/{loner}", json={"name": "Lone Ranger"}, headers=org.tenant.editor)
    assert r.status_code == 200
    page = viewer.get(f"/app/contacts/{loner}").text
    assert "<h1>Lone Ranger</h1>" in page
    assert "<dd>No company</dd>" in page


def test_another_orgs_or_an_unknown_contact_is_a_404_page(viewer: TestClient, org: Org) -> None:
    for key in (org.other_contact, "f" * 24, "nope"):
        r = viewer.get(f"/app/contacts/{key}")
        assert r.status_code == 404, key
        assert "spy@other.example" not in r.text


def test_a_malformed_page_number_of_a_contact_or_company_is_a_400(viewer: TestClient, org: Org) -> None:
    ann, acme = org.contacts["ann@acme.example"], org.companies["acme"]
    for path in (f"/app/contacts/{ann}?page=x", f"/app/companies/{acme}?contacts=0"):
        r = viewer.get(path)
        assert r.status_code == 400, path
    r = viewer.get(f"/app/companies/{acme}?interval=year")
    assert r.status_code == 400 and "interval: Choose day, week or month." in r.text


def test_hostile_names_and_comments_stay_text(viewer: TestClient, org: Org) -> None:
    hostile = org.companies["hostile"]
    escaped = html.escape(HOSTILE, quote=False)
    for path in (
        "/app/companies?period=90d",
        f"/app/companies/{hostile}",
        f"/app/companies/{org.companies['acme']}",
        f"/app/contacts/{org.contacts['dee@acme.example']}",
        f"/app/contacts/{org.contacts['kim@hostile.example']}",
    ):
        page = viewer.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert escaped in page or html.escape(HOSTILE) in page, path
    assert f"<h1>{escaped}</h1>" in viewer.get(f"/app/companies/{hostile}").text


# ------------------------------------------------------------------------------------- deleting


@pytest.fixture
def small(client: TestClient, database: TestDatabase) -> tuple[Tenant, str, str]:
    """An organization of its own (the module's data stays as designed): one company with one
    contact and its answer."""
    tenant = make_tenant(database)
    company = new_company(client, tenant, "Doomed")
    put(client, tenant, [{"email": "last@doomed.example", "score": 5, "cId": company}])
    contact = client.get("/endusers", headers=tenant.viewer).json()[0]["_id"]
    return tenant, company, contact


def test_viewers_and_editors_see_no_delete_and_are_refused(
    client: TestClient, database: TestDatabase, pages_app: Any, small: tuple[Tenant, str, str]
) -> None:
    tenant, company, contact = small
    for role in ("viewer", "editor"):
        browser = signed_in(pages_app, make_user(database.db, tenant.org_id, role))
        page = browser.get(f"/app/companies/{company}").text
        assert "Delete company" not in page and "/delete" not in page
        assert "Delete contact" not in browser.get(f"/app/contacts/{contact}").text
        token = csrf_of(page)  # the sign-out form's: a valid token, so the refusal is the role's
        for path in (f"/app/companies/{company}/delete", f"/app/contacts/{contact}/delete"):
            r = browser.post(path, data={"csrf_token": token, "cascade": "true"})
            assert r.status_code == 403, (role, path)
            assert "this needs the admin role" in r.text
    assert client.get(f"/companies/{company}", headers=tenant.viewer).status_code == 200
    assert client.get(f"/endusers/{contact}", headers=tenant.viewer).status_code == 200


def test_a_delete_without_the_forms_token_changes_nothing(
    client: TestClient, database: TestDatabase, pages_app: Any, small: tuple[Tenant, str, str]
) -> None:
    tenant, company, contact = small
    browser = signed_in(pages_app, make_user(database.db, tenant.org_id, "admin"))
    for data in ({"cascade": "true"}, {"cascade": "true", "csrf_token": "forged"}):
        for path in (f"/app/companies/{company}/delete", f"/app/contacts/{contact}/delete"):
            r = browser.post(path, data=data)
            assert r.status_code == 403 and "security token" in r.text
    assert client.get(f"/companies/{company}", headers=tenant.viewer).status_code == 200
    assert len(client.get("/nps", headers=tenant.viewer).json()) == 1


def test_an_admin_deletes_a_contact_then_a_company_with_their_answers(
    client: TestClient, database: TestDatabase, pages_app: Any, small: tuple[Tenant, str, str], org: Org
) -> None:
    tenant, company, contact = small
    browser = signed_in(pages_app, make_user(database.db, tenant.org_id, "admin"))
    page = browser.get(f"/app/contacts/{contact}").text
    # with answers and without the box ticked: 409, the message next to the box, nothing deleted
    refused = browser.post(f"/app/contacts/{contact}/delete", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 409
    assert 'id="f-cascade-error"' in refused.text and "cascade" in refused.text
    assert client.get(f"/endusers/{contact}", headers=tenant.viewer).status_code == 200
    # another organization's contact and company are not found, whatever the admin sends
    for path in (f"/app/contacts/{org.other_contact}/delete", f"/app/companies/{org.other_company}/delete"):
        r = browser.post(path, data={"csrf_token": csrf_of(page), "cascade": "true"})
        assert r.status_code == 404
    assert client.get(f"/endusers/{org.other_contact}", headers=org.other.viewer).status_code == 200
    done = browser.post(
        f"/app/contacts/{contact}/delete", data={"csrf_token": csrf_of(page), "cascade": "true"}
    )
    assert (done.status_code, done.headers["location"]) == (303, f"/app/companies/{company}?contactDeleted=1")
    assert "The contact was deleted." in browser.get(done.headers["location"]).text
    assert client.get(f"/endusers/{contact}", headers=tenant.viewer).status_code == 404
    assert client.get("/nps", headers=tenant.viewer).json() == []
    # the company now has no answers: it goes without the box
    gone = browser.post(f"/app/companies/{company}/delete", data={"csrf_token": csrf_of(page)})
    assert (gone.status_code, gone.headers["location"]) == (303, "/app/companies?deleted=1")
    listing = browser.get(gone.headers["location"]).text
    assert "The company was deleted." in listing and table_rows(listing) == []
    assert client.get(f"/companies/{company}", headers=tenant.viewer).status_code == 404


# --------------------------------------------------------------------------------- in a browser


def focus_by_keyboard(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element ``selector`` names has the focus (as a keyboard user does)."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{selector} never got the focus by Tab")


def test_companies_company_and_contact_in_a_browser_by_keyboard(
    site: Site, chromium: Any, request: pytest.FixtureRequest, org: Org
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, org.people["viewer"], "/app/companies?period=90d")
        assert page.inner_text("h1") == "Companies"
        table = page.get_by_role("table", name="Companies")
        for column in ("Company", "NPS", "Responses"):
            assert table.get_by_role("columnheader", name=column, exact=True).count() == 1
        assert serious_violations(page) == []
        # sort by NPS with the keyboard: Tab to the column's link, Enter; again for the other way
        for expected in ("-nps", "nps"):
            focus_by_keyboard(page, "th a:text-is('NPS')")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert page.url.endswith(f"sort={expected}")
            names = page.locator("table tbody th[scope=row]").all_inner_texts()
            assert names == ORDERS[expected]
        # open Acme by keyboard
        focus_by_keyboard(page, "tbody th a:text-is('Acme')")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.inner_text("h1") == "Acme"
        assert page.get_by_role("img", name=re.compile("NPS trend")).count() == 1
        assert page.get_by_role("img", name=re.compile("Score distribution")).count() == 1
        assert page.get_by_role("table", name="Contacts").count() == 1
        assert serious_violations(page) == []
        # the hostile comment among the latest answers: text, and no element made of it
        answers = page.get_by_role("table", name="Latest answers")
        assert HOSTILE in answers.inner_text()
        assert page.locator("img[src='x'], main script").count() == 0
        # open a contact (the one who left the hostile comment)
        focus_by_keyboard(page, "table a:text-is('dee@acme.example') >> nth=0")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.inner_text("h1") == "dee@acme.example"
        history = page.get_by_role("table", name="Answers")
        assert history.locator("tbody tr").count() == 1
        assert HOSTILE in history.inner_text()
        assert page.locator("img[src='x'], main script").count() == 0
        assert serious_violations(page) == []
        # and back to its company by its link
        with page.expect_navigation():
            page.get_by_role("main").get_by_role("link", name="Acme").first.click()
        assert page.inner_text("h1") == "Acme"


def test_the_companies_on_a_phone_sized_screen(
    site: Site, chromium: Any, request: pytest.FixtureRequest, org: Org
) -> None:
    with page_for(chromium, site, request, viewport={"width": 375, "height": 740}) as page:
        sign_in(page, site, org.people["viewer"], "/app/companies")
        assert page.inner_text("h1") == "Companies"
        # the page itself does not scroll sideways (the wide table scrolls in its own box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert serious_violations(page) == []
        with page.expect_navigation():
            page.get_by_role("link", name="Gamma").click()
        assert page.inner_text("h1") == "Gamma"
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert serious_violations(page) == []
