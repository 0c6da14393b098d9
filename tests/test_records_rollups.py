"""Roll-ups after every ``/nps`` write path (single, bulk, update, delete), on both databases.

Contacts carry their latest answer, companies the NPS over their contacts' latest answers of the
last 360 days, and ``nps_rollup`` the answer counts per (survey, company, source, day, score).
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import Tenant, assert_error
from conftest import TestDatabase as DatabaseFixture
from npsd.kit.models import NpsRecord, NpsRollup


def ago(days: float) -> str:
    value = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)
    return value.isoformat(timespec="milliseconds") + "Z"


def post(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = client.post("/nps", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def put(client: TestClient, tenant: Tenant, key: str, **body: Any) -> dict[str, Any]:
    r = client.put(f"/nps/{key}", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


def delete(client: TestClient, tenant: Tenant, key: str) -> None:
    r = client.delete(f"/nps/{key}", headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"n": 1, "ok": 1, "deletedCount": 1}


def bulk(client: TestClient, tenant: Tenant, items: list[Any]) -> dict[str, Any]:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code in (200, 206), r.text
    return r.json()


def new_company(client: TestClient, tenant: Tenant, domain: str | None = None) -> str:
    body: dict[str, Any] = {"name": "Co " + secrets.token_hex(3)}
    if domain:
        body["domains"] = [domain]
    r = client.post("/companies", json=body, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()["_id"]


def enduser(client: TestClient, tenant: Tenant, eid: str) -> dict[str, Any]:
    r = client.get(f"/endusers/{eid}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def company(client: TestClient, tenant: Tenant, cid: str) -> dict[str, Any]:
    r = client.get(f"/companies/{cid}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def latest_of(eu: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    return eu["nps"], eu["npsComment"], eu["npsDate"], eu["npsId"]


# ------------------------------------------------------------------------------------ contacts


def test_enduser_carries_latest_answer_by_date(client: TestClient, tenant: Tenant) -> None:
    new = post(client, tenant, email="eu@r.test", score=9, comment="new", dateAnswered=ago(2))
    eid = new["euId"]
    assert latest_of(enduser(client, tenant, eid)) == (9, "new", new["dateAnswered"], new["_id"])
    # an older answer created later does not replace it
    old = post(client, tenant, email="EU@r.test", score=2, comment="old", dateAnswered=ago(20))
    assert old["euId"] == eid
    assert latest_of(enduser(client, tenant, eid)) == (9, "new", new["dateAnswered"], new["_id"])
    # updating the latest answer shows at once
    put(client, tenant, new["_id"], score=10, comment="newer")
    assert latest_of(enduser(client, tenant, eid)) == (10, "newer", new["dateAnswered"], new["_id"])
    # moving the old answer's date past the other one makes it the latest
    moved = put(client, tenant, old["_id"], npsDate=ago(1))
    assert latest_of(enduser(client, tenant, eid)) == (2, "old", moved["dateAnswered"], old["_id"])
    # deleting the latest falls back to the other; deleting both clears
    delete(client, tenant, old["_id"])
    assert latest_of(enduser(client, tenant, eid)) == (10, "newer", new["dateAnswered"], new["_id"])
    delete(client, tenant, f"srcid-{new['sourceId']}" if new["sourceId"] else new["_id"])
    assert latest_of(enduser(client, tenant, eid)) == (None, None, None, None)


def test_same_date_ties_broken_by_id(client: TestClient, tenant: Tenant) -> None:
    when = ago(3)
    body = bulk(
        client, tenant, [{"email": "tie@r.test", "score": s, "dateAnswered": when} for s in (1, 2, 3)]
    )
    last = body["upsertedIds"][-1]
    eu = enduser(client, tenant, client.get(f"/nps/{last}", headers=tenant.viewer).json()["euId"])
    assert eu["nps"] == 3 and eu["npsId"] == max(body["upsertedIds"])


def test_email_change_moves_the_answer_between_contacts(client: TestClient, tenant: Tenant) -> None:
    a_co = new_company(client, tenant, "a.test")
    b_co = new_company(client, tenant, "b.test")
    rec = post(client, tenant, email="x@a.test", score=10, dateAnswered=ago(5))
    assert company(client, tenant, a_co)["nps"] == 100.0
    moved = put(client, tenant, rec["_id"], email="y@b.test")
    assert moved["cId"] == b_co
    assert latest_of(enduser(client, tenant, rec["euId"])) == (None, None, None, None)
    assert enduser(client, tenant, moved["euId"])["nps"] == 10
    a, b = company(client, tenant, a_co), company(client, tenant, b_co)
    assert (a["nps"], a["npsResponses"]) == (None, 0)
    assert (b["nps"], b["npsResponses"]) == (100.0, 1)


def test_bulk_updates_that_move_the_latest_answer(client: TestClient, tenant: Tenant) -> None:
    body = bulk(
        client,
        tenant,
        [
            {
                "email": "m@r.test",
                "score": 3,
                "comment": "older",
                "dateAnswered": ago(10),
                "sourceId": "m-old",
            },
            {
                "email": "m@r.test",
                "score": 9,
                "comment": "newer",
                "dateAnswered": ago(5),
                "sourceId": "m-new",
            },
        ],
    )
    old_id, new_id = body["upsertedIds"]
    eid = client.get(f"/nps/{old_id}", headers=tenant.viewer).json()["euId"]
    assert enduser(client, tenant, eid)["npsId"] == new_id
    # the latest answer moves back before the other one: the other becomes the latest
    bulk(client, tenant, [{"sourceId": "m-new", "dateAnswered": ago(20)}])
    assert latest_of(enduser(client, tenant, eid))[0:2] == (3, "older")
    assert enduser(client, tenant, eid)["npsId"] == old_id
    # moving it forward again, in the same batch as a change of the other
    bulk(client, tenant, [{"sourceId": "m-new", "dateAnswered": ago(1)}, {"sourceId": "m-old", "score": 4}])
    assert latest_of(enduser(client, tenant, eid))[0:2] == (9, "newer")
    # the latest answer moves to another contact: the other answer is left
    body = bulk(client, tenant, [{"sourceId": "m-new", "email": "elsewhere@r.test"}])
    assert latest_of(enduser(client, tenant, eid))[0:2] == (4, "older")
    moved = client.get(f"/nps/{new_id}", headers=tenant.viewer).json()
    assert enduser(client, tenant, moved["euId"])["npsId"] == new_id


def test_bulk_creates_and_updates_for_the_same_contact(client: TestClient, tenant: Tenant) -> None:
    first = post(client, tenant, email="s@r.test", score=5, comment="first", dateAnswered=ago(10))
    eid = first["euId"]
    # an older answer plus a change to the latest one, in one batch
    bulk(
        client,
        tenant,
        [
            {"email": "S@r.test", "score": 1, "dateAnswered": ago(30)},
            {"_id": first["_id"], "comment": "edited"},
        ],
    )
    assert latest_of(enduser(client, tenant, eid)) == (5, "edited", first["dateAnswered"], first["_id"])
    # a newer answer plus a change to the old latest one
    body = bulk(
        client,
        tenant,
        [
            {"_id": first["_id"], "score": 6},
            {"email": "s@R.test", "score": 10, "comment": "newest", "dateAnswered": ago(2)},
        ],
    )
    newest = body["upsertedIds"][0]
    assert enduser(client, tenant, eid)["npsId"] == newest and enduser(client, tenant, eid)["nps"] == 10
    # re-surveying many known contacts with older answers changes none of them
    others = bulk(
        client, tenant, [{"email": f"k{i}@r.test", "score": 9, "dateAnswered": ago(1)} for i in range(5)]
    )
    euids = [client.get(f"/nps/{i}", headers=tenant.viewer).json()["euId"] for i in others["upsertedIds"]]
    bulk(client, tenant, [{"email": f"K{i}@r.test", "score": 0, "dateAnswered": ago(50)} for i in range(5)])
    assert [enduser(client, tenant, e)["nps"] for e in euids] == [9] * 5
    bulk(client, tenant, [{"email": f"k{i}@r.test", "score": i, "dateAnswered": ago(0.5)} for i in range(5)])
    assert [enduser(client, tenant, e)["nps"] for e in euids] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------ companies


def test_company_nps_over_latest_answers_of_last_360_days(client: TestClient, tenant: Tenant) -> None:
    cid = new_company(client, tenant, "co.test")
    post(client, tenant, email="u1@co.test", score=10, dateAnswered=ago(10))
    post(client, tenant, email="u2@co.test", score=9, dateAnswered=ago(100))
    post(client, tenant, email="u3@co.test", score=7, dateAnswered=ago(300))
    post(client, tenant, email="u4@co.test", score=10, dateAnswered=ago(50))  # older, superseded
    post(client, tenant, email="u4@co.test", score=2, dateAnswered=ago(5))
    post(client, tenant, email="u5@co.test", score=5, dateAnswered=ago(1))
    post(client, tenant, email="u6@co.test", score=9, dateAnswered=ago(30))
    u7 = post(client, tenant, email="u7@co.test", score=0, dateAnswered=ago(400))  # too old
    co = company(client, tenant, cid)
    # promoters u1 u2 u6, passive u3, detractors u4 u5: 100 * (3 - 2) / 6
    assert co["nps"] == 16.7 and co["npsResponses"] == 6
    assert co["npsUpdatedAt"] is not None
    # u7 answers again inside the window: now counted, as a promoter
    post(client, tenant, email="u7@co.test", score=10, dateAnswered=ago(3))
    co = company(client, tenant, cid)
    assert co["nps"] == 28.6 and co["npsResponses"] == 7  # 100 * (4 - 2) / 7
    # an answer outside the window and then deleted leaves the figure alone
    delete(client, tenant, u7["_id"])
    assert company(client, tenant, cid)["nps"] == 28.6


def test_company_rollups_follow_every_write_path(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    cid = new_company(client, tenant, "paths.test")
    other_cid = new_company(client, other, "paths.test")
    # single create
    a = post(client, tenant, email="a@paths.test", score=10, dateAnswered=ago(4))
    assert (company(client, tenant, cid)["nps"], company(client, tenant, cid)["npsResponses"]) == (100.0, 1)
    # bulk creates
    body = bulk(
        client,
        tenant,
        [
            {"email": "b@paths.test", "score": 0, "dateAnswered": ago(3), "sourceId": "pb"},
            {"email": "c@paths.test", "score": 8, "dateAnswered": ago(2), "sourceId": "pc"},
        ],
    )
    assert body["created"] == 2
    co = company(client, tenant, cid)
    assert (co["nps"], co["npsResponses"]) == (0.0, 3)
    # bulk update
    body = bulk(client, tenant, [{"sourceId": "pb", "score": 9}, {"sourceId": "pc", "score": 1}])
    assert body["updated"] == 2
    co = company(client, tenant, cid)
    assert (co["nps"], co["npsResponses"]) == (33.3, 3)
    assert enduser(client, tenant, a["euId"])["nps"] == 10
    # single update
    put(client, tenant, a["_id"], score=3)
    co = company(client, tenant, cid)
    assert (co["nps"], co["npsResponses"]) == (-33.3, 3)
    # delete
    delete(client, tenant, "srcid-pc")
    co = company(client, tenant, cid)
    assert (co["nps"], co["npsResponses"]) == (0.0, 2)
    delete(client, tenant, a["_id"])
    delete(client, tenant, "srcid-pb")
    co = company(client, tenant, cid)
    assert (co["nps"], co["npsResponses"]) == (None, 0)
    # the other tenant's company with the same domain was never touched
    theirs = company(client, other, other_cid)
    assert (theirs["nps"], theirs["npsResponses"]) == (None, 0)


def test_failed_writes_change_no_rollup(client: TestClient, tenant: Tenant) -> None:
    cid = new_company(client, tenant, "fail.test")
    rec = post(client, tenant, email="f@fail.test", score=10, dateAnswered=ago(1), sourceId="f-1")
    before = company(client, tenant, cid)
    assert_error(client.put(f"/nps/{rec['_id']}", json={"score": 11}, headers=tenant.editor), 400, "score")
    assert_error(client.delete(f"/nps/{rec['_id']}", headers=tenant.editor), 403)
    assert_error(client.put(f"/nps/{rec['_id']}", json={"score": 0}, headers=tenant.viewer), 403)
    body = bulk(client, tenant, [{"sourceId": "f-1", "score": "0"}, {"email": "g@fail.test", "score": -1}])
    assert body["updated"] == 0 and body["created"] == 0
    after = company(client, tenant, cid)
    assert (after["nps"], after["npsResponses"]) == (before["nps"], before["npsResponses"]) == (100.0, 1)
    assert enduser(client, tenant, rec["euId"])["nps"] == 10


# ----------------------------------------------------------------------- recomputation checks


def rollup_rows(database: DatabaseFixture, org_id: str) -> Counter[tuple[str, str, str, str, int]]:
    with database.db.engine.connect() as conn:
        rows = conn.execute(
            select(
                NpsRollup.survey_id,
                NpsRollup.company_id,
                NpsRollup.source,
                NpsRollup.day,
                NpsRollup.score,
                NpsRollup.count,
            ).where(NpsRollup.org_id == org_id)
        ).all()
    out: Counter[tuple[str, str, str, str, int]] = Counter()
    for survey, cid, source, day, score, count in rows:
        assert count > 0, "empty buckets are removed"
        out[(survey, cid, source, str(day), score)] = count
    return out


def recomputed_rollup(database: DatabaseFixture, org_id: str) -> Counter[tuple[str, str, str, str, int]]:
    """The same counts by GROUP BY over ``nps_record`` (missing dimensions are ``''`` in the roll-up)."""
    r = NpsRecord
    day = func.date(r.date_answered)
    with database.db.engine.connect() as conn:
        rows = conn.execute(
            select(r.campaign_id, r.company_id, r.source, day, r.score, func.count())
            .where(r.org_id == org_id)
            .group_by(r.campaign_id, r.company_id, r.source, day, r.score)
        ).all()
    out: Counter[tuple[str, str, str, str, int]] = Counter()
    for survey, cid, source, d, score, n in rows:
        out[(survey or "", cid or "", source or "", str(d), score)] += n
    return out


def check_contact_and_company_rollups(client: TestClient, tenant: Tenant) -> int:
    """Recompute every contact's latest answer and every company's NPS from the records (over HTTP)."""
    records = client.get("/nps?limit=10000&npsExpiryDay=0", headers=tenant.viewer).json()
    endusers = client.get("/endusers?limit=10000", headers=tenant.viewer).json()
    companies = client.get("/companies?limit=10000", headers=tenant.viewer).json()
    latest: dict[str, dict[str, Any]] = {}
    for rec in records:
        cur = latest.get(rec["euId"])
        if cur is None or (rec["dateAnswered"], rec["_id"]) > (cur["dateAnswered"], cur["_id"]):
            latest[rec["euId"]] = rec
    window = ago(360)
    tallies: dict[str, list[int]] = {c["_id"]: [0, 0, 0] for c in companies}
    for eu in endusers:
        rec = latest.get(eu["_id"])
        expected = (rec["score"], rec["comment"], rec["dateAnswered"], rec["_id"]) if rec else (None,) * 4
        assert latest_of(eu) == expected, eu["email"]
        if rec and eu["companyId"] and rec["dateAnswered"] >= window:
            score = rec["score"]
            tallies[eu["companyId"]][0 if score >= 9 else 1 if score >= 7 else 2] += 1
    for co in companies:
        p, m, d = tallies[co["_id"]]
        n = p + m + d
        assert co["npsResponses"] == n, co["name"]
        assert co["nps"] == (round(100.0 * (p - d) / n, 1) if n else None), co["name"]
    return len(records)


def test_random_writes_keep_every_rollup_exact(
    client: TestClient, tenant: Tenant, other: Tenant, database: DatabaseFixture
) -> None:
    rng = random.Random(20240601)
    domains = ["r1.test", "r2.test", "r3.test"]
    companies = [new_company(client, tenant, d) for d in domains] + [new_company(client, tenant)]
    emails = [f"p{i}@{rng.choice([*domains, 'free.test'])}" for i in range(14)]
    campaigns = [None, "camp-1", "camp-2"]
    sources = [None, "web", "email"]
    live: dict[str, dict[str, Any]] = {}  # _id -> record (as last returned)
    counter = 0

    def days() -> float:
        return rng.choice([rng.uniform(0, 340), rng.uniform(380, 700)])

    def random_item() -> dict[str, Any]:
        item: dict[str, Any] = {
            "email": rng.choice(emails),
            "score": rng.randint(0, 10),
            "dateAnswered": ago(days()),
        }
        if rng.random() < 0.5:
            item["campaignId"] = rng.choice(campaigns)
        if rng.random() < 0.5:
            item["source"] = rng.choice(sources)
        if rng.random() < 0.3:
            item["cId"] = rng.choice(companies)
        return item

    def random_change() -> dict[str, Any]:
        change: dict[str, Any] = {}
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["score", "dateAnswered", "campaignId", "source", "cId", "email", "comment"])
            change[kind] = {
                "score": lambda: rng.randint(0, 10),
                "dateAnswered": lambda: ago(days()),
                "campaignId": lambda: rng.choice(campaigns),
                "source": lambda: rng.choice(sources),
                "cId": lambda: rng.choice([*companies, None]),
                "email": lambda: rng.choice(emails),
                "comment": lambda: rng.choice([None, "x", "y"]),
            }[kind]()
        return change

    for step in range(60):
        op = rng.choice(["create", "create", "update", "delete", "bulk"]) if live else "create"
        if op == "create":
            rec = post(client, tenant, **random_item())
            live[rec["_id"]] = rec
        elif op == "update":
            rid = rng.choice(sorted(live))
            key = f"srcid-{live[rid]['sourceId']}" if live[rid]["sourceId"] else rid
            live[rid] = put(client, tenant, key, **random_change())
        elif op == "delete":
            rid = rng.choice(sorted(live))
            delete(client, tenant, rid)
            del live[rid]
        else:
            items: list[dict[str, Any]] = []
            targets = rng.sample(sorted(live), min(len(live), rng.randint(0, 4)))
            for rid in targets:
                items.append({"_id": rid, **random_change()})
            for _ in range(rng.randint(1, 6)):
                counter += 1
                item = random_item()
                if rng.random() < 0.5:
                    item["sourceId"] = f"rnd-{counter}"
                items.append(item)
            rng.shuffle(items)
            body = bulk(client, tenant, items)
            assert body["createdErrors"] == [] and body["updatedErrors"] == [], body
            for rid in body["upsertedIds"] + body["modified"]:
                live[rid] = client.get(f"/nps/{rid}", headers=tenant.viewer).json()
        if step % 20 == 19:
            assert rollup_rows(database, tenant.org_id) == recomputed_rollup(database, tenant.org_id)
            assert check_contact_and_company_rollups(client, tenant) == len(live)

    assert rollup_rows(database, tenant.org_id) == recomputed_rollup(database, tenant.org_id)
    assert sum(rollup_rows(database, tenant.org_id).values()) == len(live)
    assert check_contact_and_company_rollups(client, tenant) == len(live)
    assert rollup_rows(database, other.org_id) == Counter()
    # and once everything is deleted, nothing is left
    for rid in sorted(live):
        delete(client, tenant, rid)
    assert rollup_rows(database, tenant.org_id) == Counter()
    assert check_contact_and_company_rollups(client, tenant) == 0
