"""``GET /nps/export``: CSV, XLSX, JSON and NDJSON downloads of the ``/nps`` list, streamed."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from conftest import Tenant, assert_error
from npsd.exports.service import BATCH_ROWS

FIELDS = [
    "_id",
    "email",
    "score",
    "scoreType",
    "comment",
    "euId",
    "cId",
    "campaignId",
    "source",
    "sourceId",
    "dateSent",
    "dateReminderSent",
    "dateAnswered",
    "createdAt",
    "updatedAt",
]
# the names beside the ids, after the custom columns (new columns go at the end)
NAMES = ["enduserName", "companyName", "surveyName"]
# then what the team did with each answer (npsd.followup), always present, empty when nothing
FOLLOW_UP = ["tags", "followUpStatus", "assigneeEmail", "notes"]
ALL = {"npsExpiryDay": 0}


def put(client: TestClient, tenant: Tenant, items: list[dict[str, Any]]) -> list[str]:
    r = client.put("/nps", json=items, headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == len(items), r.text
    return [k["_id"] for k in r.json()["insertsKeys"]]


def export(client: TestClient, tenant: Tenant, fmt: str, **params: Any) -> Any:
    r = client.get("/nps/export", params={"format": fmt, **params}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return r


def csv_rows(client: TestClient, tenant: Tenant, **params: Any) -> list[dict[str, str]]:
    r = export(client, tenant, "csv", **params)
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))


@pytest.fixture
def sample(client: TestClient, tenant: Tenant) -> list[str]:
    """Three records with text that spreadsheets would run, typed custom values and dates."""
    return put(
        client,
        tenant,
        [
            {
                "email": "ann@example.com",
                "score": 10,
                "comment": '=HYPERLINK("http://evil")',
                "source": "email",
                "sourceId": "s-1",
                "campaignId": "c1",
                "dateSent": "2026-01-01T09:00:00Z",
                "dateAnswered": "2026-01-02T10:30:00.123Z",
                "custom": {"plan": "pro", "seats": 12, "vip": True, "note": "-2+3", "tags": ["a", "b"]},
            },
            {
                "email": "bob@example.com",
                "score": 7,
                "comment": "+ fine\nsecond line, with comma",
                "source": "web",
                "campaignId": "c2",
                "dateAnswered": "2026-01-03T10:00:00Z",
                "custom": {"plan": "@cmd"},
            },
            {
                "email": "cat@example.com",
                "score": 2,
                "comment": "\tnope",
                "source": "-web",
                "dateAnswered": "2026-01-04T10:00:00Z",
            },
        ],
    )


def test_csv_header_values_escaping_and_custom_columns(
    client: TestClient, tenant: Tenant, sample: list[str]
) -> None:
    r = export(client, tenant, "csv", **ALL)
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r"attachment; filename=nps-records-\d{4}-\d{2}-\d{2}\.csv", r.headers["content-disposition"]
    )
    text = r.content.decode("utf-8")
    header = next(csv.reader(io.StringIO(text)))
    assert header == [
        *FIELDS,
        "custom.note",
        "custom.plan",
        "custom.seats",
        "custom.tags",
        "custom.vip",
        *NAMES,
        *FOLLOW_UP,
    ]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["_id"] for row in rows] == list(reversed(sample))  # newest answer first, like GET /nps
    cat, bob, ann = rows
    assert ann["comment"] == '\'=HYPERLINK("http://evil")'
    assert bob["comment"] == "'+ fine\nsecond line, with comma"
    assert cat["comment"] == "'\tnope"
    assert cat["source"] == "'-web"
    assert ann["custom.note"] == "'-2+3" and bob["custom.plan"] == "'@cmd"
    assert ann["custom.plan"] == "pro" and ann["custom.seats"] == "12" and ann["custom.vip"] == "true"
    assert json.loads(ann["custom.tags"]) == ["a", "b"]
    assert cat["custom.plan"] == "" and cat["custom.seats"] == ""
    assert ann["score"] == "10" and ann["scoreType"] == "promoter"
    assert bob["scoreType"] == "passive" and cat["scoreType"] == "detractor"
    assert ann["email"] == "ann@example.com" and ann["sourceId"] == "s-1" and ann["campaignId"] == "c1"
    assert ann["dateAnswered"] == "2026-01-02T10:30:00.123Z" and ann["dateSent"] == "2026-01-01T09:00:00.000Z"
    assert ann["dateReminderSent"] == "" and ann["cId"] == ""
    one = client.get(f"/nps/{sample[0]}", headers=tenant.viewer).json()
    assert ann["euId"] == one["euId"] and ann["createdAt"] == one["createdAt"]


def _expected_csv(records: list[dict[str, Any]], keys: list[str]) -> bytes:
    """What the CSV export must hold, written independently with the csv module from the JSON
    export: the documented formula guard on text, numbers as they are, booleans as true/false,
    objects and arrays as compact JSON, null and missing as empty."""

    def guard(text: str) -> str:
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return guard(value)
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return value

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*FIELDS, *(f"custom.{k}" for k in keys), *NAMES, *FOLLOW_UP])
    for r in records:
        custom = r["custom"] or {}
        writer.writerow(
            [
                *(r[f] if f in ("score", "scoreType") else cell(r[f]) for f in FIELDS),
                *(cell(custom.get(k)) for k in keys),
                *(cell(r[f]) for f in NAMES),
                *("" for _ in FOLLOW_UP),
            ]
        )
    return out.getvalue().encode()


def test_csv_bytes_equal_the_csv_module_on_hostile_text(client: TestClient, tenant: Tenant) -> None:
    """Quotes, commas, CR, LF, formula starts and typed custom values: the CSV export is byte for
    byte what the csv module writes from the same records (SQLite finishes the cells in SQL, other
    databases in Python; both must agree with this)."""
    texts = [
        'say "hi", then leave',
        "line one\nline two",
        "cr\rhere",
        "crlf\r\nend",
        '=1+2, "x"',
        "-",
        "",
        "plain",
        '\t"tab"',
        "@at,",
        "ünïcødé ✓ 日本",
        '"',
        ",",
        "+",
    ]
    # the names beside the ids are hostile too: contacts, companies and surveys named by the texts
    # (every other record keeps its hostile campaignId text, which names no survey)
    companies: dict[int, str] = {}
    surveys: dict[int, str] = {}
    for i, t in enumerate(texts):
        if not t:
            continue
        r = client.post("/companies", json={"name": t}, headers=tenant.editor)
        assert r.status_code in (200, 201), r.text
        companies[i] = r.json()["_id"]
        body = {"email": f"q{i}@example.com", "name": t, "companyId": companies[i]}
        r = client.post("/endusers", json=body, headers=tenant.editor)
        assert r.status_code in (200, 201), r.text
        if i % 2 == 0:
            r = client.post("/v1/nps-surveys", json={"name": t}, headers=tenant.editor)
            assert r.status_code == 201, r.text
            surveys[i] = r.json()["id"]
    items = [
        {
            "email": f"q{i}@example.com",
            "score": i % 11,
            "comment": t,
            "source": t or None,
            "sourceId": f"s-{i}" + t,
            "cId": companies.get(i),
            "campaignId": surveys.get(i, t[:60] or None),
            "dateAnswered": f"2026-02-{1 + i:02d}T10:00:00Z",
            "custom": {
                "text": t,
                "n": [12, -5, 0.30000000000000004, 2**53 + 1, 1.5, 0][i % 6],
                "flag": [True, False, None][i % 3],
                "nested": {"a": t, "b": [1, "x,y"]},
            },
        }
        for i, t in enumerate(texts)
    ]
    put(client, tenant, items)
    body = export(client, tenant, "csv", **ALL).content
    records = json.loads(export(client, tenant, "json", **ALL).content)
    assert len(records) == len(texts)
    by_email = {r["email"]: r for r in records}
    for i, t in enumerate(texts):  # the JSON holds each name as it is, or null where none
        record = by_email[f"q{i}@example.com"]
        assert (record["enduserName"], record["companyName"]) == ((t, t) if t else (None, None))
        assert record["surveyName"] == (t if i in surveys else None)
    assert body == _expected_csv(records, ["flag", "n", "nested", "text"])


def test_json_and_ndjson_parse_to_the_same_records(
    client: TestClient, tenant: Tenant, sample: list[str]
) -> None:
    r = export(client, tenant, "json", **ALL)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-disposition"].endswith(".json")
    array = r.json()
    assert [o["_id"] for o in array] == list(reversed(sample))
    ann = array[2]
    assert ann["custom"] == {"plan": "pro", "seats": 12, "vip": True, "note": "-2+3", "tags": ["a", "b"]}
    assert ann["comment"] == '=HYPERLINK("http://evil")'  # JSON is data, not a spreadsheet: no escaping
    assert ann["score"] == 10 and ann["scoreType"] == "promoter" and ann["cId"] is None
    assert list(ann) == [*FIELDS, "custom", *NAMES, *FOLLOW_UP]
    listed = {o["_id"]: o for o in client.get("/nps", params=ALL, headers=tenant.viewer).json()}
    for obj in array:
        assert all(obj[k] == listed[obj["_id"]][k] for k in (*FIELDS, "custom"))

    r = export(client, tenant, "ndjson", **ALL)
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = r.content.decode().splitlines()
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == array


def test_xlsx_has_typed_and_escaped_cells(client: TestClient, tenant: Tenant, sample: list[str]) -> None:
    r = export(client, tenant, "xlsx", **ALL)
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert r.headers["content-disposition"].endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert header == [
        *FIELDS,
        "custom.note",
        "custom.plan",
        "custom.seats",
        "custom.tags",
        "custom.vip",
        *NAMES,
        *FOLLOW_UP,
    ]
    assert len(rows) == 4
    cat, bob, ann = (dict(zip(header, row, strict=True)) for row in rows[1:])
    assert ann["_id"] == sample[0]
    assert ann["score"] == 10 and isinstance(ann["score"], int)
    assert ann["dateAnswered"] == datetime(2026, 1, 2, 10, 30, 0, 123000)
    assert ann["dateSent"] == datetime(2026, 1, 1, 9, 0)
    assert ann["dateReminderSent"] is None and ann["cId"] is None
    assert ann["comment"] == '\'=HYPERLINK("http://evil")'
    assert bob["comment"] == "'+ fine\nsecond line, with comma"
    assert cat["comment"] == "'\tnope" and cat["source"] == "'-web"
    assert ann["custom.seats"] == 12 and ann["custom.vip"] is True and ann["custom.note"] == "'-2+3"
    assert bob["custom.plan"] == "'@cmd" and json.loads(ann["custom.tags"]) == ["a", "b"]
    # no cell is a formula
    assert all(not (isinstance(v, str) and v.startswith("=")) for row in rows for v in row)


def test_filters_are_those_of_the_list(client: TestClient, tenant: Tenant, sample: list[str]) -> None:
    assert [r["_id"] for r in csv_rows(client, tenant, scoreType="promoter", **ALL)] == [sample[0]]
    assert [r["_id"] for r in csv_rows(client, tenant, campaignId="c1,c2", **ALL)] == [sample[1], sample[0]]
    assert [r["_id"] for r in csv_rows(client, tenant, email="BOB@example.com", **ALL)] == [sample[1]]
    assert [
        r["_id"]
        for r in csv_rows(client, tenant, since="2026-01-03T00:00:00Z", until="2026-01-03T23:59:59Z", **ALL)
    ] == [sample[1]]
    assert [r["_id"] for r in csv_rows(client, tenant, sort="score", **ALL)] == [
        sample[2],
        sample[1],
        sample[0],
    ]
    # limit and offset do not cut an export
    assert len(csv_rows(client, tenant, limit=1, offset=1, **ALL)) == 3
    # a filter on custom keys: the columns follow the rows exported
    r = export(client, tenant, "csv", scoreType="detractor", **ALL)
    assert next(csv.reader(io.StringIO(r.text))) == [*FIELDS, *NAMES, *FOLLOW_UP]


def test_default_window_is_the_lists(client: TestClient, tenant: Tenant) -> None:
    old, new = put(
        client,
        tenant,
        [
            {"email": "old@example.com", "score": 5, "dateAnswered": "2015-06-01T00:00:00Z"},
            {"email": "new@example.com", "score": 9},
        ],
    )
    assert [r["_id"] for r in csv_rows(client, tenant)] == [new]
    assert {r["_id"] for r in csv_rows(client, tenant, npsExpiryDay=0)} == {old, new}


def test_empty_exports_are_well_formed(client: TestClient, tenant: Tenant) -> None:
    r = export(client, tenant, "csv")
    assert r.text.splitlines() == [",".join([*FIELDS, *NAMES, *FOLLOW_UP])]
    assert export(client, tenant, "json").json() == []
    assert export(client, tenant, "ndjson").content == b""
    rows = list(
        openpyxl.load_workbook(io.BytesIO(export(client, tenant, "xlsx").content)).active.iter_rows(
            values_only=True
        )
    )
    assert rows == [(*FIELDS, *NAMES, *FOLLOW_UP)]


def test_batches_add_up(client: TestClient, tenant: Tenant) -> None:
    n = BATCH_ROWS + 321
    put(
        client,
        tenant,
        [
            {
                "email": f"u{i}@example.com",
                "score": i % 11,
                "custom": {"i": i},
                "dateAnswered": f"2026-0{1 + i % 9}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            }
            for i in range(n)
        ],
    )
    listed = [
        o["_id"] for o in client.get("/nps", params={"limit": 10000, **ALL}, headers=tenant.viewer).json()
    ]
    assert len(listed) == n
    assert [r["_id"] for r in csv_rows(client, tenant, **ALL)] == listed
    assert [o["_id"] for o in export(client, tenant, "json", **ALL).json()] == listed
    lines = export(client, tenant, "ndjson", **ALL).content.splitlines()
    assert [json.loads(line)["_id"] for line in lines] == listed
    assert sorted(int(r["custom.i"]) for r in csv_rows(client, tenant, **ALL)) == list(range(n))


def test_tenant_isolation(client: TestClient, tenant: Tenant, other: Tenant, sample: list[str]) -> None:
    put(
        client,
        other,
        [
            {
                "email": "zed@example.com",
                "score": 1,
                "custom": {"secret": "x"},
                "dateAnswered": "2026-01-05T00:00:00Z",
            }
        ],
    )
    mine = csv_rows(client, tenant, **ALL)
    assert {r["_id"] for r in mine} == set(sample)
    assert "custom.secret" not in mine[0]
    theirs = export(client, other, "json", **ALL).json()
    assert [o["email"] for o in theirs] == ["zed@example.com"]
    assert export(client, other, "json", campaignId="c1", **ALL).json() == []


def test_format_is_required_and_checked(client: TestClient, tenant: Tenant) -> None:
    body = assert_error(client.get("/nps/export", headers=tenant.viewer), 400, "format")
    assert all(f in body["message"] for f in ("csv", "xlsx", "json", "ndjson"))
    body = assert_error(client.get("/nps/export?format=pdf", headers=tenant.viewer), 400, "format")
    assert all(f in body["message"] for f in ("csv", "xlsx", "json", "ndjson"))
    assert_error(client.get("/nps/export?format=CSV%00", headers=tenant.viewer), 400, "format")


def test_bad_filters_and_auth(client: TestClient, tenant: Tenant) -> None:
    assert_error(client.get("/nps/export?format=csv&companyId=nope", headers=tenant.viewer), 400, "companyId")
    assert_error(client.get("/nps/export?format=csv&since=yesterday", headers=tenant.viewer), 400, "since")
    assert_error(
        client.get("/nps/export?format=csv&scoreType=happy", headers=tenant.viewer), 400, "scoreType"
    )
    assert_error(client.get("/nps/export?format=csv&sort=password", headers=tenant.viewer), 400, "sort")
    assert_error(
        client.get("/nps/export?format=csv&since=2026-02-01&until=2026-01-01", headers=tenant.viewer),
        400,
        "since",
    )
    assert_error(client.get("/nps/export?format=csv"), 401)
    # /nps/export is not read as a record id
    assert client.get("/nps/export?format=json", headers=tenant.viewer).json() == []


def test_dates_print_exactly_as_the_api_prints_them(client: TestClient, tenant: Tenant) -> None:
    stamps = [
        "2026-01-01T23:59:59.999Z",
        "2026-01-02T00:00:00.001Z",
        "2026-02-28T12:00:00.5Z",
        "2026-03-01T00:00:00Z",
        "2025-12-31T23:59:59.123+05:00",
        "1767225600",
    ]
    put(
        client,
        tenant,
        [
            {
                "email": f"d{i}@example.com",
                "score": 5,
                "dateAnswered": stamp,
                "dateSent": stamp,
                "dateReminderSent": stamp,
            }
            for i, stamp in enumerate(stamps)
        ],
    )
    listed = client.get("/nps", params=ALL, headers=tenant.viewer).json()
    assert {o["dateAnswered"] for o in listed} == {
        "2026-01-01T23:59:59.999Z",
        "2026-01-02T00:00:00.001Z",
        "2026-02-28T12:00:00.500Z",
        "2026-03-01T00:00:00.000Z",
        "2025-12-31T18:59:59.123Z",
        "2026-01-01T00:00:00.000Z",
    }
    dates = ("dateSent", "dateReminderSent", "dateAnswered", "createdAt", "updatedAt")
    expected = [{k: o[k] for k in ("_id", *dates)} for o in listed]
    assert [
        {k: o[k] for k in ("_id", *dates)} for o in export(client, tenant, "json", **ALL).json()
    ] == expected
    assert [{k: r[k] for k in ("_id", *dates)} for r in csv_rows(client, tenant, **ALL)] == expected
    sheet = openpyxl.load_workbook(io.BytesIO(export(client, tenant, "xlsx", **ALL).content)).active
    rows = list(sheet.iter_rows(values_only=True))
    column = rows[0].index("dateAnswered")
    assert [row[column].isoformat(timespec="milliseconds") + "Z" for row in rows[1:]] == [
        o["dateAnswered"] for o in listed
    ]


def test_survey_responses_export_uses_the_same_writer(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    r = client.post("/v1/nps-surveys", json={"name": "Export me"}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    mine = put(
        client,
        tenant,
        [
            {"email": "s1@example.com", "score": 9, "campaignId": sid, "comment": "@home"},
            {"email": "s2@example.com", "score": 3, "campaignId": sid},
        ],
    )
    put(client, tenant, [{"email": "s3@example.com", "score": 5}])
    r = client.get(f"/v1/nps-surveys/{sid}/responses/export", params={"format": "csv"}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    assert re.fullmatch(
        rf"attachment; filename=nps-survey-{sid}-responses-\d{{4}}-\d{{2}}-\d{{2}}\.csv",
        r.headers["content-disposition"],
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sorted(row["id"] for row in rows) == sorted(mine)
    assert {row["comment"] for row in rows} == {"'@home", ""}
    body = assert_error(
        client.get(
            f"/v1/nps-surveys/{sid}/responses/export", params={"format": "pdf"}, headers=tenant.viewer
        ),
        400,
        "format",
    )
    assert "ndjson" in body["message"]
    assert_error(
        client.get(f"/v1/nps-surveys/{sid}/responses/export", params={"format": "csv"}, headers=other.viewer),
        404,
    )


def test_too_many_custom_keys_become_one_json_column(client: TestClient, tenant: Tenant) -> None:
    put(
        client,
        tenant,
        [
            {"email": "k1@example.com", "score": 5, "custom": {f"a{i}": i for i in range(600)}},
            {
                "email": "k2@example.com",
                "score": 6,
                "custom": {f"b{i}": "=x" for i in range(600)},
                "comment": "control \x01 characters and " + "long " * 8000,
            },
        ],
    )
    rows = csv_rows(client, tenant)
    assert list(rows[0]) == [*FIELDS, "custom", *NAMES, *FOLLOW_UP]
    assert sorted(len(json.loads(r["custom"])) for r in rows) == [600, 600]
    sheet = openpyxl.load_workbook(io.BytesIO(export(client, tenant, "xlsx").content)).active
    cells = list(sheet.iter_rows(values_only=True))
    assert list(cells[0][len(FIELDS) :]) == ["custom", *NAMES, *FOLLOW_UP] and len(cells) == 3
    comment = cells[1][FIELDS.index("comment")]
    # cut to a spreadsheet cell's limit of 32,767 characters; the control character is stored in
    # OOXML's escaped form (_x0001_), which spreadsheets decode and openpyxl leaves as is
    assert comment.startswith("control _x0001_ characters and long")
    assert len(comment) == 32767 + len("_x0001_") - 1


def test_csv_with_more_custom_keys_than_one_sql_function_takes(client: TestClient, tenant: Tenant) -> None:
    """150 custom keys: more cells than SQLite's printf() takes in one call (the line is built
    from several calls); every value still lands under its own header."""
    keys = [f"k{i:03d}" for i in range(150)]
    put(
        client,
        tenant,
        [
            {"email": "wide@example.com", "score": 9, "custom": {k: f"v,{k}" for k in keys}},
            {"email": "narrow@example.com", "score": 3, "custom": {"k149": -1}},
        ],
    )
    rows = csv_rows(client, tenant, **ALL)
    by_email = {r["email"]: r for r in rows}
    assert list(rows[0])[len(FIELDS) :] == [*(f"custom.{k}" for k in keys), *NAMES, *FOLLOW_UP]
    assert all(by_email["wide@example.com"][f"custom.{k}"] == f"v,{k}" for k in keys)
    assert by_email["narrow@example.com"]["custom.k149"] == "-1"
    assert by_email["narrow@example.com"]["custom.k000"] == ""


# ------------------------------------------------------------------ names beside the ids (#10)

SECRET_NAMES = ("Elsewhere Ltd", "Ann Elsewhere", "Elsewhere survey")


@pytest.fixture
def named(client: TestClient, tenant: Tenant, other: Tenant) -> dict[str, Any]:
    """Records whose contact, company and survey have names, and ones without: a contact without
    a name, no company, a campaignId that is no survey, and one that is another organization's
    survey. The other organization has a company, a contact with the same address and a survey,
    all named with SECRET_NAMES, which must never appear in this organization's downloads."""
    theirs_company = client.post("/companies", json={"name": SECRET_NAMES[0]}, headers=other.editor).json()
    r = client.post(
        "/endusers",
        json={"email": "ann@example.com", "name": SECRET_NAMES[1], "companyId": theirs_company["_id"]},
        headers=other.editor,
    )
    assert r.status_code in (200, 201), r.text
    theirs_survey = client.post("/v1/nps-surveys", json={"name": SECRET_NAMES[2]}, headers=other.editor)
    assert theirs_survey.status_code == 201, theirs_survey.text
    put(
        client,
        other,
        [
            {
                "email": "ann@example.com",
                "score": 4,
                "cId": theirs_company["_id"],
                "campaignId": theirs_survey.json()["id"],
            }
        ],
    )

    acme = client.post("/companies", json={"name": 'Acme, "the" company'}, headers=tenant.editor).json()[
        "_id"
    ]
    evil = client.post("/companies", json={"name": "=Evil()"}, headers=tenant.editor).json()["_id"]
    for email, name, company in (
        ("ann@example.com", "Ann O'Neil", acme),
        ("bob@example.com", "@bob", evil),
        ("cat@example.com", None, None),  # a contact without a name
    ):
        body = (
            {"email": email, "companyId": company}
            if name is None
            else {"email": email, "name": name, "companyId": company}
        )
        r = client.post("/endusers", json=body, headers=tenant.editor)
        assert r.status_code in (200, 201), r.text
    survey = client.post("/v1/nps-surveys", json={"name": "Pulse Q1"}, headers=tenant.editor).json()["id"]
    ids = put(
        client,
        tenant,
        [
            {
                "email": "ann@example.com",
                "score": 10,
                "cId": acme,
                "campaignId": survey,
                "custom": {"plan": "pro"},
                "dateAnswered": "2026-01-04T10:00:00Z",
            },
            {
                "email": "bob@example.com",
                "score": 7,
                "cId": evil,
                "campaignId": "not-a-survey",
                "dateAnswered": "2026-01-03T10:00:00Z",
            },
            {"email": "cat@example.com", "score": 2, "dateAnswered": "2026-01-02T10:00:00Z"},
            {
                "email": "dan@example.com",  # a new contact, no company, another organization's survey
                "score": 5,
                "campaignId": theirs_survey.json()["id"],
                "dateAnswered": "2026-01-01T10:00:00Z",
            },
        ],
    )
    expected = {  # record id -> (enduserName, companyName, surveyName), None where there is none
        ids[0]: ("Ann O'Neil", 'Acme, "the" company', "Pulse Q1"),
        ids[1]: ("@bob", "=Evil()", None),
        ids[2]: (None, None, None),
        ids[3]: (None, None, None),
    }
    return {"ids": ids, "expected": expected, "survey": survey, "acme": acme}


