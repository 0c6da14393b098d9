"""Digests (#12) over HTTP, on both databases, against the real test SMTP server.

The figures of a digest are compared with what ``GET /v1/nps-surveys/nps-metrics`` answers for
the same days; the scheduler is driven by moving ``next_due_at`` into the past in the database
(no sleeping), and two workers racing for the same due digest are shown to mail it once.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from conftest import Tenant, TestDatabase, assert_error, metrics_for, post_nps
from mail_helpers import Sink, make_survey, part, run_jobs
from npsd.digests import schedule, service
from npsd.kit.models import Digest, DigestDelivery, Job
from npsd.kit.timeutil import utcnow


def yesterday() -> date:
    return utcnow().date() - timedelta(days=1)


def at(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()


def make_digest(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"frequency": "daily", "hour": 9, "timeZone": "UTC", "emails": [team()], **fields}
    r = client.post("/v1/digests", json=body, headers=tenant.admin)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def team() -> str:
    return f"team-{secrets.token_hex(5)}@example.com"


def answers_in_two_days(client: Any, tenant: Tenant, survey_id: str) -> dict[str, Any]:
    """Yesterday: 3 promoters, 1 passive, 2 detractors with comments (contact and company known);
    the day before: 1 promoter, 3 detractors. Plus noise outside the survey and the days."""
    mark = secrets.token_hex(4)
    h = tenant.admin
    company = client.post(
        "/companies", json={"name": f"Globex {mark}", "domains": [f"globex-{mark}.com"]}, headers=h
    ).json()
    client.post("/endusers", json={"email": f"hank@globex-{mark}.com", "name": "Hank Scorpio"}, headers=h)
    day, before = yesterday(), yesterday() - timedelta(days=1)
    for i, score in enumerate((10, 9, 9, 8)):
        post_nps(
            client,
            tenant,
            f"p{i}-{mark}@example.com",
            score,
            campaignId=survey_id,
            dateAnswered=at(day, 10 + i),
        )
    post_nps(
        client,
        tenant,
        f"hank@globex-{mark}.com",
        2,
        campaignId=survey_id,
        comment="The export <broke> again & nobody called",
        dateAnswered=at(day, 15),
    )
    post_nps(
        client,
        tenant,
        f"d2-{mark}@example.com",
        5,
        campaignId=survey_id,
        comment="Too slow",
        dateAnswered=at(day, 16),
    )
    post_nps(client, tenant, f"q0-{mark}@example.com", 9, campaignId=survey_id, dateAnswered=at(before, 12))
    for i in range(3):
        post_nps(
            client,
            tenant,
            f"q{i + 1}-{mark}@example.com",
            3,
            campaignId=survey_id,
            dateAnswered=at(before, 13 + i),
        )
    # not in the survey, or not in the period: never in the survey's digest
    post_nps(client, tenant, f"x-{mark}@example.com", 0, comment="other survey", dateAnswered=at(day, 11))
    post_nps(client, tenant, f"y-{mark}@example.com", 0, campaignId=survey_id, comment="today's answer")
    return {"company": company, "mark": mark}


# ----------------------------------------------------------------------------------- send now


def test_send_now_mails_the_metrics_apis_figures_and_the_newest_detractors(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, name="Onboarding NPS")
    made = answers_in_two_days(client, tenant, survey["id"])
    to = team()
    digest = make_digest(client, tenant, surveyId=survey["id"], emails=[to], name="Morning")

    r = client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin)
    assert r.status_code == 202, r.text
    sent = r.json()
    day = yesterday().isoformat()
    assert sent["kind"] == "preview" and sent["status"] == "pending" and sent["emails"] == [to]
    assert sent["period"] == {"since": day, "until": day}
    figures = sent["figures"]
    previous = figures["previousPeriod"]
    assert previous == {"since": (yesterday() - timedelta(days=1)).isoformat()} | {
        "until": (yesterday() - timedelta(days=1)).isoformat()
    }

    api = metrics_for(client, tenant, survey["id"], figures["period"], previous)
    assert figures["npsScore"] == api["npsScore"] == pytest.approx(100 * (3 - 2) / 6, abs=0.05)
    assert figures["marginOfError"] == api["marginOfError"]
    assert figures["confidenceInterval"] == api["confidenceInterval"]
    assert figures["responses"] == api["totalResponses"] == 6
    assert figures["previousNpsScore"] == api["comparison"]["npsScore"] == -50.0
    assert figures["change"] == api["comparison"]["change"] == round(16.7 - (-50.0), 1)
    assert figures["significant"] is api["comparison"]["significant"]
    assert [d["comment"] for d in figures["newestDetractors"]] == [
        "Too slow",
        "The export <broke> again & nobody called",
    ]
    hank = figures["newestDetractors"][1]
    assert hank["contact"] == "Hank Scorpio" and hank["company"] == made["company"]["name"]

    run_jobs(database.db)
    [mail] = smtp.to(to)
    assert mail["Subject"].startswith("[Preview] ")
    assert "Onboarding NPS" in mail["Subject"] and tenant.name in mail["Subject"]
    text, html = part(mail, "plain"), part(mail, "html")
    nps, moe = f"{api['npsScore']:.1f}", f"{api['marginOfError']:.1f}"
    assert f"NPS: {nps} ± {moe}" in text
    assert f">{nps}</div>" in html and f"&plusmn; {moe}" in html
    assert "Answers received: 6 (3 promoters, 1 passives, 2 detractors)" in text
    assert "Previous period" in text and "NPS -50.0" in text
    significance = "significant at 95%" if api["comparison"]["significant"] else "not significant"
    assert f"+66.7 points, {significance}" in text
    assert '"The export <broke> again & nobody called"' in text and "Hank Scorpio" in text
    assert "The export &lt;broke&gt; again &amp; nobody called" in html  # escaped in HTML
    assert made["company"]["name"] in text and "Too slow" in text
    assert "other survey" not in text and "today's answer" not in text
    feed = f"/app/responses?since={day}&until={day}&category=detractor&surveyId={survey['id']}"
    assert feed in text and feed.replace("&", "&amp;") in html
    assert tenant.name in str(mail["From"])

    log = client.get(f"/v1/digests/{digest['id']}/deliveries", headers=tenant.admin)
    assert log.status_code == 200 and log.headers["X-Total-Count"] == "1"
    [row] = log.json()
    assert row["status"] == "sent" and row["attempts"] == 1 and row["sentAt"]
    assert row["npsScore"] == api["npsScore"] and row["responses"] == 6
    assert row["subject"] == str(mail["Subject"])
    # a preview leaves the schedule alone
    assert client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin).json()["lastSentAt"] is None


def test_the_feed_link_of_a_digest_lists_the_periods_detractors(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    """The link's filters are the feed's own: the dashboard shows the same detractors."""
    survey = make_survey(client, tenant)
    answers_in_two_days(client, tenant, survey["id"])
    digest = make_digest(client, tenant, surveyId=survey["id"])
    figures = client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin).json()["figures"]
    url = figures["feedUrl"]
    path = url[url.index("/app/responses") :]
    # the same filters through GET /nps (the feed's query) give the same answers
    since, until = figures["period"]["since"], figures["period"]["until"]
    r = client.get(
        "/nps",
        params={"campaignId": survey["id"], "scoreType": "detractor", "npsExpiryDay": 0, "limit": 100},
        headers=tenant.viewer,
    )
    in_period = {a["_id"] for a in r.json() if since <= a["dateAnswered"][:10] <= until}
    assert in_period == {d["id"] for d in figures["newestDetractors"]} and len(in_period) == 2
    assert "category=detractor" in path and f"since={since}" in path


def test_an_organization_wide_digest_counts_every_answer(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    answers_in_two_days(client, tenant, survey["id"])
    digest = make_digest(client, tenant)  # no surveyId
    figures = client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin).json()["figures"]
    r = client.get(
        "/v1/nps-surveys/nps-metrics",
        params={"since": figures["period"]["since"], "until": figures["period"]["until"]},
        headers=tenant.viewer,
    ).json()
    assert figures["responses"] == r["totalResponses"] == 7  # the other survey's answer too
    assert figures["npsScore"] == r["npsScore"]
    assert "other survey" in [d["comment"] for d in figures["newestDetractors"]]
    assert "surveyId" not in figures["feedUrl"]


def test_a_weekly_digest_covers_seven_days_against_the_seven_before(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    survey = make_survey(client, tenant)
    answers_in_two_days(client, tenant, survey["id"])
    digest = make_digest(client, tenant, surveyId=survey["id"], frequency="weekly", weekday="friday")
    figures = client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin).json()["figures"]
    until = yesterday()
    assert figures["period"] == {"since": (until - timedelta(days=6)).isoformat(), "until": until.isoformat()}
    assert figures["previousPeriod"] == {
        "since": (until - timedelta(days=13)).isoformat(),
        "until": (until - timedelta(days=7)).isoformat(),
    }
    api = metrics_for(client, tenant, survey["id"], figures["period"], figures["previousPeriod"])
    assert figures["responses"] == api["totalResponses"] == 10
    assert figures["npsScore"] == api["npsScore"] and figures["marginOfError"] == api["marginOfError"]
    assert (
        figures["previousNpsScore"] is None and figures["change"] is None and figures["significant"] is None
    )


def test_a_refused_recipient_marks_the_delivery_failed(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    smtp.refuse["bounce-digest"] = "550 5.1.1 no such user"
    digest = make_digest(client, tenant, emails=[f"bounce-digest-{secrets.token_hex(3)}@example.com"])
    assert client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin).status_code == 202
    run_jobs(database.db)
    [row] = client.get(f"/v1/digests/{digest['id']}/deliveries", headers=tenant.admin).json()
    assert row["status"] == "failed" and "550" in row["lastError"]
    failed = client.get(
        f"/v1/digests/{digest['id']}/deliveries", params={"status": "sent"}, headers=tenant.admin
    )
    assert failed.json() == [] and failed.headers["X-Total-Count"] == "0"


# ---------------------------------------------------------------------------------- scheduling


def make_due(database: TestDatabase, digest_id: str, ago: timedelta = timedelta(minutes=1)) -> datetime:
    due = (utcnow() - ago).replace(microsecond=0)
    with database.db.transaction() as session:
        session.execute(update(Digest).where(Digest.id == digest_id).values(next_due_at=due))
    return due


def deliveries_of(database: TestDatabase, digest_id: str) -> list[DigestDelivery]:
    with database.db.transaction(write=False) as session:
        return list(session.scalars(select(DigestDelivery).where(DigestDelivery.digest_id == digest_id)))


def test_a_due_digest_is_sent_once_and_scheduled_for_its_next_local_hour(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    to = team()
    digest = make_digest(client, tenant, emails=[to], timeZone="Europe/Berlin", hour=9)
    post_nps(
        client,
        tenant,
        f"d-{secrets.token_hex(3)}@example.com",
        4,
        comment="late",
        dateAnswered=at(yesterday(), 9),
    )
    service.send_due_digests(database.db)  # ours is not due yet
    assert deliveries_of(database, digest["id"]) == []
    due = make_due(database, digest["id"])

    run_jobs(database.db)  # the periodic claim runs before every round of jobs, then the mail job
    run_jobs(database.db)  # and again: nothing more for this period
    [mail] = smtp.to(to)
    assert not mail["Subject"].startswith("[Preview]") and "daily NPS digest" in mail["Subject"]
    assert "NPS: -100.0" in part(mail, "plain")
    [row] = deliveries_of(database, digest["id"])
    assert row.kind == "scheduled" and row.status == "sent"
    assert row.period_until == due.date() - timedelta(days=1) == row.period_since

    now = client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin).json()
    assert now["lastSentAt"] is not None
    next_due = datetime.fromisoformat(now["nextDueAt"].replace("Z", "+00:00"))
    local = next_due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0)
    assert utcnow().replace(tzinfo=UTC) < next_due <= utcnow().replace(tzinfo=UTC) + timedelta(days=1)


def test_two_workers_racing_for_a_due_digest_queue_one_mail(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    to = team()
    digest = make_digest(client, tenant, emails=[to])
    due = make_due(database, digest["id"])
    # both workers read the digest as due before either claims it
    now = utcnow()
    with database.db.transaction() as session:
        first = service._claim(session, digest["id"], due, now)
    with database.db.transaction() as session:
        second = service._claim(session, digest["id"], due, now)
    assert (first, second) == (True, False)

    # and for real: several threads run the periodic pass at once on a newly due digest
    other = make_digest(client, tenant, emails=[to])
    make_due(database, other["id"])
    barrier = threading.Barrier(4)
    results: list[int] = []

    def worker() -> None:
        barrier.wait()
        results.append(service.send_due_digests(database.db))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(deliveries_of(database, other["id"])) == 1
    run_jobs(database.db)
    assert len(smtp.to(to)) == 2  # one per digest
    with database.db.transaction(write=False) as session:
        jobs = session.scalars(
            select(Job).where(Job.kind == service.SEND_JOB, Job.org_id == tenant.org_id)
        ).all()
    assert len(jobs) == 2


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite writers cannot interleave
def test_the_claim_is_conditional_in_the_database_not_only_in_python(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    """Worker B has read the digest as due, in its own write transaction, when worker A claims it
    and commits: B's UPDATE (conditional on the due time it read) then matches no row, so B
    queues nothing. PostgreSQL only: SQLite writers cannot interleave (BEGIN IMMEDIATE)."""
    digest = make_digest(client, tenant)
    due = make_due(database, digest["id"])
    now = utcnow()
    with database.db.transaction() as b:
        stale = b.get(Digest, digest["id"])  # B reads it as due
        assert stale is not None and stale.next_due_at == due
        with database.db.transaction() as a:
            assert service._claim(a, digest["id"], due, now) is True  # A claims and commits
        claimed_by_a = client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin).json()["nextDueAt"]
        # B's clock is a day later, so its UPDATE would move the digest elsewhere, were it applied
        assert service._claim(b, digest["id"], due, now + timedelta(days=1)) is False
    assert len(deliveries_of(database, digest["id"])) == 1
    assert client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin).json()["nextDueAt"] == claimed_by_a


def test_a_period_is_mailed_once_even_when_the_schedule_changes(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    to = team()
    digest = make_digest(client, tenant, emails=[to])
    make_due(database, digest["id"])
    run_jobs(database.db)
    # the hour changes, and the new time comes today again: the same day was mailed already
    r = client.patch(f"/v1/digests/{digest['id']}", json={"hour": 23}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    make_due(database, digest["id"])
    run_jobs(database.db)
    assert len(smtp.to(to)) == 1 and len(deliveries_of(database, digest["id"])) == 1
    assert (
        client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin).json()["nextDueAt"]
        > utcnow().isoformat()
    )


def test_an_inactive_digest_is_not_sent_but_can_be_previewed(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    to = team()
    digest = make_digest(client, tenant, emails=[to], active=False)
    assert digest["nextDueAt"] is None
    make_due(database, digest["id"])
    run_jobs(database.db)
    assert smtp.to(to) == [] and deliveries_of(database, digest["id"]) == []
    assert client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin).status_code == 202
    run_jobs(database.db)
    assert len(smtp.to(to)) == 1
    # switched on, it counts from now: the stale due time is not mailed at once
    r = client.patch(f"/v1/digests/{digest['id']}", json={"active": True}, headers=tenant.admin).json()
    assert r["nextDueAt"] > utcnow().isoformat()


def test_a_digest_found_days_late_reports_the_days_before_now(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    digest = make_digest(client, tenant)
    make_due(database, digest["id"], ago=timedelta(days=3))
    run_jobs(database.db)
    [row] = deliveries_of(database, digest["id"])
    assert row.period_until == yesterday()


def test_without_smtp_the_digest_waits(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    assert not database.settings.smtp_url
    digest = make_digest(client, tenant)
    client.post(f"/v1/digests/{digest['id']}/send", headers=tenant.admin)
    run_jobs(database.db)
    [row] = client.get(f"/v1/digests/{digest['id']}/deliveries", headers=tenant.admin).json()
    assert row["status"] == "pending" and row["attempts"] == 0


# ---------------------------------------------------------------------------------- time zones


@pytest.mark.parametrize(
    ("after", "zone", "hour", "expected"),
    [
        # 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST)
        (datetime(2026, 1, 15, 0, 0), "Europe/Berlin", 9, datetime(2026, 1, 15, 8, 0)),
        (datetime(2026, 1, 15, 8, 0), "Europe/Berlin", 9, datetime(2026, 1, 16, 8, 0)),
        (datetime(2026, 7, 15, 0, 0), "Europe/Berlin", 9, datetime(2026, 7, 15, 7, 0)),
        # across the spring change (29 March 2026): the day after is already summer time
        (datetime(2026, 3, 28, 8, 0), "Europe/Berlin", 9, datetime(2026, 3, 29, 7, 0)),
        # an hour the clocks skip (02:00 on 29 March) goes out at 03:00 local, 01:00 UTC
        (datetime(2026, 3, 29, 0, 0), "Europe/Berlin", 2, datetime(2026, 3, 29, 1, 0)),
        # an hour that happens twice (02:00 on 25 October) goes out the first time only
        (datetime(2026, 10, 24, 23, 59), "Europe/Berlin", 2, datetime(2026, 10, 25, 0, 0)),
        (datetime(2026, 10, 25, 0, 0, 1), "Europe/Berlin", 2, datetime(2026, 10, 26, 1, 0)),
        # a local day ahead of UTC: 08:00 in Tokyo is 23:00 UTC the evening before
        (datetime(2026, 1, 15, 12, 0), "Asia/Tokyo", 8, datetime(2026, 1, 15, 23, 0)),
        (datetime(2026, 1, 15, 12, 0), "America/New_York", 7, datetime(2026, 1, 16, 12, 0)),
        (datetime(2026, 1, 15, 12, 0), "UTC", 12, datetime(2026, 1, 16, 12, 0)),
    ],
)
def test_next_send_time_follows_the_local_clock(
    after: datetime, zone: str, hour: int, expected: datetime
) -> None:
    assert schedule.next_due(after, "daily", hour, None, zone) == expected


def test_weekly_send_time_is_on_its_local_weekday() -> None:
    # Thursday 15 January 2026; a Monday digest at 09:00 Berlin is Monday 19th, 08:00 UTC
    monday = schedule.WEEKDAYS.index("monday")
    assert schedule.next_due(datetime(2026, 1, 15, 12), "weekly", 9, monday, "Europe/Berlin") == datetime(
        2026, 1, 19, 8
    )
    # 08:00 Monday in Tokyo is Sunday 23:00 UTC
    assert schedule.next_due(datetime(2026, 1, 15, 12), "weekly", 8, monday, "Asia/Tokyo") == datetime(
        2026, 1, 18, 23
    )
    # sent this Monday already: next week
    assert schedule.next_due(datetime(2026, 1, 19, 8), "weekly", 9, monday, "Europe/Berlin") == datetime(
        2026, 1, 26, 8
    )


def test_a_berlin_digest_is_due_at_its_local_hour_through_the_api(client: Any, tenant: Tenant) -> None:
    digest = make_digest(client, tenant, timeZone="Europe/Berlin", hour=9)
    due = datetime.fromisoformat(digest["nextDueAt"].replace("Z", "+00:00"))
    local = due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0)
    # winter (CET, +1): 08:00 UTC; summer (CEST, +2): 07:00 UTC
    assert due.hour == {3600: 8, 7200: 7}[int(local.utcoffset().total_seconds())]  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- the API


def test_crud_and_listing(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    made = make_digest(
        client,
        tenant,
        name="Weekly CX",
        surveyId=survey["id"],
        frequency="weekly",
        weekday="monday",
        emails=["A@example.com", "a@example.com", "b@example.com"],
    )
    assert made["emails"] == ["A@example.com", "b@example.com"]  # one per address, case-insensitive
    assert made["weekday"] == "monday" and made["surveyId"] == survey["id"] and made["active"] is True
    h = tenant.admin
    assert client.get(f"/v1/digests/{made['id']}", headers=h).json() == made
    listed = client.get("/v1/digests", headers=h)
    assert [d["id"] for d in listed.json()] == [made["id"]] and listed.headers["X-Total-Count"] == "1"

    r = client.patch(f"/v1/digests/{made['id']}", json={"frequency": "daily", "surveyId": None}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["weekday"] is None and r.json()["surveyId"] is None and r.json()["name"] == "Weekly CX"
    assert client.delete(f"/v1/digests/{made['id']}", headers=h).status_code == 204
    assert_error(client.get(f"/v1/digests/{made['id']}", headers=h), 404)
    assert client.get("/v1/digests", headers=h).json() == []


def test_deleting_a_survey_deletes_its_digests(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    digest = make_digest(client, tenant, surveyId=survey["id"])
    assert client.delete(f"/v1/nps-surveys/{survey['id']}", headers=tenant.admin).status_code in (200, 204)
    assert_error(client.get(f"/v1/digests/{digest['id']}", headers=tenant.admin), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timeZone": "Mars/Olympus"}, "timeZone"),
        ({"timeZone": "../../etc/passwd"}, "timeZone"),
        ({"timeZone": "Europe/Berlin\x00"}, "timeZone"),
        ({"timeZone": ""}, "timeZone"),
        ({"hour": 24}, "hour"),
        ({"hour": -1}, "hour"),
        ({"hour": "9"}, "hour"),
        ({"frequency": "hourly"}, "frequency"),
        ({"frequency": "weekly"}, "weekday"),
        ({"frequency": "weekly", "weekday": "funday"}, "weekday"),
        ({"weekday": "monday"}, "weekday"),  # daily
        ({"emails": []}, "emails"),
        ({"emails": ["not-an-address"]}, "emails"),
        ({"emails": "team@example.com"}, "emails"),
        ({"emails": [f"a{i}@example.com" for i in range(51)]}, "emails"),
        ({"surveyId": "0" * 24}, "surveyId"),
        ({"surveyId": "nope"}, "surveyId"),
        ({"name": "x" * 201}, "name"),
        ({"active": "yes"}, "active"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: Any, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    full = {"frequency": "daily", "hour": 9, "timeZone": "UTC", "emails": ["t@example.com"], **body}
    assert_error(client.post("/v1/digests", json=full, headers=tenant.admin), 400, field)
    digest = make_digest(client, tenant)
    assert_error(client.patch(f"/v1/digests/{digest['id']}", json=body, headers=tenant.admin), 400, field)


def test_required_fields_and_nulls(client: Any, tenant: Tenant) -> None:
    for missing in ("frequency", "hour", "timeZone", "emails"):
        body = {"frequency": "daily", "hour": 9, "timeZone": "UTC", "emails": ["t@example.com"]}
        del body[missing]
        assert_error(client.post("/v1/digests", json=body, headers=tenant.admin), 400, missing)
    digest = make_digest(client, tenant)
    for field in ("frequency", "hour", "timeZone", "emails", "active"):
        assert_error(
            client.patch(f"/v1/digests/{digest['id']}", json={field: None}, headers=tenant.admin), 400, field
        )
    assert_error(client.post("/v1/digests", content=b"{", headers=tenant.admin), 400)
    assert_error(client.get("/v1/digests/zzz", headers=tenant.admin), 400, "id")


def test_digests_are_for_admins(client: Any, tenant: Tenant) -> None:
    digest = make_digest(client, tenant)
    for headers in (tenant.editor, tenant.viewer):
        assert_error(client.get("/v1/digests", headers=headers), 403)
        assert_error(client.post(f"/v1/digests/{digest['id']}/send", headers=headers), 403)
        assert_error(client.post("/v1/digests", json={}, headers=headers), 403)
    assert_error(client.get("/v1/digests"), 401)


def test_another_tenant_can_neither_see_nor_touch_a_digest(
    client: Any, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    survey = make_survey(client, tenant)
    digest = make_digest(client, tenant, surveyId=survey["id"], name="secret-digest")
    h = other.admin
    path = f"/v1/digests/{digest['id']}"
    assert_error(client.get(path, headers=h), 404)
    assert_error(client.patch(path, json={"hour": 1}, headers=h), 404)
    assert_error(client.post(f"{path}/send", headers=h), 404)
    assert_error(client.get(f"{path}/deliveries", headers=h), 404)
    assert_error(client.delete(path, headers=h), 404)
    assert "secret-digest" not in client.get("/v1/digests", headers=h).text
    # nor point its own digest at the first tenant's survey
    assert_error(
        client.post(
            "/v1/digests",
            json={
                "frequency": "daily",
                "hour": 9,
                "timeZone": "UTC",
                "emails": ["t@example.com"],
                "surveyId": survey["id"],
            },
            headers=h,
        ),
        400,
        "surveyId",
    )
    assert client.get(path, headers=tenant.admin).json() == digest
    assert deliveries_of(database, digest["id"]) == []
