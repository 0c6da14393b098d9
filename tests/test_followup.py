"""Tags, notes and follow-up of answers (``/v1/answers/{id}``), on both databases: the contract,
validation naming fields, roles, tenant isolation, history, the cascades that remove them with
their answer, the feed's filters and the export columns."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import func, select

from conftest import Tenant, TestDatabase, _make_database, assert_error, make_tenant, post_nps
from mail_helpers import run_jobs
from npsd.app import create_app
from npsd.exports import service as export_service
from npsd.exports.parallel import CSV_EXPORTS
from npsd.kit.db import Database
from npsd.kit.models import AnswerFollowUp, AnswerFollowUpChange, AnswerNote, AnswerTag


def mark() -> str:
    return "fu" + secrets.token_hex(5)


def make_user(client: Any, tenant: Tenant, role: str = "editor") -> tuple[str, dict[str, str]]:
    """A user of ``tenant`` and the headers of a session token of theirs (signed in)."""
    email = f"{mark()}@team.example"
    r = client.post(
        "/v1/users", json={"email": email, "role": role, "password": "s3cret-pass"}, headers=tenant.admin
    )
    assert r.status_code == 201, r.text
    login = client.post("/v1/auth/login", json={"email": email, "password": "s3cret-pass"})
    assert login.status_code == 200, login.text
    return email, {"Authorization": f"Bearer {login.json()['accessToken']}"}


def answer(client: Any, tenant: Tenant, score: int = 3, **fields: Any) -> dict[str, Any]:
    return post_nps(client, tenant, f"{mark()}@customer.example", score, **fields)


def get_answer(client: Any, tenant: Tenant, rid: str) -> dict[str, Any]:
    r = client.get(f"/v1/answers/{rid}", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_answer_shows_what_nps_shows_and_nothing_done_yet(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant, 4, comment="Slow support")
    got = get_answer(client, tenant, rec["_id"])
    nps = client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).json()
    assert {k: got[k] for k in nps} == nps
    assert got["tags"] == [] and got["tagDetails"] == [] and got["notes"] == []
    assert got["followUp"] == {
        "status": None,
        "assigneeEmail": None,
        "updatedAt": None,
        "updatedBy": None,
        "history": [],
    }


def test_tags_are_replaced_trimmed_and_deduplicated_ignoring_case(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    url = f"/v1/answers/{rec['_id']}/tags"
    r = client.put(
        url, json={"tags": ["  Billing ", "billing", "Onboarding", "BILLING", "vip"]}, headers=tenant.editor
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["Billing", "Onboarding", "vip"]
    # replace: one kept (its new spelling), one dropped, one added
    r = client.put(url, json={"tags": ["VIP", "churn risk", "Billing"]}, headers=tenant.editor)
    assert r.json()["tags"] == ["Billing", "churn risk", "VIP"]
    assert get_answer(client, tenant, rec["_id"])["tags"] == ["Billing", "churn risk", "VIP"]
    r = client.put(url, json={"tags": []}, headers=tenant.admin)
    assert r.status_code == 200 and r.json()["tags"] == []


def added_at(value: str) -> datetime:
    """An ``addedAt`` of the API (``2026-11-28T14:02:03.000Z``) as an aware UTC datetime."""
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def test_tag_details_name_who_added_each_tag_and_when(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    email, headers = make_user(client, tenant, "editor")
    before = datetime.now(UTC) - timedelta(seconds=5)
    r = client.put(
        f"/v1/answers/{rec['_id']}/tags", json={"tags": ["vip", "Churn risk", "billing"]}, headers=headers
    )
    assert r.status_code == 200, r.text
    for got in (r.json(), get_answer(client, tenant, rec["_id"])):
        assert got["tags"] == ["billing", "Churn risk", "vip"]  # unchanged: plain strings, sorted
        assert [d["tag"] for d in got["tagDetails"]] == got["tags"]  # the same order
        assert [d["addedBy"] for d in got["tagDetails"]] == [email, email, email]
        for detail in got["tagDetails"]:
            assert set(detail) == {"tag", "addedBy", "addedAt"}
            assert before <= added_at(detail["addedAt"]) <= datetime.now(UTC) + timedelta(seconds=5)
    # an API token without a user is nobody the API can name
    rec2 = answer(client, tenant)
    r = client.put(f"/v1/answers/{rec2['_id']}/tags", json={"tags": ["api"]}, headers=tenant.editor)
    assert [(d["tag"], d["addedBy"]) for d in r.json()["tagDetails"]] == [("api", None)]


def test_re_putting_tags_keeps_the_kept_tags_author_and_time(
    client: Any, database: TestDatabase, tenant: Tenant
) -> None:
    rec = answer(client, tenant)
    url = f"/v1/answers/{rec['_id']}/tags"
    ann, ann_headers = make_user(client, tenant, "editor")
    bob, bob_headers = make_user(client, tenant, "editor")
    assert client.put(url, json={"tags": ["Billing", "slow"]}, headers=ann_headers).status_code == 200
    # a known time in the past, so that keeping it cannot be a coincidence of the clock
    long_ago = datetime(2026, 1, 2, 3, 4, 5)
    with database.db.transaction() as session:
        session.get_one(AnswerTag, (rec["_id"], "billing")).created_at = long_ago
    before = datetime.now(UTC) - timedelta(seconds=5)
    r = client.put(url, json={"tags": ["billing", "Churn risk"]}, headers=bob_headers)
    assert r.status_code == 200, r.text
    for got in (r.json(), get_answer(client, tenant, rec["_id"])):
        assert got["tags"] == ["billing", "Churn risk"]  # "slow" went; the kept tag's new spelling
        kept, added = got["tagDetails"]
        assert kept == {"tag": "billing", "addedBy": ann, "addedAt": "2026-01-02T03:04:05.000Z"}
        assert added["tag"] == "Churn risk" and added["addedBy"] == bob
        assert added_at(added["addedAt"]) >= before
    with database.db.transaction(write=False) as session:
        rows = session.execute(
            select(AnswerTag.tag_key, AnswerTag.created_by).where(AnswerTag.record_id == rec["_id"])
        ).all()
    assert sorted(rows) == [("billing", ann), ("churn risk", bob)]


def test_a_tag_by_a_deleted_user_has_no_author(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    email, headers = make_user(client, tenant, "editor")
    client.put(f"/v1/answers/{rec['_id']}/tags", json={"tags": ["theirs"]}, headers=headers)
    assert get_answer(client, tenant, rec["_id"])["tagDetails"][0]["addedBy"] == email
    user_id = next(
        u["id"] for u in client.get("/v1/users", headers=tenant.admin).json() if u["email"] == email
    )
    assert client.delete(f"/v1/users/{user_id}", headers=tenant.admin).status_code == 204
    (detail,) = get_answer(client, tenant, rec["_id"])["tagDetails"]
    assert detail["tag"] == "theirs" and detail["addedBy"] is None and detail["addedAt"].endswith("Z")


def test_openapi_documents_tag_details(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    answer_read = schemas["AnswerRead"]["properties"]
    assert answer_read["tags"]["items"]["type"] == "string"
    assert "same order" in answer_read["tagDetails"]["description"]
    detail = schemas["TagDetail"]
    assert set(detail["properties"]) == {"tag", "addedBy", "addedAt"}
    assert set(detail["required"]) == {"tag", "addedBy", "addedAt"}
    assert "null" in detail["properties"]["addedBy"]["description"]
    assert "tagDetails" in doc["paths"]["/v1/answers/{id}"]["get"]["description"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tags": [""]}, "tags.0"),
        ({"tags": ["ok", "   "]}, "tags.1"),
        ({"tags": ["x" * 51]}, "tags.0"),
        ({"tags": ["a;b"]}, "tags.0"),
        ({"tags": ["line\nbreak"]}, "tags.0"),
        ({"tags": ["nul\x00"]}, "tags.0"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": "billing"}, "tags"),
        ({"tags": [5]}, "tags.0"),
        ({}, "tags"),
        ({"tags": [], "colour": "red"}, "colour"),
    ],
)
def test_bad_tags_are_refused_naming_the_field(client: Any, tenant: Tenant, body: Any, field: str) -> None:
    rec = answer(client, tenant)
    assert_error(client.put(f"/v1/answers/{rec['_id']}/tags", json=body, headers=tenant.editor), 400, field)
    assert get_answer(client, tenant, rec["_id"])["tags"] == []


def test_twenty_distinct_tags_and_fifty_characters_are_fine(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    tags = [f"tag {i:02d}" for i in range(20)] + ["TAG 00", "x" * 50]
    r = client.put(f"/v1/answers/{rec['_id']}/tags", json={"tags": tags[:20]}, headers=tenant.editor)
    assert r.status_code == 200 and len(r.json()["tags"]) == 20
    r = client.put(
        f"/v1/answers/{rec['_id']}/tags", json={"tags": ["x" * 50, "Ünïcödé ✓"]}, headers=tenant.editor
    )
    assert r.status_code == 200 and r.json()["tags"] == ["x" * 50, "Ünïcödé ✓"]


def test_notes_keep_their_author_and_come_newest_first(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    email, headers = make_user(client, tenant, "editor")
    url = f"/v1/answers/{rec['_id']}/notes"
    first = client.post(url, json={"text": "  Called, no answer.  "}, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["text"] == "Called, no answer." and first.json()["authorEmail"] == email
    second = client.post(
        url, json={"text": "Spoke to them: refund agreed.\nFollow up Monday."}, headers=tenant.admin
    )
    assert second.status_code == 201
    assert second.json()["authorEmail"] == "test admin"  # an API token without a user: its name
    notes = get_answer(client, tenant, rec["_id"])["notes"]
    assert [n["text"] for n in notes] == [
        "Spoke to them: refund agreed.\nFollow up Monday.",
        "Called, no answer.",
    ]
    assert [n["authorEmail"] for n in notes] == ["test admin", email]
    assert notes[0]["createdAt"] >= notes[1]["createdAt"] and notes[0]["createdAt"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 5001}, "text"),
        ({}, "text"),
        ({"text": 5}, "text"),
        ({"text": "a\x00b"}, "text"),
        ({"text": "ok", "author": "me"}, "author"),
    ],
)
def test_bad_notes_are_refused_naming_the_field(client: Any, tenant: Tenant, body: Any, field: str) -> None:
    rec = answer(client, tenant)
    assert_error(client.post(f"/v1/answers/{rec['_id']}/notes", json=body, headers=tenant.editor), 400, field)
    assert get_answer(client, tenant, rec["_id"])["notes"] == []


def test_a_note_of_five_thousand_characters_is_kept_whole(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    text = "é" * 5000
    r = client.post(f"/v1/answers/{rec['_id']}/notes", json={"text": text}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    assert get_answer(client, tenant, rec["_id"])["notes"][0]["text"] == text


def test_follow_up_status_assignee_and_history(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant, 2)
    agent, _ = make_user(client, tenant, "viewer")
    lead, lead_headers = make_user(client, tenant, "editor")
    url = f"/v1/answers/{rec['_id']}/follow-up"
    r = client.put(url, json={"status": "open", "assigneeEmail": agent.upper()}, headers=lead_headers)
    assert r.status_code == 200, r.text
    fu = r.json()["followUp"]
    assert (fu["status"], fu["assigneeEmail"], fu["updatedBy"]) == ("open", agent, lead)
    # left out: the assignee stays
    fu = client.put(url, json={"status": "contacted"}, headers=tenant.editor).json()["followUp"]
    assert (fu["status"], fu["assigneeEmail"], fu["updatedBy"]) == ("contacted", agent, "test editor")
    # the same again changes nothing and adds nothing to the history
    again = client.put(
        url, json={"status": "contacted", "assigneeEmail": agent}, headers=tenant.editor
    ).json()
    assert again["followUp"] == fu
    # null: nobody
    fu = client.put(url, json={"status": "resolved", "assigneeEmail": None}, headers=lead_headers).json()[
        "followUp"
    ]
    assert (fu["status"], fu["assigneeEmail"]) == ("resolved", None)
    history = get_answer(client, tenant, rec["_id"])["followUp"]["history"]
    assert [(h["status"], h["assigneeEmail"], h["changedBy"]) for h in history] == [
        ("resolved", None, lead),
        ("contacted", agent, "test editor"),
        ("open", agent, lead),
    ]
    assert history[0]["changedAt"] == fu["updatedAt"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"status": "done"}, 400, "status"),
        ({}, 400, "status"),
        ({"status": None}, 400, "status"),
        ({"status": "open", "assigneeEmail": "not-an-address"}, 400, "assigneeEmail"),
        ({"status": "open", "assigneeEmail": "nobody@nowhere.example"}, 422, "assigneeEmail"),
        ({"status": "open", "priority": "high"}, 400, "priority"),
    ],
)
def test_bad_follow_ups_are_refused_naming_the_field(
    client: Any, tenant: Tenant, body: Any, status: int, field: str
) -> None:
    rec = answer(client, tenant)
    assert_error(
        client.put(f"/v1/answers/{rec['_id']}/follow-up", json=body, headers=tenant.editor), status, field
    )
    assert get_answer(client, tenant, rec["_id"])["followUp"]["status"] is None


def test_the_assignee_must_be_a_user_of_the_same_organization(
    client: Any, tenant: Tenant, other: Tenant
) -> None:
    rec = answer(client, tenant)
    outsider, _ = make_user(client, other, "admin")
    r = client.put(
        f"/v1/answers/{rec['_id']}/follow-up",
        json={"status": "open", "assigneeEmail": outsider},
        headers=tenant.editor,
    )
    assert_error(r, 422, "assigneeEmail")
    assert get_answer(client, tenant, rec["_id"])["followUp"]["history"] == []


def test_viewers_read_editors_and_admins_write(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    base = f"/v1/answers/{rec['_id']}"
    writes = [
        ("PUT", f"{base}/tags", {"tags": ["x"]}),
        ("POST", f"{base}/notes", {"text": "x"}),
        ("PUT", f"{base}/follow-up", {"status": "open"}),
    ]
    _, viewer_session = make_user(client, tenant, "viewer")
    for headers in (tenant.viewer, viewer_session):
        for method, url, body in writes:
            assert_error(client.request(method, url, json=body, headers=headers), 403)
        assert client.get(base, headers=headers).status_code == 200
    for method, url, body in writes:
        assert_error(client.request(method, url, json=body), 401)
    assert get_answer(client, tenant, rec["_id"])["notes"] == []
    for headers in (tenant.editor, tenant.admin):
        for method, url, body in writes:
            assert client.request(method, url, json=body, headers=headers).status_code in (200, 201)


def test_another_organizations_answer_is_a_404_and_stays_untouched(
    client: Any, tenant: Tenant, other: Tenant
) -> None:
    rec = answer(client, tenant)
    base = f"/v1/answers/{rec['_id']}"
    client.put(f"{base}/tags", json={"tags": ["secret-tag"]}, headers=tenant.editor)
    before = get_answer(client, tenant, rec["_id"])
    for method, url, body in [
        ("GET", base, None),
        ("PUT", f"{base}/tags", {"tags": ["hijacked"]}),
        ("POST", f"{base}/notes", {"text": "hijacked"}),
        ("PUT", f"{base}/follow-up", {"status": "resolved"}),
    ]:
        r = client.request(method, url, json=body, headers=other.admin)
        assert_error(r, 404)
        assert "secret-tag" not in r.text
    assert get_answer(client, tenant, rec["_id"]) == before


@pytest.mark.parametrize("key", ["zzz", "0" * 23, "g" * 24, "srcid-" + "x" * 600])
def test_malformed_ids_are_a_400_naming_id(client: Any, tenant: Tenant, key: str) -> None:
    assert_error(client.get(f"/v1/answers/{key}", headers=tenant.viewer), 400, "id")
    assert_error(client.put(f"/v1/answers/{key}/tags", json={"tags": []}, headers=tenant.editor), 400, "id")


def test_unknown_answer_is_a_404(client: Any, tenant: Tenant) -> None:
    assert_error(client.get(f"/v1/answers/{'a' * 24}", headers=tenant.viewer), 404)
    assert_error(client.post(f"/v1/answers/{'a' * 24}/notes", json={"text": "x"}, headers=tenant.editor), 404)


def test_srcid_keys_name_the_same_answer(client: Any, tenant: Tenant) -> None:
    source_id = mark()
    rec = answer(client, tenant, sourceId=source_id)
    client.put(f"/v1/answers/srcid-{source_id}/tags", json={"tags": ["imported"]}, headers=tenant.editor)
    assert get_answer(client, tenant, rec["_id"])["tags"] == ["imported"]


def counts(database: TestDatabase, record_id: str) -> list[int]:
    with database.db.transaction(write=False) as session:
        return [
            session.scalar(select(func.count()).select_from(model).where(model.record_id == record_id)) or 0
            for model in (AnswerTag, AnswerNote, AnswerFollowUp, AnswerFollowUpChange)
        ]


def follow_everything(client: Any, tenant: Tenant, rid: str) -> None:
    base = f"/v1/answers/{rid}"
    assert client.put(f"{base}/tags", json={"tags": ["a", "b"]}, headers=tenant.editor).status_code == 200
    assert (
        client.post(f"{base}/notes", json={"text": "about this person"}, headers=tenant.editor).status_code
        == 201
    )
    assert client.put(f"{base}/follow-up", json={"status": "open"}, headers=tenant.editor).status_code == 200


def test_deleting_an_answer_removes_its_tags_notes_and_follow_up(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    rec = answer(client, tenant)
    kept = answer(client, tenant)
    follow_everything(client, tenant, rec["_id"])
    follow_everything(client, tenant, kept["_id"])
    assert counts(database, rec["_id"]) == [2, 1, 1, 1]
    assert client.delete(f"/nps/{rec['_id']}", headers=tenant.admin).status_code == 200
    assert counts(database, rec["_id"]) == [0, 0, 0, 0]
    assert counts(database, kept["_id"]) == [2, 1, 1, 1]


def test_deleting_a_contact_with_its_answers_removes_their_follow_up(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    rec = answer(client, tenant)
    follow_everything(client, tenant, rec["_id"])
    r = client.delete(f"/endusers/{rec['euId']}", params={"cascade": "true"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert client.get(f"/nps/{rec['_id']}", headers=tenant.viewer).status_code == 404
    assert counts(database, rec["_id"]) == [0, 0, 0, 0]


def test_erasing_a_person_removes_the_notes_on_their_answers(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    person = f"{mark()}@erase.example"
    recs = [post_nps(client, tenant, person, s) for s in (1, 9)]
    bystander = answer(client, tenant)
    for rec in [*recs, bystander]:
        follow_everything(client, tenant, rec["_id"])
    r = client.post("/v1/erasures", json={"email": person}, headers=tenant.admin)
    assert r.status_code == 202, r.text
    run_jobs(database.db)
    assert client.get(f"/v1/erasures/{r.json()['id']}", headers=tenant.admin).json()["state"] == "done"
    for rec in recs:
        assert counts(database, rec["_id"]) == [0, 0, 0, 0]
        assert_error(client.get(f"/v1/answers/{rec['_id']}", headers=tenant.viewer), 404)
    assert counts(database, bystander["_id"]) == [2, 1, 1, 1]
    with database.db.transaction(write=False) as session:
        texts = session.scalars(select(AnswerNote.text).where(AnswerNote.org_id == tenant.org_id)).all()
    assert texts == ["about this person"]  # the bystander's only


def test_deleting_a_user_keeps_their_notes_and_history_by_address(client: Any, tenant: Tenant) -> None:
    rec = answer(client, tenant)
    email, headers = make_user(client, tenant, "editor")
    client.post(f"/v1/answers/{rec['_id']}/notes", json={"text": "mine"}, headers=headers)
    client.put(
        f"/v1/answers/{rec['_id']}/follow-up",
        json={"status": "open", "assigneeEmail": email},
        headers=headers,
    )
    user_id = next(
        u["id"] for u in client.get("/v1/users", headers=tenant.admin).json() if u["email"] == email
    )
    assert client.delete(f"/v1/users/{user_id}", headers=tenant.admin).status_code == 204
    got = get_answer(client, tenant, rec["_id"])
    assert got["notes"][0]["authorEmail"] == email
    assert got["followUp"]["status"] == "open" and got["followUp"]["assigneeEmail"] is None
    assert got["followUp"]["history"][0]["assigneeEmail"] == email


# ------------------------------------------------------------------------------------------ exports

FOLLOW_UP = ["tags", "followUpStatus", "assigneeEmail", "notes"]


def guard(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def followed_answers(client: Any, tenant: Tenant, **fields: Any) -> tuple[list[str], str]:
    """Three answers: one tagged, noted twice and assigned; one untouched; one resolved only."""
    agent, _ = make_user(client, tenant, "viewer")
    ids = [
        answer(client, tenant, s, dateAnswered=f"2026-02-0{i + 1}T10:00:00Z", **fields)["_id"]
        for i, s in enumerate((1, 9, 6))
    ]
    first, _, third = ids
    client.put(
        f"/v1/answers/{first}/tags", json={"tags": ["vip", "=danger", "Billing"]}, headers=tenant.editor
    )
    for text in ['Said "refund", then hung up,\nwill call back', "-5 stars next time?"]:
        assert (
            client.post(f"/v1/answers/{first}/notes", json={"text": text}, headers=tenant.editor).status_code
            == 201
        )
    client.put(
        f"/v1/answers/{first}/follow-up",
        json={"status": "contacted", "assigneeEmail": agent},
        headers=tenant.editor,
    )
    client.put(f"/v1/answers/{third}/follow-up", json={"status": "resolved"}, headers=tenant.editor)
    return ids, agent


def test_exports_carry_tags_notes_status_and_assignee(client: Any, tenant: Tenant) -> None:
    ids, agent = followed_answers(client, tenant)
    first, second, third = ids
    notes = get_answer(client, tenant, first)["notes"]
    expected_notes = "\n".join(f"[{n['createdAt']} {n['authorEmail']}] {n['text']}" for n in notes)
    assert notes[0]["text"] == "-5 stars next time?"  # newest first

    r = client.get("/nps/export", params={"format": "json", "npsExpiryDay": 0}, headers=tenant.viewer)
    by_id = {o["_id"]: o for o in r.json()}
    assert list(by_id[first])[-4:] == FOLLOW_UP
    assert by_id[first]["tags"] == ["=danger", "Billing", "vip"]
    assert by_id[first]["followUpStatus"] == "contacted" and by_id[first]["assigneeEmail"] == agent
    assert by_id[first]["notes"] == [{k: n[k] for k in ("text", "authorEmail", "createdAt")} for n in notes]
    assert {k: by_id[second][k] for k in FOLLOW_UP} == {
        "tags": [],
        "followUpStatus": None,
        "assigneeEmail": None,
        "notes": [],
    }
    assert by_id[third]["followUpStatus"] == "resolved" and by_id[third]["assigneeEmail"] is None
    ndjson = client.get("/nps/export", params={"format": "ndjson", "npsExpiryDay": 0}, headers=tenant.viewer)
    assert [orjson.loads(line) for line in ndjson.content.splitlines()] == r.json()

    text = client.get("/nps/export", params={"format": "csv", "npsExpiryDay": 0}, headers=tenant.viewer).text
    header = next(csv.reader(io.StringIO(text)))
    assert header[-4:] == FOLLOW_UP
    rows = {row["_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows[first]["tags"] == "'=danger; Billing; vip"  # a spreadsheet must not run it
    assert rows[first]["notes"] == expected_notes
    assert (rows[first]["followUpStatus"], rows[first]["assigneeEmail"]) == ("contacted", agent)
    assert [rows[second][k] for k in FOLLOW_UP] == ["", "", "", ""]
    assert [rows[third][k] for k in FOLLOW_UP] == ["", "resolved", "", ""]
    # the bytes are what the csv module writes for these values (SQLite finishes its lines in SQL)
    out = io.StringIO()
    writer = csv.writer(out)
    for row in csv.reader(io.StringIO(text)):
        writer.writerow(row)
    assert out.getvalue() == text

    sheet = load_workbook(
        io.BytesIO(
            client.get(
                "/nps/export", params={"format": "xlsx", "npsExpiryDay": 0}, headers=tenant.viewer
            ).content
        )
    ).active
    cells = list(sheet.iter_rows(values_only=True))
    assert list(cells[0][-4:]) == FOLLOW_UP
    xrows = {row[0]: dict(zip(cells[0], row, strict=True)) for row in cells[1:]}
    assert xrows[first]["tags"] == "'=danger; Billing; vip" and xrows[first]["notes"] == expected_notes
    assert xrows[first]["assigneeEmail"] == agent and xrows[third]["followUpStatus"] == "resolved"
    assert xrows[second]["tags"] is None and xrows[second]["notes"] is None


def test_survey_response_exports_carry_them_too(client: Any, tenant: Tenant) -> None:
    survey = client.post("/v1/nps-surveys", json={"name": "Pulse"}, headers=tenant.admin).json()
    ids, agent = followed_answers(client, tenant, campaignId=survey["id"])
    r = client.get(
        f"/v1/nps-surveys/{survey['id']}/responses/export", params={"format": "json"}, headers=tenant.viewer
    )
    assert r.status_code == 200, r.text
    by_id = {o["id"]: o for o in r.json()}
    assert by_id[ids[0]]["tags"] == ["=danger", "Billing", "vip"] and by_id[ids[0]]["assigneeEmail"] == agent
    assert list(by_id[ids[1]])[-4:] == FOLLOW_UP
    text = client.get(
        f"/v1/nps-surveys/{survey['id']}/responses/export", params={"format": "csv"}, headers=tenant.viewer
    ).text
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows[ids[2]]["followUpStatus"] == "resolved" and rows[ids[0]]["tags"] == "'=danger; Billing; vip"


def test_another_organizations_export_shows_none_of_it(client: Any, tenant: Tenant, other: Tenant) -> None:
    followed_answers(client, tenant)
    answer(client, other)
    for fmt in ("csv", "json"):
        r = client.get("/nps/export", params={"format": fmt, "npsExpiryDay": 0}, headers=other.viewer)
        assert "danger" not in r.text and "refund" not in r.text and "contacted" not in r.text


@pytest.fixture(scope="module")
def parallel_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, TestDatabase]]:
    """On one SQLite file: an app whose CSV exports are written by worker processes (blocks of
    two rows), and one whose exports one reader writes."""
    tdb = _make_database("sqlite", tmp_path_factory.mktemp("followup-parallel"))
    dbs = []
    apps = []
    for update in ({"export_workers": 2, "export_parallel_rows": 20}, {"export_workers": 0}):
        settings = tdb.settings.model_copy(update=update)
        db = Database(tdb.url, pool_size=5, settings=settings)
        dbs.append(db)
        apps.append(create_app(settings, db))
    with TestClient(apps[0]) as parallel, TestClient(apps[1]) as single:
        yield parallel, single, tdb
    for db in dbs:
        db.dispose()
    tdb.db.dispose()


def test_export_workers_write_the_same_follow_up_cells(
    parallel_clients: tuple[Any, Any, TestDatabase],
) -> None:
    parallel, single, tdb = parallel_clients
    tenant = make_tenant(tdb)
    items = [{"email": f"p{i}@par.example", "score": i % 11, "sourceId": f"fu-{i}"} for i in range(45)]
    r = parallel.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    ids = [k["_id"] for k in r.json()["insertsKeys"]]
    for i, rid in enumerate(ids[::4]):  # spread over many blocks
        parallel.put(f"/v1/answers/{rid}/tags", json={"tags": [f"t{i}", '-x, "q"']}, headers=tenant.editor)
        parallel.post(f"/v1/answers/{rid}/notes", json={"text": f"note {i}\nline two"}, headers=tenant.editor)
        parallel.put(f"/v1/answers/{rid}/follow-up", json={"status": "open"}, headers=tenant.editor)
    query = {"format": "csv", "npsExpiryDay": 0}
    before = CSV_EXPORTS.snapshot()
    ours = parallel.get("/nps/export", params=query, headers=tenant.viewer)
    assert ours.status_code == 200, ours.text
    assert CSV_EXPORTS.snapshot()["workers_used"] == before["workers_used"] + 1  # the workers wrote it
    alone = single.get("/nps/export", params=query, headers=tenant.viewer)
    assert ours.content == alone.content
    rows = {row["_id"]: row for row in csv.DictReader(io.StringIO(ours.text))}
    assert len(rows) == 45
    followed = [rows[rid] for rid in ids[::4]]
    assert all(row["followUpStatus"] == "open" and row["notes"].endswith("line two") for row in followed)
    assert followed[0]["tags"] == '\'-x, "q"; t0'
    assert sum(1 for row in rows.values() if row["tags"]) == len(followed)
    # JSON of the same answers agrees, value for value
    array = single.get("/nps/export", params={**query, "format": "json"}, headers=tenant.viewer).json()
    for obj in array:
        row = rows[obj["_id"]]
        assert row["tags"] == (guard("; ".join(obj["tags"])) if obj["tags"] else "")
        assert row["followUpStatus"] == (obj["followUpStatus"] or "")


def test_an_organization_following_up_more_answers_than_held_gets_the_same_file(
    client: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_FOLLOWED followed answers an export asks each batch for all its ids: same bytes."""
    followed_answers(client, tenant)
    downloads = {}
    default = export_service.MAX_FOLLOWED
    for held in (default, 1):
        monkeypatch.setattr(export_service, "MAX_FOLLOWED", held)
        downloads[held] = [
            client.get(
                "/nps/export", params={"format": fmt, "npsExpiryDay": 0}, headers=tenant.viewer
            ).content
            for fmt in ("csv", "json")
        ]
    assert downloads[1] == downloads[default]
    assert b"'=danger; Billing; vip" in downloads[1][0]


def test_concurrent_changes_of_one_answer_apply_one_after_the_other(client: Any, tenant: Tenant) -> None:
    """The answer's row is locked for a change: concurrent replacements never collide (no 500)."""
    from concurrent.futures import ThreadPoolExecutor

    rec = answer(client, tenant)
    sets = [[f"t{i}", "shared", f"u{i}"] for i in range(8)]

    def put(tags: list[str]) -> int:
        r = client.put(f"/v1/answers/{rec['_id']}/tags", json={"tags": tags}, headers=tenant.editor)
        s = client.put(
            f"/v1/answers/{rec['_id']}/follow-up",
            json={"status": "open" if int(tags[0][1:]) % 2 else "contacted"},
            headers=tenant.editor,
        )
        return r.status_code * 1000 + s.status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(put, sets)) == {200200}
    final = get_answer(client, tenant, rec["_id"])
    assert final["tags"] in [sorted(s, key=str.casefold) for s in sets]
    assert final["followUp"]["status"] == final["followUp"]["history"][0]["status"]
