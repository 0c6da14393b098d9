"""The overview ``/app``: its figures are the metrics API's for the same filter (presets, a custom
range, a survey), with the comparison to the previous period; bad filters are named next to
their field; nothing of another organization shows; the live block swaps only on a change.

Over HTTP (a TestClient with a dashboard session) for the figures, and in Chromium for the
flows a person clicks through: a bar of the distribution and a category open the filtered feed,
a new answer appears without a reload, and the page passes axe on a desktop and a phone screen.
"""

from __future__ import annotations

import html
import random
import re
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from npsd.kit.ids import new_id
from npsd.kit.models import Invitation
from npsd.kit.timeutil import utcnow
from npsd.web.render import one_decimal, percent, signed

METRICS = "/v1/nps-surveys/nps-metrics"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@dataclass
class Org:
    """One organization's data, made once for the module."""

    tenant: Tenant
    viewer: Person
    survey_id: str
    hostile_survey_id: str
    company_id: str
    other: Tenant
    other_survey_id: str


def put(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> None:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text


def answered(days_ago: int, hour: int = 10) -> str:
    return f"{(utcnow().date() - timedelta(days=days_ago)).isoformat()}T{hour:02d}:30:00Z"


@pytest.fixture(scope="module")
def org(database: TestDatabase, client: TestClient) -> Org:
    tenant = make_tenant(database)
    survey = client.post("/v1/nps-surveys", json={"name": "Onboarding"}, headers=tenant.editor).json()["id"]
    hostile = client.post("/v1/nps-surveys", json={"name": HOSTILE}, headers=tenant.editor).json()["id"]
    company = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()["_id"]
    rng = random.Random(10)
    items = []
    for i in range(320):
        days_ago = int(rng.triangular(0, 420, 0))
        score = rng.choice(
            [0, 2, 5, 6, 7, 8, 8, 9, 9, 10, 10, 10] if days_ago < 45 else [0, 3, 6, 6, 7, 9, 10]
        )
        item: dict[str, Any] = {
            "email": f"person{i % 90}@example.com",
            "score": score,
            "dateAnswered": answered(days_ago, i % 24),
            "comment": f"comment {i}",
        }
        if i % 3 == 0:
            item["campaignId"] = survey
        elif i % 7 == 0:
            item["campaignId"] = hostile
        if i % 4 == 0:
            item["cId"] = company
        items.append(item)
    put(client, tenant, items)
    # invitations for the response rate (only collect creates them; here they are written directly)
    now = utcnow()
    with database.db.transaction() as session:
        for i in range(5):
            session.add(
                Invitation(
                    id=new_id(),
                    org_id=tenant.org_id,
                    survey_id=survey,
                    email=f"inv{i}@example.com",
                    email_key=f"inv{i}@example.com",
                    token_hash=new_id() + new_id() + f"{i:016x}",
                    status="sent",
                    send_at=now,
                    sent_at=now,
                    answered_at=now if i < 2 else None,
                    expires_at=now + timedelta(days=30),
                    created_at=now,
                    updated_at=now,
                )
            )
    other = make_tenant(database)
    other_survey = client.post(
        "/v1/nps-surveys", json={"name": "Secret survey of another org"}, headers=other.editor
    ).json()["id"]
    put(
        client,
        other,
        [{"email": "x@other.example", "score": 0, "dateAnswered": answered(1), "campaignId": other_survey}]
        * 1
        + [{"email": f"o{i}@other.example", "score": 10, "dateAnswered": answered(i)} for i in range(40)],
    )
    viewer = make_user(database.db, tenant.org_id, "viewer")
    return Org(tenant, viewer, survey, hostile, company, other, other_survey)


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
def browser(app: Any, org: Org) -> TestClient:
    """Not entered as a context: the app's lifespan belongs to the session's API client."""
    return signed_in(app, org.viewer)


def figures(page: str) -> dict[str, str]:
    """The figures a page shows, by the API field they print (``data-figure``)."""
    return {
        name: html.unescape(re.sub(r"<[^>]+>", "", value)).strip()
        for name, value in re.findall(r'data-figure="(\w+)">(.*?)</(?:p|span)>', page, re.S)
    }


def shown(m: dict[str, Any]) -> dict[str, str]:
    """What the page must show for the API's body ``m``."""
    ci = m["confidenceInterval"]
    out = {
        "npsScore": one_decimal(m["npsScore"]),
        "marginOfError": f"±{one_decimal(m['marginOfError'])}",
        "confidenceInterval": f"{one_decimal(ci[0])} to {one_decimal(ci[1])}",
        "totalResponses": str(m["totalResponses"]),
        "averageScore": f"{m['averageScore']:.2f}",
        "responseRate": percent(m["responseRate"]),
    }
    for key in ("promoter", "passive", "detractor"):
        out[key + "s"] = str(m[key + "s"])
        out[key + "Percentage"] = percent(m[key + "Percentage"])
    c = m.get("comparison")
    if c is not None:
        out["change"] = signed(c["change"])
        out["previousNps"] = one_decimal(c["npsScore"])
        out["significant"] = {
            None: "not comparable (a period without answers)",
            True: "significant at 95%",
            False: "not significant (within chance)",
        }[c["significant"]]
    return out


def api(client: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    r = client.get(METRICS, params=params, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def days(since: date, until: date) -> dict[str, str]:
    """The API's parameters for a range of whole days and the previous range of the same length."""
    length = (until - since).days + 1
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "compareSince": (since - timedelta(days=length)).isoformat(),
        "compareUntil": (since - timedelta(days=1)).isoformat(),
    }


def trend_rows(page: str) -> list[list[str]]:
    table = re.search(r"<caption>NPS trend</caption>.*?<tbody>(.*?)</tbody>", page, re.S)
    assert table, "no trend table"
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", cell))
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))
    ]


