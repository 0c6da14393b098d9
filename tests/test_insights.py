"""``/v1/insights``: themes and sentiment read from comments in en/de/fr/es by the shipped model,
their figures (NPS with margin, impact on the score with margin, trend), the themes an admin
shapes, suggested themes; on both databases.

The suite's own server does not analyse comments (``NPSD_INSIGHTS`` off, so other tests run no
model); these tests run a second app over the same database with it on, as a second server
process would be, and run its due jobs in the test's thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import Tenant, TestDatabase, assert_error, make_tenant
from npsd.analytics import nps as nps_math
from npsd.app import create_app
from npsd.insights import engine
from npsd.kit.db import Database
from npsd.kit.jobs import run_pending
from npsd.kit.models import AnswerInsight, Job
from servers import ServerProcess


@dataclass
class Reader:
    client: TestClient
    db: Database

    def run(self) -> int:
        """Run every due job (the analysis among them) until none is left."""
        total = 0
        while ran := run_pending(self.db):
            total += ran
        return total


@pytest.fixture(scope="module")
def reader(database: TestDatabase) -> Iterator[Reader]:
    settings = database.settings.model_copy(update={"insights": True})
    db = Database(database.url, pool_size=2, settings=settings)
    try:
        with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
            yield Reader(client, db)
    finally:
        db.dispose()


@pytest.fixture
def org(database: TestDatabase) -> Tenant:
    return make_tenant(database)


def post(reader: Reader, tenant: Tenant, score: int, comment: str | None, **fields: Any) -> str:
    body: dict[str, Any] = {
        "email": f"p{datetime.now().timestamp()}-{score}@example.com",
        "score": score,
        **fields,
    }
    if comment is not None:
        body["comment"] = comment
    r = reader.client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


def get(reader: Reader, tenant: Tenant, path: str, role: str = "viewer", **params: Any) -> Any:
    r = reader.client.get(path, params=params, headers=tenant.headers(role))
    assert r.status_code == 200, r.text
    return r.json()


def themes_by_key(reader: Reader, tenant: Tenant, **params: Any) -> dict[str, dict[str, Any]]:
    report = get(reader, tenant, "/v1/insights/themes", **params)
    return {t["key"] or t["name"]: t for t in report["themes"]}


def readings(reader: Reader, tenant: Tenant, **params: Any) -> dict[str, dict[str, Any]]:
    r = reader.client.get("/v1/insights/answers", params={"limit": 100, **params}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return {a["answerId"]: a for a in r.json()}


# One clear comment per default theme and language, with the score a customer would give.
CLEAR = [
    ("price", "en", 3, "Far too expensive, the price doubled at renewal and we can't justify the cost"),
    (
        "support",
        "de",
        10,
        "Der Support ist super, unser Ansprechpartner hat jedes Ticket am selben Tag gelöst",
    ),
    ("speed", "fr", 4, "Le tableau de bord met une éternité à charger, tout est très lent"),
    ("billing", "es", 2, "Nos cobraron dos veces la factura de marzo y el reembolso no llega"),
    ("reliability", "en", 1, "The app crashed three times this week and we lost data"),
    ("ease_of_use", "de", 9, "Sehr intuitive Oberfläche, auch neue Kollegen finden sich sofort zurecht"),
]


def test_answers_get_themes_and_sentiment_in_four_languages(reader: Reader, org: Tenant) -> None:
    ids = {key: post(reader, org, score, text) for key, _, score, text in CLEAR}
    empty_ids = [post(reader, org, 8, "n/a"), post(reader, org, 7, "-"), post(reader, org, 9, None)]
    before = get(reader, org, "/v1/insights/status")
    assert before["pending"] == len(CLEAR) + 3 and before["queuedJobs"] >= 1 and before["state"] == "working"

    assert reader.run() >= 1
    status = get(reader, org, "/v1/insights/status")
    assert status["pending"] == 0 and status["analysed"] == len(CLEAR) + 3 and status["state"] == "idle"
    assert status["emptyComments"] == 3 and status["lastAnalysedAt"]

    keys = {t["id"]: t["key"] for t in get(reader, org, "/v1/insights/themes")["themes"]}
    read = readings(reader, org)
    assert set(read) == set(ids.values())  # the near-empty and missing comments are not listed
    for key, lang, _, _ in CLEAR:
        got = read[ids[key]]
        assert keys[got["themeIds"][0]] == key, (key, lang, got)
    feel = {key: read[ids[key]]["sentiment"] for key in ids}
    assert feel == {
        "price": "negative",
        "support": "positive",
        "speed": "negative",
        "billing": "negative",
        "reliability": "negative",
        "ease_of_use": "positive",
    }
    assert all(-1 <= read[i]["sentimentScore"] <= 1 for i in ids.values())
    assert read[ids["support"]]["sentimentScore"] > 0 > read[ids["price"]]["sentimentScore"]
    with_sentiment = readings(reader, org, sentiment="positive")
    assert set(with_sentiment) == {ids["support"], ids["ease_of_use"]}
    for empty_id in empty_ids:
        assert empty_id not in read


def test_theme_figures_match_the_answers(reader: Reader, org: Tenant) -> None:
    """Per theme: answers, share, NPS and margin, sentiment counts and impact, each checked
    against what the answers themselves give."""
    price = [
        (2, "Way too expensive for a small team"),
        (3, "The price went up again, not worth the money"),
        (9, "Great value for the price we pay"),
    ]
    support = [
        (10, "Support answered within minutes and fixed it"),
        (9, "Friendly and competent support team"),
    ]
    for score, text in price + support:
        post(reader, org, score, text)
    post(reader, org, 8, "")  # an answer without a comment still counts in the overall score
    reader.run()
    report = get(reader, org, "/v1/insights/themes")
    assert report["answers"] == 6 and report["commentedAnswers"] == 5
    all_scores = [s for s, _ in price + support] + [8]
    assert report["npsScore"] == nps_math.Summary.of_scores(all_scores).nps
    themes = {t["key"]: t for t in report["themes"]}
    for key, group in (("price", price), ("support", support)):
        t = themes[key]
        scores = [s for s, _ in group]
        summary = nps_math.Summary.of_scores(scores)
        assert t["answers"] == len(group)
        assert t["share"] == round(len(group) / 5, 4)
        assert t["npsScore"] == summary.nps and t["marginOfError"] == summary.margin_of_error
        rest = list(all_scores)
        for s in scores:
            rest.remove(s)
        expected = round(nps_math.Summary.of_scores(rest).nps - nps_math.Summary.of_scores(all_scores).nps, 1)
        assert t["impact"] == pytest.approx(expected, abs=0.11)
        assert t["impactMarginOfError"] > 0
        assert sum(t["sentiment"].values()) == len(group)
        assert set(t["exampleAnswerIds"]) <= set(readings(reader, org, themeId=t["id"]))
    assert themes["price"]["impact"] > 0 > themes["support"]["impact"]  # price pulls the score down
    assert themes["price"]["sentiment"]["negative"] == 2 and themes["price"]["sentiment"]["positive"] == 1
    assert themes["speed"]["answers"] == 0 and themes["speed"]["npsScore"] is None


def test_only_changed_comments_are_embedded_again(reader: Reader, org: Tenant) -> None:
    rid = post(reader, org, 9, "Support is always quick to help us")
    reader.run()
    key = {t["id"]: t["key"] for t in get(reader, org, "/v1/insights/themes")["themes"]}
    assert key[readings(reader, org)[rid]["themeIds"][0]] == "support"

    embedded = engine.EMBEDDER.embedded
    r = reader.client.put(f"/nps/{rid}", json={"score": 2}, headers=org.editor)
    assert r.status_code == 200, r.text
    assert reader.run() >= 1
    assert engine.EMBEDDER.embedded == embedded  # a new score re-reads the stored vector only

    # A text this process has not embedded yet (the model's cache is per process, shared by both
    # databases' runs of this test).
    comment = f"Your invoices never show our VAT number {org.org_id[-6:]}"
    r = reader.client.put(f"/nps/{rid}", json={"comment": comment}, headers=org.editor)
    assert r.status_code == 200, r.text
    reader.run()
    assert engine.EMBEDDER.embedded == embedded + 1
    got = readings(reader, org)[rid]
    assert key[got["themeIds"][0]] == "billing" and got["sentiment"] == "negative"

    r = reader.client.put(f"/nps/{rid}", json={"comment": None}, headers=org.editor)
    assert r.status_code == 200, r.text
    reader.run()
    assert rid not in readings(reader, org)
    assert get(reader, org, "/v1/insights/status")["emptyComments"] == 1


def test_deleting_an_answer_deletes_its_reading(reader: Reader, org: Tenant, database: TestDatabase) -> None:
    rid = post(reader, org, 3, "Too expensive")
    reader.run()
    assert rid in readings(reader, org)
    assert reader.client.delete(f"/nps/{rid}", headers=org.admin).status_code in (200, 204)
    with database.db.transaction() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AnswerInsight).where(AnswerInsight.record_id == rid)
            )
            == 0
        )
    assert get(reader, org, "/v1/insights/themes")["commentedAnswers"] == 0


def test_admins_shape_the_themes(reader: Reader, org: Tenant) -> None:
    green = [
        (6, "Please publish your CO2 footprint and move to green hosting"),
        (7, "Bitte veröffentlicht euren CO2-Fußabdruck, Nachhaltigkeit ist uns wichtig"),
    ]
    ids = [post(reader, org, s, t) for s, t in green]
    price_id = post(reader, org, 4, "Much too expensive for what it does")
    reader.run()
    themes = themes_by_key(reader, org)

    # rename: the name changes, what is matched does not
    r = reader.client.patch(
        f"/v1/insights/themes/{themes['price']['id']}", json={"name": "Pricing"}, headers=org.admin
    )
    assert r.status_code == 200 and r.json()["name"] == "Pricing" and r.json()["key"] == "price"
    assert get(reader, org, "/v1/insights/status")["pending"] == 0

    # add a theme of our own: every answer is read again, and the green comments find it
    r = reader.client.post(
        "/v1/insights/themes",
        json={
            "name": "Sustainability",
            "examples": ["carbon footprint", "climate impact of your servers", "Umweltschutz"],
        },
        headers=org.admin,
    )
    assert r.status_code == 201, r.text
    green_id = r.json()["id"]
    assert get(reader, org, "/v1/insights/status")["pending"] == 3
    reader.run()
    read = readings(reader, org)
    assert all(read[i]["themeIds"][:1] == [green_id] for i in ids), read

    # hide a default theme: neither listed nor matched once read again
    r = reader.client.patch(
        f"/v1/insights/themes/{themes['price']['id']}", json={"hidden": True}, headers=org.admin
    )
    assert r.status_code == 200 and r.json()["hidden"] is True
    reader.run()
    listed = {t["id"] for t in get(reader, org, "/v1/insights/themes")["themes"]}
    assert themes["price"]["id"] not in listed
    assert themes["price"]["id"] not in readings(reader, org)[price_id]["themeIds"]

    # merge: the merged theme's answers count as the other's at once
    r = reader.client.post(
        f"/v1/insights/themes/{green_id}/merge", json={"into": themes["features"]["id"]}, headers=org.admin
    )
    assert r.status_code == 200, r.text
    figures = {t["id"]: t for t in get(reader, org, "/v1/insights/themes")["themes"]}
    assert green_id not in figures and figures[themes["features"]["id"]]["answers"] >= 2
    assert get(reader, org, f"/v1/insights/themes/{green_id}")["mergedIntoId"] == themes["features"]["id"]

    # a default theme cannot be deleted, one's own can
    assert_error(
        reader.client.delete(f"/v1/insights/themes/{themes['speed']['id']}", headers=org.admin), 400, "id"
    )
    assert reader.client.delete(f"/v1/insights/themes/{green_id}", headers=org.admin).status_code == 204


def test_comments_that_fit_no_theme_become_suggestions(reader: Reader, org: Tenant) -> None:
    texts = [
        (7, "We met your team at the trade fair in Berlin, great booth"),
        (8, "Nice chatting with your team at the trade fair booth"),
        (9, "Loved the trade fair talk by your team"),
        (6, "Sur le salon professionnel votre stand était super"),
        (8, "Your booth at the trade fair was the best one"),
    ]
    # comments that fit no theme either, but only say how the customer feels: no topic to suggest
    general = [(10, "Excellent, thank you!"), (9, "Great product, keep it up"), (10, "Sehr zufrieden")]
    general += [(3, "Not happy."), (2, "Not what we were promised."), (4, "Pas content du tout.")]
    general += [(7, "Does the job."), (7, "Insgesamt okay."), (8, "Cumple su función.")]
    ids = {post(reader, org, score, text): text for score, text in texts + general + general}
    reader.run()
    read = get(reader, org, "/v1/insights/answers", limit=100)
    unthemed = {ids[r["answerId"]] for r in read if not r["themeIds"]}
    general_unthemed = unthemed & {text for _, text in general}
    assert len(general_unthemed) >= 3, unthemed  # enough of them to be grouped, were they a topic
    suggestions = get(reader, org, "/v1/insights/suggestions")
    assert suggestions, "no suggestion from five comments on one topic"
    fair = next(s for s in suggestions if {"fair", "trade", "booth"} & set(s["keywords"]))
    assert fair["answers"] >= 3 and fair["examples"]
    assert len(fair["examples"]) == len(set(fair["examples"]))
    assert not general_unthemed & {e for s in suggestions for e in s["examples"]}, suggestions
    r = reader.client.post(
        f"/v1/insights/suggestions/{fair['id']}/adopt", json={"name": "Events"}, headers=org.admin
    )
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["name"] == "Events"
    reader.run()
    events = next(t for t in get(reader, org, "/v1/insights/themes")["themes"] if t["name"] == "Events")
    assert events["answers"] >= 3


def test_theme_trend_by_month(reader: Reader, org: Tenant) -> None:
    now = datetime.now(UTC).replace(day=15, hour=12)
    months = [now - timedelta(days=62), now - timedelta(days=31), now]
    for i, moment in enumerate(months):
        for _ in range(i + 1):
            post(reader, org, 3, "Support never answers our tickets", dateAnswered=moment.isoformat())
        post(reader, org, 9, "Everything is faster since the update", dateAnswered=moment.isoformat())
    reader.run()
    support = themes_by_key(reader, org)["support"]
    trend = get(reader, org, f"/v1/insights/themes/{support['id']}/trend", interval="month")
    points = trend["trend"]
    assert [p["answers"] for p in points] == [1, 2, 3]
    assert [p["commentedAnswers"] for p in points] == [2, 3, 4]
    assert [p["share"] for p in points] == [0.5, round(2 / 3, 4), 0.75]
    assert all(p["npsScore"] == -100.0 for p in points)


def test_filters_follow_the_metrics_api(reader: Reader, org: Tenant) -> None:
    r = reader.client.post("/companies", json={"name": "Acme"}, headers=org.editor)
    assert r.status_code == 200, r.text
    company = r.json()["_id"]
    in_company = post(reader, org, 2, "Too expensive", cId=company)
    post(reader, org, 2, "Too expensive")
    reader.run()
    price = themes_by_key(reader, org, companyId=company)["price"]
    assert price["answers"] == 1 and price["exampleAnswerIds"] == [in_company]
    assert list(readings(reader, org, companyId=company)) == [in_company]
    old = (datetime.now(UTC) - timedelta(days=400)).date().isoformat()
    assert themes_by_key(reader, org, until=old)["price"]["answers"] == 0


def test_insights_stay_inside_their_organization(reader: Reader, org: Tenant, database: TestDatabase) -> None:
    other = make_tenant(database)
    post(reader, org, 1, "Support is unreachable")
    reader.run()
    mine = themes_by_key(reader, org)
    assert mine["support"]["answers"] == 1
    assert themes_by_key(reader, other)["support"]["answers"] == 0
    assert readings(reader, other) == {}
    theme_id = mine["support"]["id"]
    assert_error(reader.client.get(f"/v1/insights/themes/{theme_id}", headers=other.viewer), 404)
    assert_error(
        reader.client.patch(f"/v1/insights/themes/{theme_id}", json={"name": "x"}, headers=other.admin), 404
    )
    assert_error(
        reader.client.get("/v1/insights/answers", params={"themeId": theme_id}, headers=other.viewer), 404
    )
    r = reader.client.post(
        f"/v1/insights/themes/{themes_by_key(reader, other)['price']['id']}/merge",
        json={"into": theme_id},
        headers=other.admin,
    )
    assert_error(r, 404)


def test_bad_input_is_refused_by_name(reader: Reader, org: Tenant) -> None:
    c, h = reader.client, org.admin
    price = themes_by_key(reader, org)["price"]["id"]
    assert_error(c.get("/v1/insights/answers", params={"themeId": "nope"}, headers=h), 400, "themeId")
    assert_error(c.get("/v1/insights/answers", params={"sentiment": "angry"}, headers=h), 400, "sentiment")
    assert_error(c.get("/v1/insights/themes", params={"surveyId": "x"}, headers=h), 400, "surveyId")
    assert_error(
        c.get("/v1/insights/themes", params={"since": "2026-02-01", "until": "2026-01-01"}, headers=h), 400
    )
    assert_error(c.get("/v1/insights/themes/123", headers=h), 400, "id")
    assert_error(c.post("/v1/insights/themes", json={"name": " ", "examples": ["a"]}, headers=h), 400, "name")
    assert_error(
        c.post("/v1/insights/themes", json={"name": "X", "examples": []}, headers=h), 400, "examples"
    )
    assert_error(
        c.post("/v1/insights/themes", json={"name": "X", "examples": ["a\u0000"]}, headers=h), 400, "examples"
    )
    assert_error(
        c.post("/v1/insights/themes", json={"name": "Support", "examples": ["a"]}, headers=h), 400, "name"
    )
    assert_error(c.patch(f"/v1/insights/themes/{price}", json={"colour": "red"}, headers=h), 400, "colour")
    assert_error(c.patch(f"/v1/insights/themes/{price}", json={"name": None}, headers=h), 400, "name")
    assert_error(c.patch(f"/v1/insights/themes/{price}", json={"hidden": "yes"}, headers=h), 400, "hidden")
    assert_error(c.post(f"/v1/insights/themes/{price}/merge", json={"into": price}, headers=h), 400, "into")
    assert_error(c.post(f"/v1/insights/themes/{price}/merge", json={"into": "0" * 24}, headers=h), 404)
    assert_error(c.post(f"/v1/insights/suggestions/{price}/adopt", json={}, headers=h), 400, "id")
    assert_error(
        c.post("/v1/insights/themes", content=b"{", headers={**h, "Content-Type": "application/json"}), 400
    )


def test_roles(reader: Reader, org: Tenant) -> None:
    price = themes_by_key(reader, org)["price"]["id"]
    for role in ("viewer", "editor"):
        h = org.headers(role)
        assert_error(reader.client.patch(f"/v1/insights/themes/{price}", json={"name": "P"}, headers=h), 403)
        assert_error(reader.client.post("/v1/insights/refresh", headers=h), 403)
        assert reader.client.get("/v1/insights/status", headers=h).status_code == 200
    assert_error(reader.client.get("/v1/insights/themes"), 401)


def test_refresh_reads_everything_again(reader: Reader, org: Tenant, database: TestDatabase) -> None:
    for score, text in [(3, "Slow dashboards"), (9, "Great support")]:
        post(reader, org, score, text)
    reader.run()
    r = reader.client.post("/v1/insights/refresh", headers=org.admin)
    assert r.status_code == 202 and r.json()["pending"] == 2 and r.json()["state"] == "working"
    with database.db.transaction() as session:
        queued = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.org_id == org.org_id, Job.kind == "insights.catch_up", Job.status == "queued")
        )
    assert queued == 1
    reader.run()
    status = get(reader, org, "/v1/insights/status")
    assert status["pending"] == 0 and status["themesVersion"] == r.json()["themesVersion"]


def test_a_server_with_insights_off_reads_nothing(
    database: TestDatabase, org: Tenant, client: TestClient
) -> None:
    """The suite's own server runs with ``NPSD_INSIGHTS`` off: no analysis job is queued."""
    r = client.post(
        "/nps", json={"email": "off@example.com", "score": 3, "comment": "Too slow"}, headers=org.editor
    )
    assert r.status_code == 200
    with database.db.transaction() as session:
        jobs = session.scalar(
            select(func.count()).select_from(Job).where(Job.org_id == org.org_id, Job.kind.like("insights.%"))
        )
    assert jobs == 0