def _guarded(value: str | None) -> str | None:
    """What a spreadsheet format shows of a text: the formula guard's leading quote."""
    if value is None:
        return None
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _no_secrets(content: bytes) -> None:
    for secret in SECRET_NAMES:
        assert secret.encode() not in content


def test_names_beside_the_ids_in_every_format(
    client: TestClient, tenant: Tenant, other: Tenant, named: dict[str, Any]
) -> None:
    expected: dict[str, tuple[str | None, ...]] = named["expected"]
    ids: list[str] = named["ids"]

    # JSON and NDJSON: the names as they are, null where there is none, after custom
    r = export(client, tenant, "json", **ALL)
    _no_secrets(r.content)
    array = r.json()
    assert [o["_id"] for o in array] == ids
    for obj in array:
        assert list(obj) == [*FIELDS, "custom", *NAMES, *FOLLOW_UP]
        assert tuple(obj[k] for k in NAMES) == expected[obj["_id"]]
        assert all(
            obj[k] not in (obj["_id"], obj["euId"], obj["cId"], obj["campaignId"]) for k in NAMES if obj[k]
        )
    ndjson = export(client, tenant, "ndjson", **ALL).content
    _no_secrets(ndjson)
    assert [json.loads(line) for line in ndjson.splitlines()] == array

    # CSV: the names after the custom columns, formula-guarded, empty where there is none
    r = export(client, tenant, "csv", **ALL)
    _no_secrets(r.content)
    assert next(csv.reader(io.StringIO(r.text))) == [*FIELDS, "custom.plan", *NAMES, *FOLLOW_UP]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["_id"] for row in rows] == ids
    for row in rows:
        assert tuple(row[k] for k in NAMES) == tuple(_guarded(v) or "" for v in expected[row["_id"]])

    # XLSX, read back: the same columns, text cells guarded, blank where there is none
    content = export(client, tenant, "xlsx", **ALL).content
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    cells = list(sheet.iter_rows(values_only=True))
    header = list(cells[0])
    assert header == [*FIELDS, "custom.plan", *NAMES, *FOLLOW_UP]
    assert all(not (isinstance(v, str) and any(s in v for s in SECRET_NAMES)) for row in cells for v in row)
    for row in cells[1:]:
        values = dict(zip(header, row, strict=True))
        assert tuple(values[k] for k in NAMES) == tuple(_guarded(v) for v in expected[values["_id"]])

    # the other organization sees its own names, for its own record only
    theirs = export(client, other, "json", **ALL).json()
    assert [tuple(o[k] for k in NAMES) for o in theirs] == [
        ("Ann Elsewhere", "Elsewhere Ltd", "Elsewhere survey")
    ]