def test_the_figures_are_the_apis_for_the_same_filter(
    client: TestClient, browser: TestClient, org: Org
) -> None:
    today = utcnow().date()
    custom = (today - timedelta(days=200), today - timedelta(days=120))
    cases = [
        ("", {**days(today - timedelta(days=89), today), "interval": "week"}),
        ("?period=30d", {**days(today - timedelta(days=29), today), "interval": "day"}),
        ("?period=12m", {**days(today - timedelta(days=364), today), "interval": "month"}),
        (
            f"?since={custom[0]}&until={custom[1]}&interval=month",
            {**days(*custom), "interval": "month"},
        ),
        (
            f"?period=90d&surveyId={org.survey_id}",
            {**days(today - timedelta(days=89), today), "interval": "week", "surveyId": org.survey_id},
        ),
    ]
    for query, params in cases:
        page = browser.get("/app" + query)
        assert page.status_code == 200, (query, page.text)
        m = api(client, org.tenant, **params)
        assert m["totalResponses"] > 0 and m["comparison"]["totalResponses"] > 0, query
        assert figures(page.text) == shown(m), query
        # the trend's table holds the API's points, with the API's own interval as the band
        expected = [
            [
                t["period"],
                one_decimal(t["npsScore"]),
                one_decimal(t["marginOfError"]),
                "—"
                if t["confidenceInterval"] is None
                else "{} to {}".format(*map(one_decimal, t["confidenceInterval"])),
                str(t["responses"]),
                signed(t["change"]),
                {True: "yes", False: "no", None: "—"}[t["significant"]],
            ]
            for t in m["trend"]
        ]
        assert trend_rows(page.text) == expected, query
    # all time has no previous period of the same length
    page = browser.get("/app?period=all")
    m = api(client, org.tenant)
    assert figures(page.text) == shown(m)
    assert "has no previous period" in page.text
    # the response rate is the survey's: 2 answered of 5 sent
    assert figures(browser.get(f"/app?surveyId={org.survey_id}").text)["responseRate"] == "40.0%"


