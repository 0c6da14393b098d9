"""What the comments say, on the dashboard (#13): the themes section of the overview, a survey and
a company; the feed's theme and sentiment filters (rows, count, downloads); an answer's themes
and sentiment; the themes page (admins shape the themes) and a theme's page; on both databases.

The figures shown are the insights API's for the same filters. The suite's shared app does not
analyse comments, so these tests build their own app with ``insights`` on over the same database
(as a second server would be) and run its due jobs in the test's thread; the browser test serves
such an app with uvicorn and checks that a theme opens the filtered feed, and axe on the page.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, TestDatabase, make_tenant
from dashboard import Person, csrf_of, make_user, page_for, serious_violations, serve, sign_in
from npsd.app import create_app
from npsd.kit.db import Database
from npsd.kit.ids import new_id
from npsd.kit.jobs import run_pending
from npsd.kit.models import InsightTheme
from npsd.kit.timeutil import utcnow
from npsd.web.render import effect, one_decimal, share

# clear comments per default theme, in four languages, with the score a customer would give
COMMENTS = [
    (3, "Far too expensive, the price doubled at renewal and we can't justify the cost"),
    (2, "Viel zu teuer, der Preis ist für kleine Teams nicht zu rechtfertigen"),
    (4, "Le prix est beaucoup trop élevé pour ce que l'on obtient"),
    (9, "Good value for the price, cheaper than the alternatives"),
    (10, "Der Support ist super, unser Ansprechpartner hat jedes Ticket am selben Tag gelöst"),
    (9, "Support answered within minutes and solved our problem, great team"),
    (10, "El equipo de soporte es muy amable y resolvió todo rápido"),
    (4, "Le tableau de bord met une éternité à charger, tout est très lent"),
    (1, "The app crashed three times this week and we lost data"),
    (8, "Sehr intuitive Oberfläche, auch neue Kollegen finden sich sofort zurecht"),
    (7, "n/a"),
    (8, None),
]


@dataclass
class Reader:
    app: Any
    client: TestClient
    db: Database

    def run(self) -> None:
        """Run every due job (the analysis among them) until none is left."""
        while run_pending(self.db):
            pass


@dataclass
class Org:
    tenant: Tenant
    viewer: Person
    admin: Person
    survey_id: str
    company_id: str
    answer_ids: list[str]


@pytest.fixture(scope="module")
def reader(database: TestDatabase) -> Iterator[Reader]:
    settings = database.settings.model_copy(update={"insights": True})
    db = Database(database.url, pool_size=4, settings=settings)
    app = create_app(settings, db)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Reader(app, client, db)
    finally:
        db.dispose()


def post(reader: Reader, tenant: Tenant, i: int, score: int, comment: str | None, **fields: Any) -> str:
    body: dict[str, Any] = {"email": f"person{i}@example.com", "score": score, **fields}
    if comment is not None:
        body["comment"] = comment
    r = reader.client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


@pytest.fixture(scope="module")
def org(database: TestDatabase, reader: Reader) -> Org:
    tenant = make_tenant(database)
    survey = reader.client.post("/v1/nps-surveys", json={"name": "Renewal"}, headers=tenant.editor).json()[
        "id"
    ]
    company = reader.client.post("/companies", json={"name": "Acme"}, headers=tenant.editor).json()["_id"]
    ids = []
    for i, (score, comment) in enumerate(COMMENTS):
        fields: dict[str, Any] = {}
        if i % 2 == 0:
            fields["campaignId"] = survey
        if i % 3 == 0:
            fields["cId"] = company
        ids.append(post(reader, tenant, i, score, comment, **fields))
    reader.run()
    viewer = make_user(database.db, tenant.org_id, "viewer")
    admin = make_user(database.db, tenant.org_id, "admin")
    return Org(tenant, viewer, admin, survey, company, ids)


def signed_in(app: Any, person: Person) -> TestClient:
    """A browser-like client (cookies, no redirects followed) signed in as ``person``; not entered
    as a context: the app's lifespan belongs to the reader's client."""
    browser = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    form = browser.get("/app/login")
    r = browser.post(
        "/app/login",
        data={"email": person.email, "password": person.password, "csrf_token": csrf_of(form.text)},
    )
    assert r.status_code == 303, r.text
    return browser


@pytest.fixture(scope="module")
def viewer(reader: Reader, org: Org) -> TestClient:
    return signed_in(reader.app, org.viewer)


@pytest.fixture(scope="module")
def admin(reader: Reader, org: Org) -> TestClient:
    return signed_in(reader.app, org.admin)


def api(reader: Reader, org: Org, path: str, **params: Any) -> Any:
    r = reader.client.get(path, params=params, headers=org.tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def section_rows(page: str) -> dict[str, dict[str, str]]:
    """The themes a page's table shows, by theme id: each figure by its API name."""
    out: dict[str, dict[str, str]] = {}
    for theme_id, row in re.findall(r'<tr data-theme="(\w+)">(.*?)</tr>', page, re.S):
        figures = dict(re.findall(r'data-theme-figure="(\w+)"[^>]*>(.*?)</(?:td|span|a)>', row, re.S))
        out[theme_id] = {k: text(v) for k, v in figures.items()}
        out[theme_id]["name"] = text(re.search(r"<th[^>]*>(.*?)</th>", row, re.S).group(1))  # type: ignore[union-attr]
    return out


