"""The dashboard's data pages: ``/app/imports`` (admins and editors) and ``/app/settings/erasures``
(admins), on both databases.

Over HTTP (a client with a session cookie, like a browser without JavaScript): an upload of the
documented example through the form, its job run by the worker function and its page showing
the same figures as ``GET /v1/imports/{id}``; every malformed field named next to it with nothing
stored; roles, CSRF and another organization's ids. In a real browser: the example file chosen
and uploaded, the progress block polling by itself until the import is done; an erasure
requested and seen done.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from conftest import Tenant, TestDatabase, post_nps
from dashboard import Person, Site, csrf_of, make_user, page_for, serious_violations, sign_in
from mail_helpers import run_jobs
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.models import DataImport, Organization, User
from npsd.web.session import SESSION_COOKIE

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "import.csv"


# ------------------------------------------------------------------------------------------ set-up


def session_token(database: TestDatabase, person: Person) -> str:
    """A dashboard session for ``person`` (the sign-in form has tests of its own)."""
    with database.db.transaction() as session:
        org = session.get_one(Organization, person.org_id)
        user = session.get_one(User, person.user_id)
        issued = auth_service.create_token(
            session, database.settings, org, user.role, timedelta(hours=1), user=user, kind="session"
        )
    return issued.token


def browser(app: Any, database: TestDatabase, person: Person | None = None) -> TestClient:
    """An HTTP client that behaves like a browser without JavaScript: cookies, no redirects followed."""
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    if person is not None:
        client.cookies.set(SESSION_COOKIE, session_token(database, person))
    return client


def people(database: TestDatabase, tenant: Tenant) -> dict[str, Person]:
    return {role: make_user(database.db, tenant.org_id, role) for role in ("admin", "editor", "viewer")}


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def imports_stored(database: TestDatabase, org_id: str) -> int:
    with database.db.transaction(write=False) as session:
        return int(
            session.scalar(select(func.count()).select_from(DataImport).where(DataImport.org_id == org_id))
            or 0
        )


def post_import(client: TestClient, data: bytes | None, filename: str = "import.csv", **fields: str) -> Any:
    token = csrf_of(client.get("/app/imports").text)
    files = {"file": (filename, data, "text/csv")} if data is not None else None
    return client.post("/app/imports", data={"csrf_token": token, **fields}, files=files)


def figure(html: str, name: str) -> int:
    match = re.search(rf'<dd data-count="{name}">(\d+)</dd>', html)
    assert match, f"no {name} figure on the page"
    return int(match.group(1))


# ------------------------------------------------------------------------------------------ imports


def test_an_upload_through_the_form_runs_as_the_apis_import(
    app: Any, client: Any, database: TestDatabase, tenant: Tenant
) -> None:
    editor = browser(app, database, people(database, tenant)["editor"])
    assert '<a href="/app/imports">' in editor.get("/app/surveys").text  # where editors find it
    r = post_import(editor, EXAMPLE.read_bytes(), **{"from": "csv"})
    assert r.status_code == 303, r.text
    match = re.fullmatch(r"/app/imports/([0-9a-f]{24})", r.headers["location"])
    assert match
    import_id = match.group(1)

    queued = editor.get(f"/app/imports/{import_id}").text
    assert 'data-state="queued"' in queued
    assert f'hx-get="/app/imports/{import_id}/progress"' in queued  # it follows the job
    assert "Rows done: 0 of 4" in queued
    assert client.get("/nps", headers=tenant.admin).json() == []  # nothing before the worker runs

    assert run_jobs(database.db) >= 1
    block = editor.get(f"/app/imports/{import_id}/progress")
    assert block.status_code == 200
    assert "<html" not in block.text  # the block alone, for the poll to swap in
    api = client.get(f"/v1/imports/{import_id}", headers=tenant.editor).json()
    assert (api["state"], api["rowsDone"], api["created"], api["errorCount"]) == ("done", 4, 4, 0)
    assert 'data-state="done"' in block.text and "hx-get" not in block.text  # the poll stops
    assert "Rows done: 4 of 4" in block.text
    assert [figure(block.text, n) for n in ("created", "updated", "unchanged", "errors")] == [4, 0, 0, 0]
    every = client.get("/nps", params={"npsExpiryDay": 0, "limit": 100}, headers=tenant.admin).json()
    source_ids = sorted(r["sourceId"] for r in every)
    assert source_ids[:3] == ["crm-1001", "crm-1002", "crm-1003"] and len(source_ids) == 4

    listing = editor.get("/app/imports").text
    assert f'href="/app/imports/{import_id}"' in listing and "import.csv" in listing
    assert "4 of 4" in listing

    # the same file again, as a dry run: counted as unchanged, nothing written
    again = post_import(editor, EXAMPLE.read_bytes(), dryRun="true")
    assert again.status_code == 303
    run_jobs(database.db)
    page = editor.get(again.headers["location"]).text
    assert "Dry run" in page and 'data-state="done"' in page
    assert [figure(page, n) for n in ("created", "updated", "unchanged")] == [0, 0, 4]


def test_rows_not_taken_are_listed_with_row_column_and_reason(
    app: Any, database: TestDatabase, tenant: Tenant
) -> None:
    editor = browser(app, database, people(database, tenant)["editor"])
    data = b"email,score,comment\nok@example.com,9,fine\nnot-an-address,8,\nbad@example.com,11,too high\n"
    r = post_import(editor, data, filename="mixed.csv")
    assert r.status_code == 303
    run_jobs(database.db)
    page = editor.get(r.headers["location"]).text
    assert figure(page, "created") == 1 and figure(page, "errors") == 2
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td class=\"comment\">([^<]*)</td></tr>", page)
    assert [(row, column) for row, column, _ in rows] == [("3", "email"), ("4", "score")]
    assert "not a valid e-mail address" in rows[0][2]


def test_bad_fields_are_named_next_to_them_and_nothing_is_stored(
    app: Any, database: TestDatabase, tenant: Tenant, other: Tenant
) -> None:
    editor = browser(app, database, people(database, tenant)["editor"])
    theirs = TestClient(app).post("/v1/nps-surveys", json={"name": "theirs"}, headers=other.admin).json()
    csv = EXAMPLE.read_bytes()
    cases: list[tuple[bytes | None, dict[str, str], str, str]] = [
        (None, {}, "file", "Choose the file"),
        (csv, {"from": "excel"}, "from", "Choose one of the layouts"),
        (csv, {"surveyId": "nope"}, "surveyId", "Choose one of the surveys"),
        (csv, {"surveyId": theirs["id"]}, "surveyId", "no longer exists"),  # another org's survey
        (csv, {"dryRun": "maybe"}, "dryRun", "Tick the box"),
        (csv, {"scoreColumn": "x" * 501}, "scoreColumn", "At most 500"),
        (csv, {"from": "qualtrics"}, "from", ""),  # the file is not a Qualtrics export
        (b"\xff\xfe\x00\xd8garbage", {}, "file", ""),
        (b"a,b\n1,2\n", {}, "file", ""),  # no layout recognised
        (b"email,nps,other\nx@example.com,9,3\n", {"from": "csv", "scoreColumn": "missing"}, "", ""),
        (csv, {"commentColumn": "bad\x00name"}, "commentColumn", "NUL"),
    ]
    for data, fields, name, text in cases:
        r = post_import(editor, data, **fields)
        assert r.status_code == 400, (fields, r.status_code, r.text[:300])
        if name:
            assert text in field_error(r.text, name), (fields, name, r.text[-2000:])
        else:  # the parser names the field: some error is shown next to a field or on top
            assert '<p class="error' in r.text, fields
        assert "<h1>Imports</h1>" in r.text  # the form again, with what was chosen
    assert imports_stored(database, tenant.org_id) == 0


def test_roles_csrf_and_other_organizations(
    app: Any, client: Any, database: TestDatabase, tenant: Tenant, other: Tenant
) -> None:
    mine = people(database, tenant)
    viewer = browser(app, database, mine["viewer"])
    home = viewer.get("/app/surveys").text
    assert '<a href="/app/imports"' not in home
    token = csrf_of(home)
    assert viewer.get("/app/imports").status_code == 403
    r = viewer.post(
        "/app/imports",
        data={"csrf_token": token},
        files={"file": ("a.csv", EXAMPLE.read_bytes(), "text/csv")},
    )
    assert r.status_code == 403
    editor = browser(app, database, mine["editor"])
    assert editor.get("/app/settings/erasures").status_code == 403
    assert editor.get("/app/settings/erasures/table").status_code == 403
    r = editor.post("/app/settings/erasures", data={"csrf_token": token, "email": "x@example.com"})
    assert r.status_code == 403
    # without the CSRF token: refused before any work
    r = editor.post("/app/imports", files={"file": ("a.csv", EXAMPLE.read_bytes(), "text/csv")})
    assert r.status_code == 403
    admin = browser(app, database, mine["admin"])
    r = admin.post("/app/settings/erasures", data={"email": "x@example.com"})
    assert r.status_code == 403
    assert imports_stored(database, tenant.org_id) == 0
    assert client.get("/v1/erasures", headers=tenant.admin).json() == []
    # without a session: the sign-in page
    anonymous = browser(app, database)
    assert anonymous.get("/app/imports").headers["location"].startswith("/app/login")

    # another organization's import is a 404 like an unknown one; a malformed id a 400
    theirs = client.post(
        "/v1/imports", files={"file": ("theirs.csv", EXAMPLE.read_bytes(), "text/csv")}, headers=other.editor
    ).json()
    for path in (f"/app/imports/{theirs['id']}", f"/app/imports/{theirs['id']}/progress"):
        r = admin.get(path)
        assert r.status_code == 404 and "theirs.csv" not in r.text, path
    assert "theirs.csv" not in admin.get("/app/imports").text
    assert admin.get("/app/imports/not-an-id").status_code == 400
    assert admin.get("/app/imports?page=0").status_code == 400


def test_a_file_over_the_body_limit_is_refused_whole(database: TestDatabase, tenant: Tenant) -> None:
    small = create_app(database.settings.model_copy(update={"max_body_bytes": 4096}), database.db)
    editor = browser(small, database, people(database, tenant)["editor"])
    r = post_import(editor, b"email,score\n" + b"someone@example.com,9\n" * 400)
    assert r.status_code == 413  # refused before it is read, like the API's upload
    assert imports_stored(database, tenant.org_id) == 0


# ----------------------------------------------------------------------------------------- erasures


def test_an_erasure_requested_on_the_page_runs_and_is_listed(
    app: Any, client: Any, database: TestDatabase, tenant: Tenant, other: Tenant
) -> None:
    address = f"gone-{secrets.token_hex(4)}@example.com"
    for score in (3, 9):
        post_nps(client, tenant, address, score)
    post_nps(client, tenant, "stays@example.com", 10)
    admin = browser(app, database, people(database, tenant)["admin"])
    page = admin.get("/app/settings/erasures").text
    assert "No erasures yet." in page
    assert 'href="/app/settings/erasures" aria-current="true"' in page

    bad = admin.post("/app/settings/erasures", data={"csrf_token": csrf_of(page), "email": "not an address"})
    assert bad.status_code == 400 and field_error(bad.text, "email")
    assert 'value="not an address"' in bad.text
    for wrong in ("", "a\x00b@example.com", "x" * 400 + "@example.com", "<b>@example.com"):
        bad = admin.post("/app/settings/erasures", data={"csrf_token": csrf_of(page), "email": wrong})
        assert bad.status_code == 400 and field_error(bad.text, "email"), repr(wrong)
    assert client.get("/v1/erasures", headers=tenant.admin).json() == []

    r = admin.post("/app/settings/erasures", data={"csrf_token": csrf_of(page), "email": address.upper()})
    assert r.status_code == 303 and r.headers["location"] == "/app/settings/erasures?requested=1"
    listed = admin.get(r.headers["location"]).text
    assert "The erasure was requested" in listed and 'data-state="queued"' in listed
    assert 'hx-get="/app/settings/erasures/table?page=1"' in listed  # the table follows it
    assert address not in listed.lower()
    run_jobs(database.db)
    table = admin.get("/app/settings/erasures/table").text
    assert "<html" not in table and 'data-state="done"' in table
    assert "hx-get" not in table  # nothing under way: the poll stops
    done = admin.get("/app/settings/erasures").text
    assert 'data-state="done"' in done
    api = client.get("/v1/erasures", headers=tenant.admin).json()
    assert [(e["state"], e["counts"]["answers"], e["counts"]["contacts"]) for e in api] == [("done", 2, 1)]
    assert [r["email"] for r in client.get("/nps", headers=tenant.admin).json()] == ["stays@example.com"]
    # the other organization sees none of it
    assert client.get("/v1/erasures", headers=other.admin).json() == []


# ------------------------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def site_people(site: Site) -> dict[str, Person]:
    with site.db.transaction() as session:
        org_id = auth_service.ensure_org(session, "data-" + secrets.token_hex(4)).id
    return {role: make_user(site.db, org_id, role) for role in ("admin", "editor")}


def test_browser_an_import_is_uploaded_and_followed_until_done(
    site: Site, chromium: Any, site_people: dict[str, Person], request: pytest.FixtureRequest
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, site_people["editor"], "/app/surveys")
        page.get_by_role("link", name="Import answers from another tool").click()
        assert page.inner_text("h1") == "Imports"
        assert serious_violations(page) == []
        page.get_by_label("File", exact=True).set_input_files(str(EXAMPLE))
        page.get_by_label("Layout").select_option("csv")
        with page.expect_navigation():
            page.get_by_role("button", name="Start import").click()
        assert page.inner_text("h1") == "Import of import.csv"
        assert page.locator("[data-state]").get_attribute("data-state") == "queued"
        assert serious_violations(page) == []
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if r.url.endswith("/progress") else None)
        assert run_jobs(site.db) >= 1  # the worker, here in the test's thread
        page.wait_for_selector('[data-state="done"]', timeout=15_000)  # swapped in by the poll
        assert polls, "the page did not poll for its progress"
        assert page.locator('[data-count="created"]').inner_text() == "4"
        assert "Rows done: 4 of 4" in page.inner_text("#import-progress")
        count = len(polls)
        page.wait_for_timeout(4500)
        assert len(polls) == count  # done: the poll stopped
        assert serious_violations(page) == []


def test_browser_an_erasure_is_requested(
    site: Site, chromium: Any, site_people: dict[str, Person], request: pytest.FixtureRequest
) -> None:
    with page_for(chromium, site, request) as page:
        sign_in(page, site, site_people["admin"], "/app/settings")
        page.get_by_role("navigation", name="Settings sections").get_by_role("link", name="Erasures").click()
        assert page.inner_text("h1") == "Erasures"
        assert serious_violations(page) == []
        page.get_by_label("Email").fill("someone@example.com")
        with page.expect_navigation():
            page.get_by_role("button", name="Erase this person").click()
        assert "The erasure was requested" in page.inner_text("main")
        assert "someone@example.com" not in page.content()
        assert page.locator("td[data-state]").first.get_attribute("data-state") == "queued"
        run_jobs(site.db)
        page.wait_for_selector('td[data-state="done"]', timeout=15_000)  # swapped in by the poll
        assert serious_violations(page) == []
