"""A walk through every dashboard page on the demo organization's data, as an admin and as a
viewer, in Chromium: each page has one h1 and the navigation the issue names, no serious or
critical accessibility violation (axe-core), no request leaving npsd and no CSP violation
(``page_for`` checks both), a skip link that works by keyboard; the viewer sees no control it may
not use; another organization's admin gets a 404 page for every object of this one."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import TestDatabase
from dashboard import Person, Site, make_user, page_for, serious_violations, sign_in
from npsd import demo
from npsd.auth import service as auth_service


@dataclass
class Demo:
    org_id: str
    admin: Person
    viewer: Person


@pytest.fixture(scope="module")
def demo_org(site: Site, database: TestDatabase) -> Iterator[Demo]:
    with site.db.transaction() as session:
        built = demo.build(session, site.settings, org_name=f"walk-{secrets.token_hex(4)}", seed=3)
    yield Demo(
        built.org_id,
        make_user(site.db, built.org_id, "admin"),
        make_user(site.db, built.org_id, "viewer"),
    )


def first_link(page: Any, prefix: str) -> str:
    """The first link on the page to an object under ``prefix`` (``/app/surveys/``...)."""
    hrefs = page.locator(f"main a[href^='{prefix}']").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    found = [h.split("?")[0] for h in hrefs if re.fullmatch(re.escape(prefix) + r"[0-9a-f]{24}(\?.*)?", h)]
    assert found, f"no link to {prefix}... on {page.url}"
    return str(found[0])


# every control a mouse can use: a keyboard must reach it too
CONTROLS = (
    "a[href], button:not(:disabled), input:not([type=hidden]):not(:disabled), select, textarea, summary"
)


def out_of_keyboard_reach(page: Any) -> list[str]:
    """The visible controls of the page that the Tab key cannot reach: not focusable, or taken
    out of the tab order (a negative tabindex). Chart bars (SVG links) included; what a closed
    <details> holds counts once it is opened (its summary is reached)."""
    return list(
        page.locator(CONTROLS).evaluate_all(
            """els => els
                .filter(e => e.getClientRects().length > 0)
                .filter(e => e.tagName === "SUMMARY" || !e.closest("details:not([open])"))
                .filter(e => { e.focus(); return document.activeElement !== e || e.tabIndex < 0; })
                .map(e => e.outerHTML.slice(0, 120))"""
        )
    )


def check_page(page: Any, nav: list[str]) -> None:
    assert page.locator("h1").count() == 1, page.url
    assert out_of_keyboard_reach(page) == [], page.url
    names = page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()
    assert names == nav, page.url
    assert page.get_by_role("button", name="Sign out").count() == 1
    assert serious_violations(page) == [], page.url


def walk(page: Any, site: Site, nav: list[str]) -> list[str]:
    """Visit every page the navigation reaches and one object of each kind; the paths visited."""
    visited = []
    for path in ("/app", "/app/surveys", "/app/responses", "/app/companies"):
        page.goto(site.url + path)
        check_page(page, nav)
        visited.append(path)
    page.goto(site.url + "/app/surveys")
    survey = first_link(page, "/app/surveys/")
    page.goto(site.url + "/app/companies")
    company = first_link(page, "/app/companies/")
    page.goto(site.url + company)
    contact = first_link(page, "/app/contacts/")
    for path in (survey, company, contact, "/app/responses?category=detractor&search=support"):
        page.goto(site.url + path)
        check_page(page, nav)
        visited.append(path)
    return visited


def test_every_page_as_an_admin(
    site: Site, chromium: Any, demo_org: Demo, request: pytest.FixtureRequest
) -> None:
    nav = ["Overview", "Surveys", "Responses", "Themes", "Companies", "Settings"]
    with page_for(chromium, site, request) as page:
        sign_in(page, site, demo_org.admin)
        walk(page, site, nav)
        for path in ("/app/settings", "/app/surveys/new"):
            page.goto(site.url + path)
            check_page(page, nav)
        page.goto(site.url + "/app/settings")
        for link in page.locator("main a[href^='/app/settings/']").evaluate_all(
            "els => [...new Set(els.map(e => e.getAttribute('href')))]"
        ):
            page.goto(site.url + link)
            check_page(page, nav)
        # the skip link is the first stop of the keyboard and leads into the main content
        page.goto(site.url + "/app")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("location.hash") == "#main"


def test_every_page_as_a_viewer_shows_only_what_a_viewer_may_do(
    site: Site, chromium: Any, demo_org: Demo, request: pytest.FixtureRequest
) -> None:
    nav = ["Overview", "Surveys", "Responses", "Themes", "Companies"]
    with page_for(chromium, site, request) as page:
        sign_in(page, site, demo_org.viewer)
        visited = walk(page, site, nav)
        survey = next(p for p in visited if p.startswith("/app/surveys/"))
        page.goto(site.url + survey)
        for control in ("Send invitations", "Deactivate", "Activate", "Send reminders now"):
            assert page.get_by_role("button", name=control, exact=True).count() == 0, control
        assert page.get_by_label("Recipients").count() == 0
        # reading stays possible: the downloads are there
        for name in ("CSV", "XLSX", "JSON", "NDJSON"):
            assert page.get_by_role("link", name=name, exact=True).count() == 1, name
        page.goto(site.url + "/app/surveys")
        assert page.get_by_role("link", name="New survey").count() == 0
        response = page.goto(site.url + "/app/settings")
        assert response is not None and response.status == 403


def test_another_organization_meets_404_pages_for_all_of_it(
    site: Site, chromium: Any, demo_org: Demo, request: pytest.FixtureRequest
) -> None:
    with site.db.transaction() as session:
        stranger_org = auth_service.ensure_org(session, f"stranger-{secrets.token_hex(4)}").id
    stranger = make_user(site.db, stranger_org, "admin")
    with page_for(chromium, site, request) as page:
        sign_in(page, site, demo_org.admin)
        visited = walk(page, site, ["Overview", "Surveys", "Responses", "Themes", "Companies", "Settings"])
        objects = [p for p in visited if re.fullmatch(r"/app/(surveys|companies|contacts)/[0-9a-f]{24}", p)]
        assert len(objects) == 3
    with page_for(chromium, site, request) as page:
        sign_in(page, site, stranger)
        for path in objects + [p + "/edit" for p in objects if "/surveys/" in p]:
            response = page.goto(site.url + path)
            assert response is not None and response.status == 404, path
            assert page.inner_text("h1") == "Not found"
        # their own overview counts nothing of the demo's
        page.goto(site.url + "/app?period=all")
        assert "walk-" not in page.content()