def expected(theme: dict[str, Any]) -> dict[str, str]:
    return {
        "answers": str(theme["answers"]),
        "share": share(theme["share"]),
        "npsScore": one_decimal(theme["npsScore"]),
        "marginOfError": f"±{one_decimal(theme['marginOfError'])}",
        "impact": effect(theme["impact"], theme["impactMarginOfError"]),
        "negative": str(theme["sentiment"]["negative"]) + " neg.",
    }


def assert_section_is_the_apis(page: str, report: dict[str, Any]) -> None:
    rows = section_rows(page)
    themes = [t for t in report["themes"] if t["answers"]]
    assert themes, "no theme has answers: the data no longer reads as intended"
    assert list(rows) == [t["id"] for t in themes][: len(rows)]
    for t in themes[: len(rows)]:
        shown = rows[t["id"]]
        want = expected(t)
        for key in ("answers", "share", "npsScore", "marginOfError", "impact", "negative"):
            assert shown[key] == want[key], (t["name"], key, shown, want)


def feed_count(page: str) -> int:
    found = re.search(r"<strong data-count>(\d+) responses</strong>", page)
    assert found, "no count on the feed"
    return int(found.group(1))


# ------------------------------------------------------------------------------ the sections


def test_the_overview_shows_the_apis_themes(reader: Reader, viewer: TestClient, org: Org) -> None:
    page = viewer.get("/app", params={"period": "all"})
    assert page.status_code == 200, page.text
    assert "What the comments say" in page.text
    report = api(reader, org, "/v1/insights/themes")
    assert_section_is_the_apis(page.text, report)
    price = next(t for t in report["themes"] if t["key"] == "price")
    assert price["impact"] > 0 and effect(price["impact"]).startswith("down")  # price pulls the score down
    # each theme links to the feed with the page's filters, and the feed holds its answers
    link = html.unescape(
        re.search(rf'href="([^"]*theme={price["id"]}[^"]*)" data-theme-link', page.text).group(1)
    )  # type: ignore[union-attr]
    assert "period=all" in link
    feed = viewer.get(link)
    assert feed.status_code == 200 and feed_count(feed.text) == price["answers"]


def test_a_survey_and_a_company_show_their_own_themes(reader: Reader, viewer: TestClient, org: Org) -> None:
    survey = viewer.get(f"/app/surveys/{org.survey_id}")
    assert survey.status_code == 200, survey.text
    assert_section_is_the_apis(survey.text, api(reader, org, "/v1/insights/themes", surveyId=org.survey_id))
    assert f"surveyId={org.survey_id}" in html.unescape(survey.text.split("What the comments say")[1])
    company = viewer.get(f"/app/companies/{org.company_id}", params={"period": "all"})
    assert company.status_code == 200, company.text
    assert_section_is_the_apis(
        company.text, api(reader, org, "/v1/insights/themes", companyId=org.company_id)
    )
    assert f"companyId={org.company_id}" in html.unescape(company.text.split("What the comments say")[1])