def test_the_distribution_and_the_categories_open_the_feed(browser: TestClient, org: Org) -> None:
    page = browser.get(f"/app?period=30d&surveyId={org.survey_id}").text
    links = re.findall(r'href="(/app/responses\?[^"]*score=[^"]*)"', page)
    bars = sorted(
        {html.unescape(h) for h in links}, key=lambda h: int(parse_qs(urlsplit(h).query)["score"][0])
    )
    assert len(bars) == 11  # each bar (and its number in the chart's table) links to its score
    for score, href in enumerate(bars):
        assert parse_qs(urlsplit(href).query) == {
            "period": ["30d"],
            "surveyId": [org.survey_id],
            "score": [str(score)],
        }
    for key, label in (("promoter", "Promoters"), ("passive", "Passives"), ("detractor", "Detractors")):
        link = re.search(rf'<a href="([^"]+)">{label}</a>', page)
        assert link, label
        assert parse_qs(urlsplit(html.unescape(link.group(1))).query) == {
            "period": ["30d"],
            "surveyId": [org.survey_id],
            "category": [key],
        }


def test_groups_without_a_survey_are_named(client: TestClient, browser: TestClient, org: Org) -> None:
    page = browser.get("/app?period=all").text
    table = re.search(r"<caption>NPS by survey</caption>.*?<tbody>(.*?)</tbody>", page, re.S)
    assert table
    names = [
        html.unescape(re.sub(r"<[^>]+>", "", n)).strip()
        for n in re.findall(r"<th scope=\"row\">(.*?)</th>", table.group(1))
    ]
    groups = api(client, org.tenant, groupBy="survey")["groups"]
    expected = {None: "No survey", org.survey_id: "Onboarding", org.hostile_survey_id: HOSTILE}
    assert names == [expected[g["key"]] for g in groups]
    assert "No survey" in names


def test_bad_filters_are_named_next_to_their_field(browser: TestClient, org: Org) -> None:
    r = browser.get("/app?since=2026-03-01&until=2026-01-31")
    assert r.status_code == 400
    assert re.search(r'id="f-until-error">The end must not be before the start.<', r.text)
    assert 'value="2026-03-01"' in r.text and 'value="2026-01-31"' in r.text  # kept as typed
    assert "<h1>Overview</h1>" in r.text
    for query, field in (
        ("since=banana", "since"),
        ("until=2026-02-30", "until"),
        ("surveyId=nope", "surveyId"),
        (f"surveyId={new_id()}", "surveyId"),
        (f"surveyId={org.other_survey_id}", "surveyId"),  # another organization's: unknown here
        ("surveyId=%00", "surveyId"),
    ):
        r = browser.get("/app?" + query)
        assert r.status_code == 400, query
        assert f'id="f-{field}-error"' in r.text, query
    r = browser.get("/app?interval=hour&period=forever")
    assert r.status_code == 400
    assert "interval: Choose day, week or month." in r.text and "period: Choose one of" in r.text


def test_nothing_of_another_organization_shows(client: TestClient, browser: TestClient, org: Org) -> None:
    for query in ("?period=all", "?period=30d", f"?surveyId={org.other_survey_id}"):
        assert "Secret survey" not in browser.get("/app" + query).text
    ours = api(client, org.tenant)
    page = figures(browser.get("/app?period=all").text)
    assert (page["totalResponses"], page["npsScore"]) == (
        str(ours["totalResponses"]),
        one_decimal(ours["npsScore"]),
    )


def test_stored_text_is_shown_as_text(browser: TestClient, org: Org) -> None:
    page = browser.get("/app?period=all").text
    assert HOSTILE not in page
    assert page.count(html.escape(HOSTILE)) >= 2  # the survey filter's option and the by-survey table


