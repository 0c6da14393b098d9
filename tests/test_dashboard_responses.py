"""The feed ``/app/responses``: each filter narrows the answers as ``GET /nps`` does for the same
filter, "N responses" is the number that match, pages follow each other, the downloads hold the
same answers, bad filters are named next to their field, nothing of another organization shows,
a hostile comment stays text, and a new answer appears without a reload.

Over HTTP (a TestClient with a dashboard session) for what the feed holds, and in Chromium for
applying filters by keyboard, a phone-sized screen, axe, and the live update.
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from npsd.kit.ids import new_id
from npsd.kit.timeutil import utcnow

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
PAGE = 25


@dataclass
class Org:
    tenant: Tenant
    viewer: Person
    surveys: list[str]
    companies: list[str]
    other: Tenant
    other_survey: str
    other_company: str


def answered(days_ago: int, hour: int) -> str:
    """A time ``days_ago`` whole days before yesterday, at ``hour``: always in the past, so an
    answer posted now is the newest whatever the time of day."""
    day = utcnow().date() - timedelta(days=days_ago + 1)
    return f"{day.isoformat()}T{hour:02d}:{days_ago % 60:02d}:00Z"


def put(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> None:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def org(database: TestDatabase, client: TestClient) -> Org:
    tenant = make_tenant(database)
    surveys = [
        client.post("/v1/nps-surveys", json={"name": name}, headers=tenant.editor).json()["id"]
        for name in ("Onboarding", "Support")
    ]
    companies = [
        client.post("/companies", json={"name": name}, headers=tenant.editor).json()["_id"]
        for name in ("Acme", HOSTILE)
    ]
    rng = random.Random(20)
    items: list[dict[str, Any]] = []
    for i in range(150):
        item: dict[str, Any] = {
            "email": f"person{i % 40}@example.com",
            "score": rng.randint(0, 10),
            "dateAnswered": answered(rng.randint(0, 200), i % 24),
            "comment": f"remark number {i}",
        }
        if i % 3:
            item["campaignId"] = surveys[i % 2]
        if i % 5 == 0:
            item["cId"] = companies[0]
        elif i % 7 == 0:
            item["cId"] = companies[1]
        items.append(item)
    items[0]["comment"] = HOSTILE
    items[0]["dateAnswered"] = answered(0, 0)
    put(client, tenant, items)
    # a contact with a hostile name
    client.post(
        "/endusers", json={"email": "hostile@example.com", "name": HOSTILE}, headers=tenant.editor
    ).raise_for_status()
    put(client, tenant, [{"email": "hostile@example.com", "score": 3, "dateAnswered": answered(1, 5)}])
    other = make_tenant(database)
    other_survey = client.post("/v1/nps-surveys", json={"name": "Theirs"}, headers=other.editor).json()["id"]
    other_company = client.post("/companies", json={"name": "Their company"}, headers=other.editor).json()[
        "_id"
    ]
    put(
        client,
        other,
        [
            {
                "email": f"them{i}@other.example",
                "score": i % 11,
                "comment": "not for your eyes",
                "dateAnswered": answered(i, 3),
                "campaignId": other_survey,
                "cId": other_company,
            }
            for i in range(30)
        ],
    )
    viewer = make_user(database.db, tenant.org_id, "viewer")
    return Org(tenant, viewer, surveys, companies, other, other_survey, other_company)


def signed_in(app: Any, person: Person) -> TestClient:
    browser = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    form = browser.get("/app/login")
    r = browser.post(
        "/app/login",
        data={"email": person.email, "password": person.password, "csrf_token": csrf_of(form.text)},
    )
    assert r.status_code == 303, r.text
    return browser


@pytest.fixture(scope="module")
def browser(app: Any, org: Org) -> TestClient:
    """Not entered as a context: the app's lifespan belongs to the session's API client."""
    return signed_in(app, org.viewer)


def api_records(
    client: TestClient, tenant: Tenant, score: int | None = None, **params: Any
) -> list[dict[str, Any]]:
    """Every record ``GET /nps`` lists for ``params`` (all ages), newest first; ``score`` the
    API does not filter by, so it is applied here."""
    r = client.get("/nps", params={"npsExpiryDay": 0, "limit": 10000, **params}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return [x for x in r.json() if score is None or x["score"] == score]


def feed(browser: TestClient, query: str = "", status: int = 200) -> tuple[int, list[str], str]:
    """(N of "N responses", the row ids of the page, the page)."""
    r = browser.get("/app/responses" + query)
    assert r.status_code == status, (query, r.text[:2000])
    count = re.search(r"data-count>(\d+) responses<", r.text)
    return (int(count.group(1)) if count else -1), re.findall(r'data-answer="(\w+)"', r.text), r.text


def api_day(day: Any, end: bool = False) -> str:
    return f"{day.isoformat()}T23:59:59.999999Z" if end else day.isoformat()


def test_each_filter_narrows_as_the_api_does(client: TestClient, browser: TestClient, org: Org) -> None:
    today = utcnow().date()
    start, end = today - timedelta(days=120), today - timedelta(days=30)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("", {}),
        (f"?surveyId={org.surveys[0]}", {"campaignId": org.surveys[0]}),
        ("?category=promoter", {"scoreType": "promoter"}),
        ("?category=detractor", {"scoreType": "detractor"}),
        ("?score=7", {"score": 7}),
        ("?search=number+1", {"search": "number 1"}),
        ("?search=REMARK+numb&score=3", {"search": "REMARK numb", "score": 3}),
        (f"?companyId={org.companies[0]}", {"companyId": org.companies[0]}),
        (f"?since={start}&until={end}", {"since": api_day(start), "until": api_day(end, True)}),
        ("?period=30d", {"since": api_day(today - timedelta(days=29))}),
        (
            f"?period=90d&surveyId={org.surveys[1]}&category=passive&companyId={org.companies[0]}",
            {
                "since": api_day(today - timedelta(days=89)),
                "campaignId": org.surveys[1],
                "scoreType": "passive",
                "companyId": org.companies[0],
            },
        ),
    ]
    everything = len(api_records(client, org.tenant))
    for query, params in cases:
        expected = api_records(client, org.tenant, **params)
        n, ids, page = feed(browser, query)
        assert n == len(expected), query
        assert ids == [x["_id"] for x in expected[:PAGE]], query
        assert n > 0 and (n < everything or query == ""), query
        if "score" in params:
            assert set(re.findall(r'<td class="num score"><span class="\w+">(\d+)</span>', page)) == {
                str(params["score"])
            }


def test_pages_follow_each_other(client: TestClient, browser: TestClient, org: Org) -> None:
    expected = [x["_id"] for x in api_records(client, org.tenant)]
    pages = -(-len(expected) // PAGE)
    assert pages >= 3
    seen: list[str] = []
    query = ""
    for number in range(1, pages + 1):
        n, ids, page = feed(browser, query)
        assert n == len(expected)
        seen += ids
        assert ("Previous</a>" in page) == (number > 1)
        assert f"Page {number} of {pages}" in page
        following = re.search(r'<a href="([^"]+)" rel="next">Next</a>', page)
        if number == pages:
            assert following is None
        else:
            assert following is not None
            query = "?" + urlsplit(html.unescape(following.group(1))).query
    assert seen == expected
    n, ids, _ = feed(browser, f"?page={pages + 5}")
    assert (n, ids) == (len(expected), [])


def test_bad_filters_are_named_next_to_their_field(browser: TestClient, org: Org) -> None:
    for query, field in (
        ("score=11", "score"),
        ("score=-1", "score"),
        ("score=nine", "score"),
        ("category=fans", "category"),
        ("since=banana", "since"),
        ("since=2026-05-01&until=2026-04-01", "until"),
        ("surveyId=nope", "surveyId"),
        (f"surveyId={new_id()}", "surveyId"),
        (f"surveyId={org.other_survey}", "surveyId"),
        (f"companyId={org.other_company}", "companyId"),
        ("companyId=%00", "companyId"),
        ("search=" + "x" * 201, "search"),
        ("search=a%00b", "search"),
    ):
        _, ids, page = feed(browser, "?" + query, status=400)
        assert f'id="f-{field}-error"' in page, query
        assert ids == [] and "Their company" not in page and "Theirs" not in page, query
    _, _, page = feed(browser, "?score=11&category=detractor", status=400)
    assert '<option value="detractor" selected>' in page  # what was typed is kept
    _, _, page = feed(browser, "?page=0", status=400)
    assert "page: Choose a page" in page


def test_a_search_is_words_never_syntax(client: TestClient, browser: TestClient, org: Org) -> None:
    for search in ('"NEAR( * : -remark', HOSTILE, "%", "'; drop table nps_record; --"):
        n, ids, page = feed(browser, "?" + urlencode({"search": search}))
        expected = api_records(client, org.tenant, search=search)
        assert (n, ids) == (len(expected), [x["_id"] for x in expected[:PAGE]]), search
        assert f'value="{escape(search)}"' in page  # what was typed is kept, as text


def test_nothing_of_another_organization_shows(browser: TestClient, org: Org) -> None:
    for query in ("", "?period=all", "?score=0", "?category=detractor", "?page=2"):
        _, _, page = feed(browser, query)
        assert "not for your eyes" not in page and "Their company" not in page and "Theirs" not in page
        assert "other.example" not in page


def test_stored_text_is_shown_as_text(browser: TestClient, org: Org) -> None:
    _, _, page = feed(browser)
    assert HOSTILE not in page
    assert page.count(html.escape(HOSTILE)) >= 3  # a comment, a contact's name, a company (option)


def test_downloads_follow_the_filters(client: TestClient, browser: TestClient, org: Org) -> None:
    query = f"?surveyId={org.surveys[0]}&category=detractor"
    n, _, page = feed(browser, query)
    links = dict(re.findall(r'<a class="button secondary" href="([^"]+)" download>(\w+)</a>', page))
    assert sorted(links.values()) == ["CSV", "JSON", "NDJSON", "XLSX"]
    href = {label: html.unescape(h) for h, label in links.items()}
    for label, link in href.items():
        assert parse_qs(urlsplit(link).query) == {
            "period": ["all"],
            "surveyId": [org.surveys[0]],
            "category": ["detractor"],
        }, label
    expected = [
        x["_id"] for x in api_records(client, org.tenant, campaignId=org.surveys[0], scoreType="detractor")
    ]
    rows = list(csv.DictReader(io.StringIO(browser.get(href["CSV"]).text)))
    assert len(rows) == n == len(expected)
    assert [r["_id"] for r in rows] == expected and {r["scoreType"] for r in rows} == {"detractor"}
    assert [x["_id"] for x in json.loads(browser.get(href["JSON"]).text)] == expected
    lines = browser.get(href["NDJSON"]).text.splitlines()
    assert [json.loads(line)["_id"] for line in lines] == expected
    xlsx = browser.get(href["XLSX"])
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert "attachment" in xlsx.headers["content-disposition"]
    # a score filter too, which GET /nps/export does not have
    scored = list(csv.DictReader(io.StringIO(browser.get("/app/responses/export.csv?score=10").text)))
    assert len(scored) == feed(browser, "?score=10")[0] and {r["score"] for r in scored} == {"10"}
    assert browser.get("/app/responses/export.pdf").status_code == 400
    refused = browser.get("/app/responses/export.csv?score=11")
    assert refused.status_code == 400 and "score" in refused.text


def test_a_new_answer_reaches_the_live_feed(client: TestClient, browser: TestClient, org: Org) -> None:
    n, _, page = feed(browser, f"?surveyId={org.surveys[1]}")
    live = html.unescape(re.search(r'id="responses-feed"[^>]*hx-get="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert browser.get(live).status_code == 204
    r = client.post(
        "/nps",
        json={
            "email": "live@example.com",
            "score": 4,
            "comment": "arrived live",
            "campaignId": org.surveys[1],
        },
        headers=org.tenant.editor,
    )
    assert r.status_code == 200
    fresh = browser.get(live)
    assert fresh.status_code == 200
    assert f"{n + 1} responses" in fresh.text and "arrived live" in fresh.text
    assert re.findall(r'data-answer="(\w+)"', fresh.text)[0] == r.json()["_id"]
    # later pages do not poll: new answers would shift their rows
    assert (
        "hx-get"
        not in feed(browser, f"?surveyId={org.surveys[1]}&page=2")[2].split('id="responses-feed"')[1][:40]
    )


def test_without_a_session_the_feed_asks_to_sign_in(app: Any) -> None:
    anonymous = TestClient(app, follow_redirects=False)
    for path in ("/app/responses?score=3", "/app/responses/export.csv", "/app/responses/live"):
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/app/login?next="), path


# ------------------------------------------------------------------------------------ in a browser


def test_filters_by_keyboard_on_a_phone(
    site: Site, chromium: Any, request: pytest.FixtureRequest, org: Org, client: TestClient
) -> None:
    with page_for(chromium, site, request, viewport={"width": 375, "height": 740}) as page:
        sign_in(page, site, org.viewer, "/app/responses")
        assert page.inner_text("h1") == "Responses"
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376)"
            ".map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 15)"
        )
        # nothing wider than the screen (a wide table scrolls in its own box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, wide
        assert serious_violations(page) == []
        # the hostile comment and name are text: visible as typed, no element made of them
        cell = page.locator("td.comment").filter(has_text=HOSTILE).first
        assert cell.is_visible() and cell.inner_text() == HOSTILE
        assert page.locator("td.contact a").filter(has_text=HOSTILE).first.inner_text() == HOSTILE
        assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0
        # keyboard only: Tab to "Category", choose by typing, Tab on to "Apply", Enter
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "f-category":
                break
        assert page.evaluate("document.activeElement.id") == "f-category"
        page.keyboard.type("Detractors")
        assert page.get_by_label("Category").input_value() == "detractor"
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "f-search":
                break
        page.keyboard.type("remark 1")
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Apply":
                break
        page.keyboard.press("Enter")  # the feed updates in place (htmx), the URL follows
        page.wait_for_url(re.compile(r"category=detractor"))
        query = parse_qs(urlsplit(page.url).query)
        assert (query["category"], query["search"]) == (["detractor"], ["remark 1"])
        categories = page.locator(
            "table:has(caption:text-is('Responses')) tbody td.category"
        ).all_inner_texts()
        assert categories and set(categories) == {"Detractor"}
        expected = len(api_records(client, org.tenant, scoreType="detractor", search="remark 1"))
        assert page.get_by_label("Search comments").input_value() == "remark 1"  # kept
        assert page.get_by_text(re.compile(r"^\d+ responses$")).inner_text() == f"{expected} responses"
        assert serious_violations(page) == []