def test_a_section_says_while_comments_are_being_read(
    database: TestDatabase, reader: Reader, org: Org
) -> None:
    tenant = make_tenant(database)
    browser = signed_in(reader.app, make_user(database.db, tenant.org_id, "viewer"))
    for i in range(3):
        post(reader, tenant, 100 + i, 3, "Too expensive for us")
    page = browser.get("/app", params={"period": "all"})
    assert page.status_code == 200
    assert "No comment has been read yet" in page.text  # nothing read: the themes are not made yet
    themes = browser.get("/app/themes")  # the themes page makes them: the defaults, with zeros
    assert themes.status_code == 200, themes.text
    rows = section_rows(themes.text)
    assert len(rows) == len(api(reader, org, "/v1/insights/themes")["themes"]) >= 5
    assert {r["answers"] for r in rows.values()} == {"0"}
    page = browser.get("/app", params={"period": "all"})
    assert "Reading 3 comments…" in page.text
    reader.run()
    page = browser.get("/app", params={"period": "all"})
    assert "Reading" not in page.text and "data-theme-link" in page.text
    # once read, a new answer makes the section say so, and poll until it is read
    post(reader, tenant, 200, 9, "Great support")
    page = browser.get("/app", params={"period": "all"})
    assert "Reading 1 comment…" in page.text
    assert 'hx-get="/app/themes/section?period=all' in html.unescape(page.text)
    poll = browser.get("/app/themes/section", params={"period": "all"})
    assert poll.status_code == 200 and "Reading 1 comment…" in poll.text
    reader.run()
    poll = browser.get("/app/themes/section", params={"period": "all"})
    assert "Reading" not in poll.text and "hx-get" not in poll.text


# ---------------------------------------------------------------------------------- the feed


def test_the_feed_filters_by_theme_and_sentiment(reader: Reader, viewer: TestClient, org: Org) -> None:
    report = api(reader, org, "/v1/insights/themes")
    support = next(t for t in report["themes"] if t["key"] == "support")
    page = viewer.get("/app/responses", params={"theme": support["id"]})
    assert page.status_code == 200, page.text
    assert feed_count(page.text) == support["answers"]
    assert f'<option value="{support["id"]}" selected>' in page.text
    rows = re.findall(r'<tr data-answer="(\w+)">(.*?)</tr>', page.text, re.S)
    assert rows and all(f'data-theme="{support["id"]}"' in row for _, row in rows)
    # sentiment: the feed's count is the API's
    for sentiment in ("negative", "positive"):
        r = reader.client.get(
            "/v1/insights/answers", params={"sentiment": sentiment}, headers=org.tenant.viewer
        )
        page = viewer.get("/app/responses", params={"sentiment": sentiment})
        assert page.status_code == 200 and feed_count(page.text) == int(r.headers["X-Total-Count"])
        assert all(
            f'data-sentiment="{sentiment}"' in row
            for _, row in re.findall(r'<tr data-answer="(\w+)">(.*?)</tr>', page.text, re.S)
        )
    # the downloads follow the filters
    page = html.unescape(viewer.get("/app/responses", params={"theme": support["id"]}).text)
    downloads = re.findall(r'href="(/app/responses/export\.\w+\?[^"]*)"', page)
    assert len(downloads) == 4 and all(f"theme={support['id']}" in href for href in downloads)
    download = viewer.get("/app/responses/export.csv", params={"theme": support["id"]})
    assert download.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(download.text)))) == support["answers"]


