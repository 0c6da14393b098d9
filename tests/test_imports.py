"""Imports of other tools' exports (``npsd import``, ``/v1/imports``) on both databases.

Each layout's fixture file (``tests/data/imports``: BOM, CRLF, quoted line breaks, non-ASCII,
empty comments, a bad score, a missing address) is imported through the real CLI (Typer's
runner against the test database) and read back over HTTP: exact answers, contacts, companies
and roll-ups; a second run creates nothing; a dry run writes nothing. The upload API is driven
over HTTP and its job run by the worker function, checking that the job really ran.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from conftest import Tenant, TestDatabase, assert_error
from invariants import rollup_mismatches
from npsd.app import create_app
from npsd.cli import app as cli_app
from npsd.imports import service as import_service
from npsd.imports.layouts import ImportProblem, Row, RowError, parse
from npsd.kit.jobs import Worker, run_pending
from npsd.kit.models import DataImport, Job

DATA = Path(__file__).parent / "data" / "imports"
EXAMPLE = Path(__file__).parent.parent / "examples" / "import.csv"

# file -> (layout, answers taken: (email, score, comment, dateAnswered, sourceId), errors: (row, column))
EXPECTED: dict[str, tuple[str, list[tuple[str, int, str | None, str, str]], list[tuple[int, str]]]] = {
    "qualtrics.csv": (
        "qualtrics",
        [
            (
                "ana@acme.example",
                10,
                "Great support, quick answers",
                "2024-03-01T16:15:00.000Z",
                "qualtrics:R_1aAnaX",
            ),
            (
                "bjorn@kunde.example",
                6,
                "Zu teuer für uns — die Preise sind gestiegen",
                "2024-03-02T21:00:00.000Z",
                "qualtrics:R_2bBjorn",
            ),
            # 08:00 in Denver on the day summer time began (UTC-6)
            ("chloe@acme.example", 8, None, "2024-03-10T14:00:00.000Z", "qualtrics:R_3cChloe"),
            ("dan@beta.example", 9, "Line one\nLine two", "2024-04-01T18:00:00.000Z", "qualtrics:R_4dDan"),
            (
                "fumiko@nihon.example",
                10,
                "とても良いサービスです",
                "2024-04-04T15:05:00.000Z",
                "qualtrics:R_7gFumiko",
            ),
        ],
        [(8, "RecipientEmail"), (9, "Q1")],
    ),
    "surveymonkey.csv": (
        "surveymonkey",
        [
            (
                "ana@acme.example",
                9,
                "Fast, reliable",
                "2024-03-15T10:05:43.000Z",
                "surveymonkey:114000000001",
            ),
            (
                "aegir@fjord.example",
                3,
                "Support antwortet nie — schade.",
                "2024-03-16T13:33:10.000Z",
                "surveymonkey:114000000002",
            ),
            ("li@acme.example", 10, None, "2024-03-18T23:15:00.000Z", "surveymonkey:114000000004"),
            (
                "nia@beta.example",
                0,
                "Billing was wrong\ntwice",
                "2024-03-20T16:05:00.000Z",
                "surveymonkey:114000000006",
            ),
        ],
        [
            (5, "Email Address"),
            (7, "How likely is it that you would recommend Acme to a friend or colleague?"),
        ],
    ),
    "typeform.csv": (
        "typeform",
        [
            ("ana@acme.example", 10, "Keep it up", "2024-05-01T10:02:00.000Z", "typeform:k3jz9x1a"),
            ("ben@acme.example", 7, None, "2024-05-02T12:03:30.000Z", "typeform:p0q9w8e7"),
            (
                "cara@zeta.example",
                2,
                "L'équipe ne répond jamais.\nVraiment.",
                "2024-05-03T08:04:00.000Z",
                "typeform:z1x2c3v4",
            ),
            (
                "fay@acme.example",
                5,
                "😀 ok, but the app is slow",
                "2024-05-06T18:31:15.000Z",
                "typeform:t5y6u7i8",
            ),
        ],
        [(5, "What's your email address?"), (6, "How likely are you to recommend Acme to a friend?")],
    ),
    "formbricks.csv": (
        "formbricks",
        [
            ("ana@acme.example", 9, "Easy to set up", "2024-06-15T10:00:00.000Z", "formbricks:clxr0a1b2c3"),
            (
                "bo@beta.example",
                4,
                "Zu langsam\nund zu teuer",
                "2024-06-15T11:30:00.000Z",
                "formbricks:clxr0d4e5f6",
            ),
            ("cy@acme.example", 8, "Très bien", "2024-06-17T14:45:00.000Z", "formbricks:clxr0j1k2l3"),
        ],
        [(4, "email"), (6, "1. How likely are you to recommend Acme to a friend or colleague?")],
    ),
    "delighted.json": (
        "delighted",
        [
            ("ana@acme.example", 10, "Love it", "2024-03-01T11:00:00.000Z", "delighted:101"),
            ("gus@beta.example", 6, None, "2024-03-02T11:00:00.000Z", "delighted:102"),
            (
                "doerte@kunde.example",
                8,
                "Schnell & günstig\nDanke!",
                "2024-03-04T11:00:00.000Z",
                "delighted:104",
            ),
        ],
        [(3, "person.email"), (5, "score")],
    ),
    "delighted.csv": (
        "delighted",
        [
            ("ana@acme.example", 10, "Brilliant", "2024-02-01T09:00:00.000Z", "delighted:201"),
            (
                "jules@zeta.example",
                2,
                "Ça ne marche pas\nDu tout",
                "2024-02-02T09:00:00.000Z",
                "delighted:202",
            ),
            ("kim@acme.example", 7, None, "2024-02-03T09:00:00.000Z", "delighted:203"),
        ],
        [(5, "Score")],
    ),
    "npsd.csv": (
        "csv",
        [
            ("ana@acme.example", 9, "Solid product", "2024-01-10T09:00:00.000Z", "crm-1001"),
            ("ben@acme.example", 7, None, "2024-01-11T08:30:00.000Z", "crm-1002"),
            ("ćiril@acme.example", 10, "Odlično — hvala!\nSve radi.", "2024-01-13T00:00:00.000Z", "csv:row-"),
            ("eve@beta.example", 0, "Never again", "2024-01-15T16:45:00.000Z", "csv:row-"),
        ],
        [(4, "email"), (6, "score")],
    ),
}
# companies the rows name (created on first sight), by e-mail
COMPANIES = {
    "typeform.csv": {
        "ana@acme.example": "Acme Corp",
        "ben@acme.example": "Acme Corp",
        "cara@zeta.example": "Zeta GmbH",
        "fay@acme.example": "Acme Corp",
    },
    "delighted.csv": {"ana@acme.example": "Acme Corp", "jules@zeta.example": "Zeta GmbH"},
    "delighted.json": {"ana@acme.example": "Acme Corp", "doerte@kunde.example": "Kunde AG"},
    "npsd.csv": {
        "ana@acme.example": "Acme Corp",
        "ben@acme.example": "Acme Corp",
        "eve@beta.example": "Beta Ltd",
    },
}


@pytest.fixture
def cli_env(database: TestDatabase) -> Iterator[dict[str, str]]:
    """The environment of an ``npsd`` command on the test database."""
    env = {"NPSD_DATABASE_URL": database.url, "NPSD_SECRET_KEY": database.settings.secret_key or ""}
    saved = {k: os.environ.get(k) for k in env}
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def npsd_import(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli_app, ["import", *args], env=env)


def answers(client: Any, tenant: Tenant) -> list[dict[str, Any]]:
    r = client.get(
        "/nps", params={"npsExpiryDay": 0, "limit": 1000, "sort": "dateAnswered"}, headers=tenant.viewer
    )
    assert r.status_code == 200, r.text
    return list(r.json())


def as_tuples(records: list[dict[str, Any]]) -> list[tuple[str, int, str | None, str, str]]:
    return sorted((r["email"], r["score"], r["comment"], r["dateAnswered"], r["sourceId"]) for r in records)


def matches(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    """Equal, where a wanted ``sourceId`` ending in ``row-`` stands for any row hash."""
    if len(got) != len(want):
        return False
    for g, w in zip(got, sorted(want), strict=True):
        if g[:4] != w[:4]:
            return False
        if w[4].endswith("row-") and not (g[4].startswith(w[4]) and len(g[4]) == len(w[4]) + 32):
            return False
        if not w[4].endswith("row-") and g[4] != w[4]:
            return False
    return True


def error_lines(stdout: str) -> list[tuple[int, str]]:
    lines = stdout.splitlines()
    assert lines[0] == "row\tcolumn\tissue", stdout
    found = []
    for line in lines[1:]:
        if "\t" not in line:
            break
        row, column, _issue = line.split("\t")
        found.append((int(row), column))
    return found


# ------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_layout_imports_exactly_once(
    name: str, client: Any, tenant: Tenant, database: TestDatabase, cli_env: dict[str, str]
) -> None:
    layout, want, errors = EXPECTED[name]
    result = npsd_import(cli_env, str(DATA / name), "--org", tenant.name)
    assert result.exit_code == 1, result.output  # the fixture has bad rows: not every row was taken
    assert f": {layout} layout, {len(want) + len(errors)} rows" in result.stderr
    total = len(want) + len(errors)
    assert f"\n{total} of {total} rows\n" in result.stderr  # progress, plain when not a terminal
    assert error_lines(result.stdout) == errors
    summary = result.stdout.strip().splitlines()[-1]
    assert summary == (
        f"rows read {len(want) + len(errors)}, created {len(want)}, updated 0, unchanged 0, errors {len(errors)}"
    )
    records = answers(client, tenant)
    assert matches(as_tuples(records), want), as_tuples(records)
    assert {r["source"] for r in records} == {layout if layout != "csv" else "import"}
    # every answer filed under a contact of its address, with its latest answer
    for email, score, _, _, _ in want:
        found = client.get("/endusers", params={"email": email}, headers=tenant.viewer).json()
        assert len(found) == 1 and found[0]["email"] == email, (email, found)
        assert found[0]["nps"] == score
    companies = {c["name"]: c["_id"] for c in client.get("/companies", headers=tenant.viewer).json()}
    for record in records:
        expected_company = COMPANIES.get(name, {}).get(record["email"])
        assert record["cId"] == (companies[expected_company] if expected_company else None), record
    assert set(companies) == set(COMPANIES.get(name, {}).values())
    assert rollup_mismatches(database.db, tenant.org_id) == []
    metrics = client.get("/v1/nps-surveys/nps-metrics", params={"since": "2020-01-01"}, headers=tenant.viewer)
    assert metrics.json()["totalResponses"] == len(want)

    # the same file again: nothing new, nothing changed
    again = npsd_import(cli_env, str(DATA / name), "--org", tenant.name)
    assert again.exit_code == 1
    assert again.stdout.strip().splitlines()[-1] == (
        f"rows read {len(want) + len(errors)}, created 0, updated 0, unchanged {len(want)}, errors {len(errors)}"
    )
    after = answers(client, tenant)
    assert [(r["_id"], r["__v"], r["updatedAt"]) for r in after] == [
        (r["_id"], r["__v"], r["updatedAt"]) for r in records
    ]
    assert len(client.get("/companies", headers=tenant.viewer).json()) == len(companies)
    assert rollup_mismatches(database.db, tenant.org_id) == []


def test_the_documented_example_is_taken_whole(client: Any, tenant: Tenant, cli_env: dict[str, str]) -> None:
    result = npsd_import(cli_env, str(EXAMPLE), "--org", tenant.org_id, "--from", "csv")  # by id
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "rows read 4, created 4, updated 0, unchanged 0, errors 0"
    records = {r["sourceId"]: r for r in answers(client, tenant)}
    assert records["crm-1001"]["custom"] == {"plan": "Pro", "region": "EMEA"}
    assert records["crm-1002"]["dateAnswered"] == "2024-01-11T08:30:00.000Z"  # +02:00 to UTC
    assert records["crm-1003"]["comment"] == "Too slow.\nAnd the export broke twice."


def test_utf16_and_semicolons_are_read(
    tmp_path: Path, client: Any, tenant: Tenant, cli_env: dict[str, str]
) -> None:
    text = (
        EXAMPLE.read_text(encoding="utf-8").replace(",", ";").replace("Solid product; great", "Solid, great")
    )
    path = tmp_path / "utf16.csv"
    text = "\n\n" + text.replace("ana@acme.example", "ana-at-acme")  # blank lines above the header count
    path.write_bytes(text.encode("utf-16"))  # with its byte-order mark, as spreadsheets write it
    result = npsd_import(cli_env, str(path), "--org", tenant.name)
    assert result.exit_code == 1, result.output
    assert "created 3" in result.stdout
    assert error_lines(result.stdout) == [(4, "email")]
    comments = {r["sourceId"]: r["comment"] for r in answers(client, tenant)}
    assert comments["crm-1003"] == "Too slow.\nAnd the export broke twice."


def test_dry_run_writes_nothing(
    client: Any, tenant: Tenant, database: TestDatabase, cli_env: dict[str, str]
) -> None:
    result = npsd_import(cli_env, str(DATA / "typeform.csv"), "--org", tenant.name, "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines()[-1] == (
        "rows read 6, would be created 4, would be updated 0, unchanged 0, errors 2 "
        "(dry run: nothing was written)"
    )
    assert answers(client, tenant) == []
    assert client.get("/companies", headers=tenant.viewer).json() == []
    assert client.get("/endusers", headers=tenant.viewer).json() == []
    # and a dry run after a real one counts what is there as unchanged
    assert npsd_import(cli_env, str(DATA / "typeform.csv"), "--org", tenant.name).exit_code == 1
    again = npsd_import(cli_env, str(DATA / "typeform.csv"), "--org", tenant.name, "--dry-run")
    assert "would be created 0, would be updated 0, unchanged 4" in again.stdout


def test_an_ambiguous_score_column_is_named_by_the_flag(
    client: Any, tenant: Tenant, cli_env: dict[str, str]
) -> None:
    path = str(DATA / "typeform_two_scores.csv")
    refused = npsd_import(cli_env, path, "--org", tenant.name)
    assert refused.exit_code == 1
    assert "--score-column" in refused.stderr and "is ambiguous" in refused.stderr
    assert "How likely are you to recommend our support team?" in refused.stderr
    assert answers(client, tenant) == []
    wrong = npsd_import(cli_env, path, "--org", tenant.name, "--score-column", "Satisfaction")
    assert wrong.exit_code == 1 and "--score-column: names no column" in wrong.stderr
    taken = npsd_import(
        cli_env,
        path,
        "--org",
        tenant.name,
        "--score-column",
        "How likely are you to recommend our support team?",
    )
    assert taken.exit_code == 0, taken.output
    got = sorted((r["email"], r["score"], r["comment"]) for r in answers(client, tenant))
    assert got == [
        ("amy@acme.example", 4, "Support is slow"),
        ("bob@acme.example", 8, None),
        ("cid@acme.example", 10, "Great people"),
    ]
    # the comment column can be named too
    named = npsd_import(
        cli_env,
        path,
        "--org",
        tenant.name,
        "--score-column",
        "How likely are you to recommend our support team?",
        "--comment-column",
        "Email",
    )
    assert named.exit_code == 0
    assert "updated 3" in named.stdout
    assert {r["comment"] for r in answers(client, tenant)} == {
        "amy@acme.example",
        "bob@acme.example",
        "cid@acme.example",
    }


def test_survey_option_attaches_answers_to_a_survey_of_the_org(
    client: Any, tenant: Tenant, other: Tenant, cli_env: dict[str, str]
) -> None:
    survey = client.post("/v1/nps-surveys", json={"name": "History"}, headers=tenant.editor).json()
    theirs = client.post("/v1/nps-surveys", json={"name": "Theirs"}, headers=other.editor).json()
    path = str(DATA / "formbricks.csv")
    for bad in (theirs["id"], "0123456789abcdef01234567"):
        refused = npsd_import(cli_env, path, "--org", tenant.name, "--survey", bad)
        assert refused.exit_code == 1 and f"no survey {bad}" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    malformed = npsd_import(cli_env, path, "--org", tenant.name, "--survey", "nope")
    assert malformed.exit_code == 1 and "--survey" in malformed.stderr
    unknown_org = npsd_import(cli_env, path, "--org", "no-such-org-" + tenant.name)
    assert unknown_org.exit_code == 1 and "no organization" in unknown_org.stderr
    assert answers(client, tenant) == []
    assert npsd_import(cli_env, path, "--org", tenant.name, "--survey", survey["id"]).exit_code == 1
    assert {r["campaignId"] for r in answers(client, tenant)} == {survey["id"]}
    responses = client.get(f"/v1/nps-surveys/{survey['id']}/responses", headers=tenant.viewer).json()
    assert sorted(r["score"] for r in responses["responses"]) == [4, 8, 9]


def test_an_erased_persons_history_is_not_imported_again(
    tmp_path: Path, client: Any, tenant: Tenant, database: TestDatabase, cli_env: dict[str, str]
) -> None:
    r = client.post("/v1/erasures", json={"email": "ANA@acme.example"}, headers=tenant.admin)
    assert r.status_code == 202, r.text
    run_jobs(database)
    assert client.get(f"/v1/erasures/{r.json()['id']}", headers=tenant.admin).json()["state"] == "done"
    result = npsd_import(cli_env, str(DATA / "typeform.csv"), "--org", tenant.name)
    assert result.exit_code == 1
    errors = result.stdout.splitlines()[1:4]
    assert errors[0].startswith("2\tWhat's your email address?\tbelongs to a person erased on "), errors
    assert "created 3" in result.stdout
    assert "ana@acme.example" not in {r["email"] for r in answers(client, tenant)}
    # an answer given after the erasure is new, and is taken
    later = tmp_path / "later.csv"
    later.write_text("email,score,date\nana@acme.example,9,2199-01-01\n")
    assert npsd_import(cli_env, str(later), "--org", tenant.name).exit_code == 0
    assert [r["score"] for r in answers(client, tenant) if r["email"] == "ana@acme.example"] == [9]


def test_file_problems_are_one_line(tmp_path: Path, tenant: Tenant, cli_env: dict[str, str]) -> None:
    cases = {
        "empty.csv": (b"", "FILE: is empty"),
        "binary.csv": (bytes(range(256)) * 4, "FILE: is not a text file"),
        "latin1.csv": (
            "email,score,comment\nzoë@x.example,9,très bien\n".encode("latin-1"),
            "FILE: is not UTF-8",
        ),
        "unknown.csv": (b"foo,bar\n1,2\n", "--from: cannot be recognised"),
        "no-address.csv": (
            b"#,How likely are you to recommend us?,Submit Date (UTC),Network ID\nt1,9,2024-01-01 10:00:00,n\n",
            "FILE: has no column of e-mail addresses",
        ),
    }
    for filename, (content, message) in cases.items():
        path = tmp_path / filename
        path.write_bytes(content)
        result = npsd_import(cli_env, str(path), "--org", tenant.name)
        assert result.exit_code == 1
        assert message in result.stderr, (filename, result.stderr)
    assert "cannot read" in npsd_import(cli_env, str(tmp_path / "missing.csv"), "--org", tenant.name).stderr
    assert (
        "--from: must be one of"
        in npsd_import(cli_env, str(EXAMPLE), "--org", tenant.name, "--from", "xls").stderr
    )


# ------------------------------------------------------------------------------------------- the API


def upload(client: Any, tenant: Tenant, path: Path | None = None, role: str = "editor", **fields: Any) -> Any:
    files: dict[str, Any] = {}
    if path is not None:
        files["file"] = (path.name, path.read_bytes(), "text/csv")
    return client.post(
        "/v1/imports",
        files=files or None,
        data={k: str(v) for k, v in fields.items()},
        headers=tenant.headers(role),
    )


def run_jobs(database: TestDatabase) -> int:
    total = 0
    while ran := run_pending(database.db):
        total += ran
    return total


def test_upload_runs_as_a_job_with_progress(
    client: Any, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    r = upload(client, tenant, DATA / "qualtrics.csv")
    assert r.status_code == 202, r.text
    created = r.json()
    assert (created["state"], created["layout"], created["rowsTotal"], created["rowsDone"]) == (
        "queued",
        "qualtrics",
        7,
        0,
    )
    assert (created["scoreColumn"], created["commentColumn"], created["filename"]) == (
        "Q1",
        "Q2",
        "qualtrics.csv",
    )
    import_id = created["id"]
    assert client.get(f"/v1/imports/{import_id}", headers=tenant.editor).json()["state"] == "queued"
    assert answers(client, tenant) == []  # nothing before the worker runs
    assert run_jobs(database) >= 1
    done = client.get(f"/v1/imports/{import_id}", headers=tenant.editor).json()
    assert (done["state"], done["rowsDone"], done["created"], done["updated"], done["unchanged"]) == (
        "done",
        7,
        5,
        0,
        0,
    )
    assert done["errorCount"] == 2
    assert [(e["row"], e["column"]) for e in done["errors"]] == [(8, "RecipientEmail"), (9, "Q1")]
    assert done["startedAt"] and done["finishedAt"] and done["reason"] is None
    assert matches(as_tuples(answers(client, tenant)), EXPECTED["qualtrics.csv"][1])
    assert rollup_mismatches(database.db, tenant.org_id) == []
    with database.db.transaction(write=False) as s:
        assert s.scalar(select(DataImport.content).where(DataImport.id == import_id)) is None  # file dropped

    again = upload(client, tenant, DATA / "qualtrics.csv").json()
    run_jobs(database)
    second = client.get(f"/v1/imports/{again['id']}", headers=tenant.editor).json()
    assert (second["state"], second["created"], second["unchanged"], second["errorCount"]) == (
        "done",
        0,
        5,
        2,
    )
    listed = client.get("/v1/imports", headers=tenant.editor)
    assert [i["id"] for i in listed.json()] == [again["id"], import_id]
    assert listed.headers["X-Total-Count"] == "2"
    # another organization sees none of it
    assert_error(client.get(f"/v1/imports/{import_id}", headers=other.admin), 404)
    assert client.get("/v1/imports", headers=other.admin).json() == []
    assert_error(client.get("/v1/imports/nope", headers=tenant.editor), 400, "id")


def test_every_layout_through_the_api(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    ids = {}
    for name, (layout, _, _) in EXPECTED.items():
        r = upload(client, tenant, DATA / name)
        assert r.status_code == 202, r.text
        assert r.json()["layout"] == layout
        ids[name] = r.json()["id"]
    run_jobs(database)
    for name, (_, want, errors) in EXPECTED.items():
        done = client.get(f"/v1/imports/{ids[name]}", headers=tenant.editor).json()
        assert done["state"] == "done", done
        assert [(e["row"], e["column"]) for e in done["errors"]] == errors
        assert done["rowsDone"] == done["rowsTotal"] == len(want) + len(errors)
        assert done["created"] + done["updated"] + done["unchanged"] == len(want), done
    records = answers(client, tenant)
    assert {r["sourceId"] for r in records} >= {
        w[4] for _, want, _ in EXPECTED.values() for w in want if not w[4].endswith("row-")
    }
    assert rollup_mismatches(database.db, tenant.org_id) == []


def test_too_large_an_upload_is_413_and_stores_nothing(tenant: Tenant, database: TestDatabase) -> None:
    small = create_app(database.settings.model_copy(update={"max_body_bytes": 2048}), database.db)
    with TestClient(small) as c:
        big = b"email,score\n" + b"someone@example.com,9\n" * 200
        r = c.post("/v1/imports", files={"file": ("big.csv", big)}, headers=tenant.editor)
        assert_error(r, 413, "body")
        assert c.get("/v1/imports", headers=tenant.editor).json() == []


def test_a_keyed_upload_retried_is_one_import(client: Any, tenant: Tenant) -> None:
    """A client that retries an upload with its ``Idempotency-Key`` (the same bytes) gets the
    first reply back, and one import runs."""
    headers = {
        **tenant.editor,
        "Idempotency-Key": "import-retry",
        "Content-Type": "multipart/form-data; boundary=b0",
    }
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
        + (DATA / "typeform.csv").read_bytes()
        + b"\r\n--b0--\r\n"
    )
    first = client.post("/v1/imports", content=body, headers=headers)
    again = client.post("/v1/imports", content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert [i["id"] for i in client.get("/v1/imports", headers=tenant.editor).json()] == [first.json()["id"]]


def test_the_worker_runs_imports_on_a_thread_of_their_own(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    """The real job worker (as in ``npsd serve``) picks an upload up and finishes it, on the
    ``imports`` pool's thread, so mails and webhooks never wait behind a long import."""
    worker = Worker(database.db, poll_seconds=0.05)
    assert worker.sizes.get("imports") == 1
    worker.start()
    try:
        r = upload(client, tenant, DATA / "surveymonkey.csv").json()
        deadline = time.monotonic() + 60
        state = r
        while state["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            state = client.get(f"/v1/imports/{r['id']}", headers=tenant.editor).json()
    finally:
        worker.stop()
    assert (state["state"], state["created"], state["errorCount"]) == ("done", 4, 2), state


def test_roles(client: Any, tenant: Tenant) -> None:
    assert_error(upload(client, tenant, DATA / "qualtrics.csv", role="viewer"), 403)
    assert_error(client.get("/v1/imports", headers=tenant.viewer), 403)
    assert upload(client, tenant, DATA / "typeform.csv", role="admin").status_code == 202
    assert_error(client.post("/v1/imports", files={"file": ("a.csv", b"x")}), 401)


def test_dry_run_upload_counts_and_writes_nothing(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    r = upload(client, tenant, DATA / "typeform.csv", dryRun="true")
    assert r.status_code == 202 and r.json()["dryRun"] is True
    run_jobs(database)
    done = client.get(f"/v1/imports/{r.json()['id']}", headers=tenant.editor).json()
    assert (done["state"], done["created"], done["errorCount"], done["rowsDone"]) == ("done", 4, 2, 6)
    assert answers(client, tenant) == []
    assert client.get("/companies", headers=tenant.viewer).json() == []


def test_upload_with_a_survey_and_its_deletion_before_the_run(
    client: Any, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    survey = client.post("/v1/nps-surveys", json={"name": "Imported"}, headers=tenant.editor).json()
    theirs = client.post("/v1/nps-surveys", json={"name": "Theirs"}, headers=other.editor).json()
    assert_error(upload(client, tenant, DATA / "formbricks.csv", surveyId=theirs["id"]), 404)
    assert_error(upload(client, tenant, DATA / "formbricks.csv", surveyId="123"), 400, "surveyId")
    ok = upload(client, tenant, DATA / "formbricks.csv", surveyId=survey["id"]).json()
    doomed = client.post("/v1/nps-surveys", json={"name": "Doomed"}, headers=tenant.editor).json()
    failing = upload(client, tenant, DATA / "surveymonkey.csv", surveyId=doomed["id"]).json()
    assert client.delete(f"/v1/nps-surveys/{doomed['id']}", headers=tenant.admin).status_code in (200, 204)
    run_jobs(database)
    assert client.get(f"/v1/imports/{ok['id']}", headers=tenant.editor).json()["created"] == 3
    failed = client.get(f"/v1/imports/{failing['id']}", headers=tenant.editor).json()
    assert failed["state"] == "failed" and doomed["id"] in failed["reason"], failed
    assert {r["campaignId"] for r in answers(client, tenant)} == {survey["id"]}


def test_bad_uploads_are_400_naming_the_field(client: Any, tenant: Tenant) -> None:
    h = tenant.editor
    cases: list[tuple[Any, str]] = [
        (client.post("/v1/imports", json={"file": "x"}, headers=h), "file"),
        (
            client.post(
                "/v1/imports",
                content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nunterminated',
                headers={**h, "Content-Type": "multipart/form-data; boundary=xyz"},
            ),
            "file",
        ),
        (
            client.post(
                "/v1/imports",
                content=b"garbage",
                headers={**h, "Content-Type": "multipart/form-data"},
            ),
            "file",
        ),
        (upload(client, tenant, None, **{"from": "auto"}), "file"),
        (client.post("/v1/imports", data={"file": "a,b"}, headers=h), "file"),
        (upload(client, tenant, DATA / "qualtrics.csv", **{"from": "excel"}), "from"),
        (upload(client, tenant, DATA / "qualtrics.csv", dryRun="maybe"), "dryRun"),
        (upload(client, tenant, DATA / "qualtrics.csv", color="red"), "color"),
        (upload(client, tenant, DATA / "qualtrics.csv", scoreColumn="Q9"), "scoreColumn"),
        (upload(client, tenant, DATA / "qualtrics.csv", commentColumn="Q1"), "commentColumn"),
        (upload(client, tenant, DATA / "typeform_two_scores.csv"), "scoreColumn"),
        (upload(client, tenant, DATA / "typeform.csv", **{"from": "qualtrics"}), "from"),
        (upload(client, tenant, DATA / "qualtrics.csv", **{"from": "surveymonkey"}), "from"),
        (upload(client, tenant, DATA / "delighted.json", scoreColumn="rating"), "scoreColumn"),
    ]
    for response, field in cases:
        body = assert_error(response, 400, field)
        assert body["path"] == "/v1/imports"
    ambiguous = upload(client, tenant, DATA / "typeform_two_scores.csv").json()
    assert "scoreColumn" in ambiguous["message"] and "--score-column" not in ambiguous["message"]
    for name, content in {
        "empty.csv": b"",
        "blank.csv": b"\r\n\r\n",
        "garbage.bin": bytes(range(256)) * 8,
        "latin1.csv": "email,score\nzoë@x.example,9\n".encode("latin-1"),
        "header-only.csv": b"email,score,comment\n",
        "bad.json": b'[{"score": 9,',
    }.items():
        r = client.post("/v1/imports", files={"file": (name, content)}, headers=h)
        assert_error(r, 400, "file")
    assert client.get("/v1/imports", headers=h).json() == []


def test_a_worker_that_dies_mid_import_is_resumed_without_double_counting(
    client: Any, tenant: Tenant, database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_jobs(database)  # other tests' leftovers first: only this import's batches are counted
    monkeypatch.setattr(import_service, "BATCH", 3)
    real = import_service.write_rows
    calls = {"n": 0}

    def dies_on_second_batch(*args: Any) -> Any:
        assert args[1] == tenant.org_id
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(*args)

    monkeypatch.setattr(import_service, "write_rows", dies_on_second_batch)
    r = upload(client, tenant, DATA / "qualtrics.csv").json()
    run_pending(database.db)
    half = client.get(f"/v1/imports/{r['id']}", headers=tenant.editor).json()
    assert (half["state"], half["rowsDone"], half["created"]) == ("running", 3, 3)  # first batch committed
    assert len(answers(client, tenant)) == 3

    def make_due() -> None:
        with database.db.transaction() as s:
            s.execute(
                update(Job)
                .where(Job.org_id == tenant.org_id, Job.kind == import_service.IMPORT_JOB)
                .values(run_at=Job.created_at)
            )

    # a worker holding a stale view (as one whose lease ran out while another moved on) writes
    # its batch, finds the import moved on, and rolls its batch back: nothing is counted twice
    real_claim = import_service._claim
    monkeypatch.setattr(
        import_service, "_claim", lambda db, i: dataclasses.replace(real_claim(db, i), rows_done=0)
    )
    make_due()
    run_pending(database.db)
    assert calls["n"] == 3
    stale = client.get(f"/v1/imports/{r['id']}", headers=tenant.editor).json()
    assert (stale["state"], stale["rowsDone"], stale["created"], stale["unchanged"]) == ("running", 3, 3, 0)
    monkeypatch.setattr(import_service, "_claim", real_claim)
    with database.db.transaction() as s:  # the retry is due now rather than in 10 s
        s.execute(
            update(Job)
            .where(Job.org_id == tenant.org_id, Job.kind == import_service.IMPORT_JOB)
            .values(run_at=Job.created_at)
        )
    run_pending(database.db)
    assert calls["n"] == 5  # batch 1, the failed batch 2, the stale batch 1, then batches 2 and 3
    done = client.get(f"/v1/imports/{r['id']}", headers=tenant.editor).json()
    assert (done["state"], done["rowsDone"], done["created"], done["unchanged"], done["errorCount"]) == (
        "done",
        7,
        5,
        0,
        2,
    )
    assert len(answers(client, tenant)) == 5
    assert rollup_mismatches(database.db, tenant.org_id) == []


# ------------------------------------------------------------------------------- any file at all

HEADERS = [
    "email",
    "score",
    "comment",
    "date",
    "sourceId",
    "custom.x",
    "ResponseId",
    "RecipientEmail",
    "Q1",
    "Q1_NPS_GROUP",
    '{"ImportId":"QID1"}',
    "Respondent ID",
    "Collector ID",
    "End Date",
    "#",
    "Submit Date (UTC)",
    "Network ID",
    "Response ID",
    "Timestamp",
    "Finished",
    "Score",
    "Permalink",
    "How likely are you to recommend us?",
]
CELLS = st.one_of(
    st.sampled_from(HEADERS),
    st.sampled_from(
        ["9", "10 - Extremely likely", "x@y.example", "", "2024-01-01", "1709290800", "99999999999999999"]
    ),
    st.text(max_size=12),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.lists(CELLS, min_size=1, max_size=6), min_size=1, max_size=6),
    layout=st.sampled_from(
        ["auto", "csv", "delighted", "qualtrics", "surveymonkey", "typeform", "formbricks"]
    ),
    raw=st.binary(max_size=64),
)
def test_any_file_is_read_or_refused_by_name(rows: list[list[str]], layout: str, raw: bytes) -> None:
    """Whatever the bytes, parsing ends in rows and row errors or in one ImportProblem naming a
    field the caller can act on; never another exception (which the API would turn into a 500)."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    for data in (buf.getvalue().encode("utf-8"), raw, b"[" + raw, buf.getvalue().encode("utf-16")):
        try:
            parsed = parse(data, layout)
        except ImportProblem as problem:
            assert problem.field in ("file", "from", "scoreColumn", "commentColumn")
            continue
        for entry in parsed.rows:
            if isinstance(entry, Row):
                assert 0 <= entry.item["score"] <= 10 and entry.item["sourceId"]
            else:
                assert isinstance(entry, RowError) and entry.row >= 1