def test_npsd_serve_reads_comments_in_its_worker(database: TestDatabase, org: Tenant) -> None:
    """The real thing: ``npsd serve`` with its worker and the analysis on (the defaults) reads
    an answer posted over HTTP in the background, while the write returns
    at once; the status says when nothing is left."""
    assert database.settings.secret_key is not None
    server = ServerProcess(
        database.url, database.settings.secret_key, NPSD_WORKER="true", NPSD_INSIGHTS="true"
    )
    server.start(timeout=60)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            comment = "Der Support ist super, unser Ansprechpartner hat jedes Ticket am selben Tag gelöst"
            body = {"email": "served@example.com", "score": 10, "comment": comment}
            r = http.post("/nps", json=body, headers=org.editor)
            assert r.status_code == 200, r.text
            rid = r.json()["_id"]
            deadline = time.monotonic() + 90
            found: dict[str, Any] = {}
            while time.monotonic() < deadline and not found:
                answers = http.get("/v1/insights/answers", headers=org.viewer).json()
                found = next((a for a in answers if a["answerId"] == rid), {})
                time.sleep(0.5)
            assert found, f"not read in 90 s: {server.output()[-2000:]}"
            themes = {
                t["id"]: t["key"]
                for t in http.get("/v1/insights/themes", headers=org.viewer).json()["themes"]
            }
            assert themes[found["themeIds"][0]] == "support" and found["sentiment"] == "positive"
            status = http.get("/v1/insights/status", headers=org.viewer).json()
            assert status["pending"] == 0 and status["analysed"] >= 1
    finally:
        server.stop()