def test_the_live_block_changes_only_with_the_figures(
    client: TestClient, browser: TestClient, org: Org
) -> None:
    page = browser.get("/app?period=30d").text
    live = html.unescape(re.search(r'id="overview-figures"[^>]*hx-get="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert re.search(r'hx-trigger="every \ds"', page)
    assert browser.get(live).status_code == 204  # nothing new: htmx keeps the block
    before = int(figures(page)["totalResponses"])
    r = client.post("/nps", json={"email": "live@example.com", "score": 10}, headers=org.tenant.editor)
    assert r.status_code == 200
    fresh = browser.get(live)
    assert fresh.status_code == 200
    assert int(figures(fresh.text)["totalResponses"]) == before + 1
    assert 'id="overview-figures"' in fresh.text and 'hx-swap-oob="true"' in fresh.text
    # the new block polls with the digest of what it shows
    again = html.unescape(re.search(r'id="overview-figures"[^>]*hx-get="([^"]+)"', fresh.text).group(1))  # type: ignore[union-attr]
    assert again != live and browser.get(again).status_code == 204


def test_without_a_session_the_overview_asks_to_sign_in(app: Any) -> None:
    anonymous = TestClient(app, follow_redirects=False)
    for path in ("/app?period=30d", "/app/overview/live?period=30d&v=x"):
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/app/login?next=")
    r = anonymous.get("/app/overview/live", headers={"HX-Request": "true"})
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/app/login")


# ------------------------------------------------------------------------------------ in a browser


def post_answer(site: Site, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = httpx.post(site.url + "/nps", json=fields, headers=tenant.editor, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_overview_in_a_browser(
    site: Site, chromium: Any, request: pytest.FixtureRequest, client: TestClient, org: Org
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, org.viewer, "/app?period=30d")
        assert page.inner_text("h1") == "Overview"
        m = api(
            client, org.tenant, **days(utcnow().date() - timedelta(days=29), utcnow().date()), interval="day"
        )
        assert page.locator('[data-figure="npsScore"]').inner_text() == one_decimal(m["npsScore"])
        assert page.locator('[data-figure="totalResponses"]').inner_text() == str(m["totalResponses"])
        assert serious_violations(page) == []
        # the hostile survey name is an option's text, not markup
        assert page.locator("img[src=x]").count() == 0
        # a bar of the distribution opens the feed filtered to its score
        with page.expect_navigation():
            page.get_by_role("link", name=re.compile(r"^Score 9 \(promoter\)")).click()
        assert parse_qs(urlsplit(page.url).query) == {"period": ["30d"], "score": ["9"]}
        assert page.inner_text("h1") == "Responses"
        scores = page.locator("table:has(caption:text-is('Responses')) tbody td.score").all_inner_texts()
        assert scores and set(scores) == {"9"}
        page.go_back()
        # a category opens the feed filtered to it
        with page.expect_navigation():
            page.get_by_role("link", name="Detractors", exact=True).click()
        assert parse_qs(urlsplit(page.url).query) == {"period": ["30d"], "category": ["detractor"]}
        categories = page.locator(
            "table:has(caption:text-is('Responses')) tbody td.category"
        ).all_inner_texts()
        assert categories and set(categories) == {"Detractor"}


def test_a_new_answer_appears_without_a_reload(
    site: Site, chromium: Any, request: pytest.FixtureRequest, org: Org
) -> None:
    """With the overview and the feed open, an answer posted through the API shows on both
    within five seconds, and neither page was reloaded (a marker set in each survives)."""
    with page_for(chromium, site, request) as overview, page_for(chromium, site, request) as feed:
        sign_in(overview, site, org.viewer, "/app?period=30d")
        sign_in(feed, site, org.viewer, "/app/responses")
        before = int(overview.locator('[data-figure="totalResponses"]').inner_text())
        for page in (overview, feed):
            page.evaluate("window.npsdTestMarker = 'not reloaded'")
        comment = f"Arrived while watching {new_id()}"
        posted = time.monotonic()
        post_answer(site, org.tenant, email="watcher@example.com", score=9, comment=comment)
        overview.wait_for_function(
            "n => document.querySelector('[data-figure=totalResponses]').textContent.trim() === String(n)",
            arg=before + 1,
            timeout=5000,
        )
        left = 5000 - (time.monotonic() - posted) * 1000
        feed.get_by_text(comment, exact=True).wait_for(timeout=max(left, 1))
        assert time.monotonic() - posted <= 5.5
        for page in (overview, feed):
            assert page.evaluate("window.npsdTestMarker") == "not reloaded"
        assert "figures updated" in overview.locator("#overview-live").inner_text()
        assert feed.locator("table.feed tbody tr", has_text=comment).count() == 1
        assert serious_violations(overview) == []


def test_the_overview_by_keyboard_on_a_phone(
    site: Site, chromium: Any, request: pytest.FixtureRequest, org: Org
) -> None:
    with page_for(chromium, site, request, viewport={"width": 375, "height": 740}) as page:
        sign_in(page, site, org.viewer, "/app")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert serious_violations(page) == []
        # keyboard only: Tab to the preset "Last 12 months" and follow it with Enter
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Last 12 months":
                break
        page.keyboard.press("Enter")  # the page updates in place (htmx), the URL follows
        page.wait_for_url(re.compile(r"period=12m"))
        # the keyboard stays where it was: the preset just used has the focus again
        page.wait_for_function("() => document.activeElement.textContent === 'Last 12 months'")
        assert parse_qs(urlsplit(page.url).query) == {"period": ["12m"]}
        assert page.get_by_role("link", name="Last 12 months").get_attribute("aria-current") == "true"
        # a custom range typed in From and To, by keyboard, replaces the preset
        page.get_by_label("From", exact=True).focus()
        page.keyboard.type("03012026")  # Chromium's date field takes the digits in the locale's order
        page.get_by_label("To", exact=True).focus()
        page.keyboard.type("01312026")
        assert page.get_by_label("To", exact=True).input_value() == "2026-01-31"
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"until=2026-01-31"))
        page.wait_for_function("() => document.activeElement.id === 'f-until'")  # back in the field typed in
        assert parse_qs(urlsplit(page.url).query) == {
            "period": ["12m"],
            "since": ["2026-03-01"],
            "until": ["2026-01-31"],
        }
        assert page.get_by_label("From", exact=True).input_value() == "2026-03-01"
        assert "The end must not be before the start." in page.inner_text("main")
        assert serious_violations(page) == []


def test_filters_update_the_page_in_place(
    site: Site, chromium: Any, request: pytest.FixtureRequest, client: TestClient, org: Org
) -> None:
    """With JavaScript, a preset, the survey filter and the trend interval swap the page's content
    without a reload (a marker set in the page survives), the URL follows each filter (so the view
    can be shared and Back returns to the one before), and the figures are the API's."""
    today = utcnow().date()
    with page_for(chromium, site, request) as page:
        sign_in(page, site, org.viewer, "/app?period=30d")
        page.evaluate("window.npsdTestMarker = 'not reloaded'")

        def total() -> str:
            return page.locator('[data-figure="totalResponses"]').inner_text()

        page.get_by_role("link", name="Last 90 days").click()
        page.wait_for_url(re.compile(r"period=90d"))
        page.wait_for_function(
            "() => document.querySelector('[aria-current=\"true\"]').textContent === 'Last 90 days'"
        )
        m = api(client, org.tenant, **days(today - timedelta(days=89), today), interval="day")
        assert total() == str(m["totalResponses"])

        page.get_by_label("Survey", exact=True).select_option(org.survey_id)
        page.get_by_role("button", name="Apply").click()
        page.wait_for_url(re.compile(r"surveyId="))
        m = api(client, org.tenant, **days(today - timedelta(days=89), today), surveyId=org.survey_id)
        page.wait_for_function(
            "n => document.querySelector('[data-figure=\"totalResponses\"]').textContent === String(n)",
            arg=m["totalResponses"],
        )
        assert parse_qs(urlsplit(page.url).query) == {"period": ["90d"], "surveyId": [org.survey_id]}
        assert page.locator('[data-figure="npsScore"]').inner_text() == one_decimal(m["npsScore"])

        page.get_by_role("link", name="By week").click()
        page.wait_for_url(re.compile(r"interval=week"))
        assert page.get_by_role("link", name="By week").get_attribute("aria-current") == "true"
        assert page.evaluate("window.npsdTestMarker") == "not reloaded"
        assert serious_violations(page) == []

        page.go_back()
        page.wait_for_url(lambda url: "surveyId=" in url and "interval=" not in url)
        assert "interval" not in parse_qs(urlsplit(page.url).query)
        assert total() == str(m["totalResponses"])