@pytest.mark.parametrize("raw", ["zzz", "0123456789abcdef01234567"])
def test_a_bad_theme_is_named_next_to_its_field(viewer: TestClient, raw: str) -> None:
    page = viewer.get("/app/responses", params={"theme": raw})
    assert page.status_code == 400
    assert re.search(r'id="f-theme-error">Choose one of your themes.<', page.text)
    bad = viewer.get("/app/responses", params={"sentiment": "angry"})
    assert bad.status_code == 400 and 'id="f-sentiment-error"' in bad.text
    assert viewer.get("/app/responses/export.csv", params={"theme": raw}).status_code == 400


def test_another_organizations_theme_is_unknown_here(
    database: TestDatabase, reader: Reader, viewer: TestClient, org: Org
) -> None:
    other = make_tenant(database)
    r = reader.client.get("/v1/insights/themes", headers=other.viewer)  # makes its default themes
    theirs = r.json()["themes"][0]["id"]
    page = viewer.get("/app/responses", params={"theme": theirs})
    assert page.status_code == 400 and 'id="f-theme-error">Choose one of your themes.<' in page.text
    assert viewer.get(f"/app/themes/{theirs}").status_code == 404
    admin = signed_in(reader.app, make_user(database.db, org.tenant.org_id, "admin"))
    token = csrf_of(admin.get("/app/themes").text)
    for action in ("hide", "delete", "rename", "merge", "adopt"):
        assert (
            admin.post(f"/app/themes/{theirs}/{action}", data={"csrf_token": token, "name": "x"}).status_code
            == 404
        )
    mine = api(reader, org, "/v1/insights/themes")["themes"][0]["id"]
    r = admin.post(f"/app/themes/{mine}/merge", data={"csrf_token": token, "into": theirs})
    assert r.status_code == 400 and f'id="f-merge-{mine}-into-error"' in r.text


def test_an_answer_shows_its_themes_and_sentiment(reader: Reader, viewer: TestClient, org: Org) -> None:
    read = {a["answerId"]: a for a in api(reader, org, "/v1/insights/answers", limit=100)}
    answer_id = org.answer_ids[0]  # the price complaint
    page = viewer.get(f"/app/answers/{answer_id}")
    assert page.status_code == 200
    dd = re.search(r"<dd data-themes>(.*?)</dd>", page.text, re.S).group(1)  # type: ignore[union-attr]
    assert re.findall(r'data-theme="(\w+)"', dd) == read[answer_id]["themeIds"]
    assert read[answer_id]["sentiment"].capitalize() in page.text.split("<dd data-sentiment>")[1][:200]
    empty = viewer.get(f"/app/answers/{org.answer_ids[-2]}")  # "n/a"
    assert "The comment says nothing to read" in empty.text


# ---------------------------------------------------------------------------- the themes pages


def test_the_themes_page_lists_the_figures(reader: Reader, viewer: TestClient, org: Org) -> None:
    page = viewer.get("/app/themes")
    assert page.status_code == 200, page.text
    assert 'href="/app/themes" aria-current="page"' in page.text
    rows = section_rows(page.text)
    report = api(reader, org, "/v1/insights/themes")
    assert list(rows) == [t["id"] for t in report["themes"]]  # every visible theme, zeros too
    for t in report["themes"]:
        assert rows[t["id"]]["npsScore"] == one_decimal(t["npsScore"])
    assert "/rename" not in page.text and "Add a theme" not in page.text  # a viewer changes nothing


def test_a_theme_page_shows_its_trend_and_answers(reader: Reader, viewer: TestClient, org: Org) -> None:
    price = next(t for t in api(reader, org, "/v1/insights/themes")["themes"] if t["key"] == "price")
    page = viewer.get(f"/app/themes/{price['id']}", params={"interval": "month"})
    assert page.status_code == 200, page.text
    assert re.search(r'data-figure="answers">(\d+)<', page.text).group(1) == str(price["answers"])  # type: ignore[union-attr]
    assert text(re.search(r'data-figure="npsScore">(.*?)<', page.text).group(1)) == one_decimal(
        price["npsScore"]
    )  # type: ignore[union-attr]
    trend = api(reader, org, f"/v1/insights/themes/{price['id']}/trend", interval="month")["trend"]
    for p in trend:
        row = re.search(rf'<tr data-period="{p["start"]}">(.*?)</tr>', page.text, re.S)
        assert row, p
        cells = [text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(1))]
        assert cells == [
            p["period"],
            str(p["answers"]),
            share(p["share"]),
            one_decimal(p["npsScore"]),
            one_decimal(p["marginOfError"]),
        ]
    assert "<svg" in page.text and "NPS of " in page.text
    for answer_id in price["exampleAnswerIds"]:
        assert f'href="/app/answers/{answer_id}"' in page.text
    assert viewer.get("/app/themes/0123456789abcdef01234567").status_code == 404