def test_names_follow_the_filters_and_the_sort(
    client: TestClient, tenant: Tenant, named: dict[str, Any]
) -> None:
    rows = csv_rows(client, tenant, companyId=named["acme"], **ALL)
    assert [(r["enduserName"], r["companyName"], r["surveyName"]) for r in rows] == [
        ("Ann O'Neil", 'Acme, "the" company', "Pulse Q1")
    ]
    by_score = csv_rows(client, tenant, sort="score", **ALL)
    assert [r["score"] for r in by_score] == ["2", "5", "7", "10"]
    assert [r["enduserName"] for r in by_score] == ["", "", "'@bob", "Ann O'Neil"]


SURVEY_NAMES = ["surveyName", "enduserName", "companyName"]


def _documented_header(client: TestClient) -> list[str]:
    """The CSV header order the survey export's OpenAPI description gives."""
    doc = client.get("/openapi.json").json()["paths"]["/v1/nps-surveys/{id}/responses/export"]["get"]
    text = " ".join(doc["description"].split())
    listed = text.split("in this order:", 1)[1].split("(the names", 1)[0]
    return re.findall(r"`([^`]+)`", listed)


def test_survey_export_has_the_fields_of_the_responses_api_and_the_names(
    client: TestClient, tenant: Tenant, named: dict[str, Any]
) -> None:
    sid = named["survey"]
    r = client.post(
        f"/v1/nps-surveys/{sid}/responses",
        json={"email": "cat@example.com", "score": 3, "comment": "-meh", "custom": {"seats": 4}},
        headers=tenant.editor,
    )
    assert r.status_code == 201, r.text
    listed = client.get(f"/v1/nps-surveys/{sid}/responses", headers=tenant.viewer).json()["responses"]
    assert len(listed) == 2
    keys = list(listed[0])
    by_id = {o["id"]: o for o in listed}
    expected = {  # response id -> (surveyName, enduserName, companyName)
        named["ids"][0]: ("Pulse Q1", "Ann O'Neil", 'Acme, "the" company'),
        r.json()["id"]: ("Pulse Q1", None, None),
    }
    path = f"/v1/nps-surveys/{sid}/responses/export"

    def download(fmt: str) -> bytes:
        got = client.get(path, params={"format": fmt}, headers=tenant.viewer)
        assert got.status_code == 200, got.text
        _no_secrets(got.content)
        return got.content

    # JSON and NDJSON: the responses API's objects, key for key, then the names
    array = json.loads(download("json"))
    assert [o["id"] for o in array] == [o["id"] for o in listed]  # the same order
    for obj in array:
        assert list(obj) == [*keys, *SURVEY_NAMES, *FOLLOW_UP]
        assert {k: obj[k] for k in keys} == by_id[obj["id"]]
        assert tuple(obj[k] for k in SURVEY_NAMES) == expected[obj["id"]]
    assert [json.loads(line) for line in download("ndjson").splitlines()] == array

    # CSV: the same field names (custom spread over its keys), in the documented order
    text = download("csv").decode()
    header = next(csv.reader(io.StringIO(text)))
    fields = [k for k in keys if k != "custom"]
    assert header == [*fields, "custom.plan", "custom.seats", *SURVEY_NAMES, *FOLLOW_UP]
    assert _documented_header(client) == [*fields, "custom.<key>", *SURVEY_NAMES]
    for row in csv.DictReader(io.StringIO(text)):
        api = by_id[row["id"]]
        assert row["category"] == api["category"] and row["category"] in ("PROMOTER", "DETRACTOR")
        assert row["respondedAt"] == api["respondedAt"] and row["surveyId"] == sid
        assert row["enduserId"] == api["enduserId"] and row["companyId"] == (api["companyId"] or "")
        assert row["comment"] == _guarded(api["comment"] or "")
        assert tuple(row[k] for k in SURVEY_NAMES) == tuple(_guarded(v) or "" for v in expected[row["id"]])

    # XLSX, read back: the same header, typed cells
    sheet = openpyxl.load_workbook(io.BytesIO(download("xlsx"))).active
    cells = list(sheet.iter_rows(values_only=True))
    assert list(cells[0]) == header
    for row in cells[1:]:
        values = dict(zip(header, row, strict=True))
        api = by_id[values["id"]]
        assert values["score"] == api["score"] and isinstance(values["score"], int)
        assert values["category"] == api["category"]
        assert values["respondedAt"].isoformat(timespec="milliseconds") + "Z" == api["respondedAt"]
        assert tuple(values[k] for k in SURVEY_NAMES) == expected[values["id"]]


def test_names_found_again_once_forgotten(
    client: TestClient, tenant: Tenant, named: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV lines that SQLite writes end with names looked up by batch and remembered up to a
    bound; past it, all is forgotten and found again: the same file."""
    from npsd.exports import parallel

    whole = export(client, tenant, "csv", **ALL).content
    monkeypatch.setattr(parallel, "TAILS", 1)
    assert export(client, tenant, "csv", **ALL).content == whole
    assert export(client, tenant, "csv", sort="score", **ALL).content != whole  # another order, same rows
    assert sorted(export(client, tenant, "csv", sort="score", **ALL).content.splitlines()) == sorted(
        whole.splitlines()
    )