def test_admins_shape_the_themes(reader: Reader, admin: TestClient, viewer: TestClient, org: Org) -> None:
    page = admin.get("/app/themes")
    token = csrf_of(page.text)
    # a theme needs a name and examples: the refusal is next to its field, what was typed is kept
    r = admin.post("/app/themes", data={"csrf_token": token, "name": "", "examples": "green energy"})
    assert r.status_code == 400 and 'id="f-create-name-error"' in r.text and "green energy" in r.text
    r = admin.post("/app/themes", data={"csrf_token": token, "name": "Sustainability", "examples": ""})
    assert r.status_code == 400 and 'id="f-create-examples-error"' in r.text
    r = admin.post(
        "/app/themes",
        data={
            "csrf_token": token,
            "name": "Sustainability",
            "examples": "green energy\nyour carbon footprint",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/app/themes?done=created"
    themes = {t["name"]: t for t in api(reader, org, "/v1/insights/themes")["themes"]}
    mine = themes["Sustainability"]
    # a name another theme has is refused next to the rename field of that theme
    r = admin.post(
        f"/app/themes/{mine['id']}/rename",
        data={"csrf_token": token, "name": themes[next(n for n in themes if n != "Sustainability")]["name"]},
    )
    assert r.status_code == 400 and f'id="f-rename-{mine["id"]}-name-error"' in r.text
    r = admin.post(f"/app/themes/{mine['id']}/rename", data={"csrf_token": token, "name": "Green"})
    assert r.status_code == 303
    assert "Green" in {t["name"] for t in api(reader, org, "/v1/insights/themes")["themes"]}
    # hide and show again
    assert admin.post(f"/app/themes/{mine['id']}/hide", data={"csrf_token": token}).status_code == 303
    assert mine["id"] not in {t["id"] for t in api(reader, org, "/v1/insights/themes")["themes"]}
    assert f'data-hidden-theme="{mine["id"]}"' in admin.get("/app/themes").text
    assert admin.post(f"/app/themes/{mine['id']}/show", data={"csrf_token": token}).status_code == 303
    # merge: into nothing is refused next to the select; into a theme works
    r = admin.post(f"/app/themes/{mine['id']}/merge", data={"csrf_token": token, "into": ""})
    assert r.status_code == 400 and f'id="f-merge-{mine["id"]}-into-error"' in r.text
    r = admin.post(f"/app/themes/{mine['id']}/merge", data={"csrf_token": token, "into": mine["id"]})
    assert r.status_code == 400 and f'id="f-merge-{mine["id"]}-into-error"' in r.text
    # a default theme cannot be deleted (it is hidden instead): said, no 500
    price = (
        themes["price"]
        if "price" in themes
        else next(t for t in api(reader, org, "/v1/insights/themes")["themes"] if t["key"] == "price")
    )
    r = admin.post(f"/app/themes/{price['id']}/delete", data={"csrf_token": token})
    assert r.status_code == 400 and "cannot be deleted" in r.text
    # delete our own
    assert admin.post(f"/app/themes/{mine['id']}/delete", data={"csrf_token": token}).status_code == 303
    r = reader.client.get(f"/v1/insights/themes/{mine['id']}", headers=org.tenant.viewer)
    assert r.status_code == 404
    # without the CSRF token, or as a viewer: refused
    assert admin.post("/app/themes", data={"name": "X", "examples": "y"}).status_code == 403
    viewer_token = csrf_of(viewer.get("/app/themes").text)
    r = viewer.post(f"/app/themes/{price['id']}/hide", data={"csrf_token": viewer_token})
    assert r.status_code == 403
    reader.run()


def test_admins_adopt_a_suggestion(reader: Reader, admin: TestClient, viewer: TestClient, org: Org) -> None:
    # "Read every answer again" (as POST /v1/insights/refresh): every answer is queued again
    token = csrf_of(admin.get("/app/themes").text)
    r = admin.post("/app/themes/refresh", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/app/themes?done=refreshed"
    assert api(reader, org, "/v1/insights/status")["state"] == "working"
    reader.run()
    # a suggested theme, as the catch-up stores one (which comments make one is tested in
    # test_insights.py): its words and examples are shown, and an admin adopts it
    now = utcnow()
    with reader.db.transaction() as session:
        session.add(
            InsightTheme(
                id=new_id(),
                org_id=org.tenant.org_id,
                key=None,
                name="fair booth",
                keywords=["fair", "booth", "trade"],
                examples=["We met your team at the trade fair in Berlin, great booth"],
                status="suggested",
                hidden=False,
                merged_into_id=None,
                centroid=None,
                position=1000,
                created_at=now,
                updated_at=now,
            )
        )
    suggestions = api(reader, org, "/v1/insights/suggestions")
    assert [s["name"] for s in suggestions] == ["fair booth"]
    assert "We met your team at the trade fair in Berlin" in viewer.get("/app/themes").text
    assert "/adopt" not in viewer.get("/app/themes").text
    page = admin.get("/app/themes")
    s = suggestions[0]
    assert f'data-suggestion="{s["id"]}"' in page.text
    token = csrf_of(page.text)
    taken = api(reader, org, "/v1/insights/themes")["themes"][0]["name"]
    r = admin.post(f"/app/themes/{s['id']}/adopt", data={"csrf_token": token, "name": taken})
    assert r.status_code == 400 and f'id="f-adopt-{s["id"]}-name-error"' in r.text
    r = admin.post(f"/app/themes/{s['id']}/adopt", data={"csrf_token": token, "name": "Events"})
    assert r.status_code == 303, r.text
    assert "Events" in {t["name"] for t in api(reader, org, "/v1/insights/themes")["themes"]}
    reader.run()


# ------------------------------------------------------------------------------ in a browser


def test_the_themes_in_a_browser(
    database: TestDatabase, chromium: Any, request: pytest.FixtureRequest
) -> None:
    with serve(database.url, database.settings.secret_key, insights=True) as site:
        tenant = make_tenant(database)
        import httpx

        for i, (score, comment) in enumerate(COMMENTS):
            body: dict[str, Any] = {"email": f"b{i}@example.com", "score": score}
            if comment is not None:
                body["comment"] = comment
            r = httpx.post(site.url + "/nps", json=body, headers=tenant.editor, timeout=30)
            assert r.status_code == 200, r.text
        while run_pending(site.db):
            pass
        report = httpx.get(site.url + "/v1/insights/themes", headers=tenant.viewer, timeout=30).json()
        first = next(t for t in report["themes"] if t["answers"])
        admin = make_user(database.db, tenant.org_id, "admin")
        with page_for(chromium, site, request) as page:
            sign_in(page, site, admin, "/app?period=all")
            section = page.get_by_role("region", name="What the comments say")
            section.wait_for()
            assert serious_violations(page) == []
            link = section.get_by_role("link", name=first["name"], exact=True)
            with page.expect_navigation():
                link.click()
            assert "/app/responses?" in page.url and f"theme={first['id']}" in page.url
            assert page.locator("[data-count]").inner_text() == f"{first['answers']} responses"
            assert page.get_by_label("Theme", exact=True).input_value() == first["id"]
            assert serious_violations(page) == []  # the rows' theme and sentiment labels too
            page.goto(site.url + "/app/themes")
            page.get_by_role("heading", name="Themes", exact=True).wait_for()
            assert serious_violations(page) == []
