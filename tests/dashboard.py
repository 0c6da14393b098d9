"""Helpers for the dashboard's tests: a live server, users, signing in, the browser, the checks
every page must pass (no request to another host, no serious accessibility violation).

The fixtures that use them (``site``, ``chromium``) are in conftest.py.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from mail_helpers import Sink, free_port, smtp_server
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.models import Organization

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "correct horse battery staple"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Site:
    """npsd served by uvicorn on a free port, on the test database, mailing to a test SMTP server."""

    url: str
    settings: Settings
    db: Database
    sink: Sink
    app: Any


@contextmanager
def serve(database_url: str, secret_key: str | None, **overrides: Any) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    overrides.setdefault("insights", False)  # the tests that read comments ask for it
    settings = Settings(
        database_url=database_url,
        secret_key=secret_key,
        base_url=url,
        worker=False,
        webhook_allow_private=True,
        **overrides,
    )
    db = Database(database_url, pool_size=4, settings=settings)
    app = create_app(settings, db)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with smtp_server(settings) as sink:
            yield Site(url, settings, db, sink, app)
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


@dataclass
class Person:
    """A dashboard user: address, password and role, in the organization ``org_id``."""

    email: str
    password: str
    role: str
    org_id: str
    user_id: str


def make_user(db: Database, org_id: str, role: str, email: str | None = None) -> Person:
    """A user of the organization, as ``npsd user create`` makes them."""
    email = email or f"{role}-{secrets.token_hex(4)}@example.com"
    with db.transaction() as session:
        org = session.get(Organization, org_id)
        assert org is not None
        user = auth_service.create_user(session, org, email, role, PASSWORD)
        user_id = user.id
    return Person(email, PASSWORD, role, org_id, user_id)


def signed_in_client(site: Site, person: Person) -> httpx.Client:
    """An HTTP client with a dashboard session (it signs in through the form, as a browser does)."""
    client = httpx.Client(base_url=site.url, timeout=30, follow_redirects=False)
    form = client.get("/app/login")
    token = csrf_of(form.text)
    r = client.post(
        "/app/login", data={"email": person.email, "password": person.password, "csrf_token": token}
    )
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def launch_chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI is set but Debian's chromium is not installed")
        pytest.skip("chromium is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Traffic:
    """Every request a page made, and the console errors (a CSP violation is one)."""

    origin: str
    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests that left npsd (data: and blob: URLs stay in the page)."""
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "blob", "about")
            and f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" != self.origin
        ]


def save_artifacts(page: Any, name: str, html: str | None = None) -> None:
    """A failed browser test's screenshot and HTML (``html``, else the page's) in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(page.content() if html is None else html)
    except Exception:  # the page may be gone; the original failure matters
        pass


@contextmanager
def page_for(
    browser: Any, site: Site, request: pytest.FixtureRequest, **context_options: Any
) -> Iterator[Any]:
    """A fresh page; its traffic is recorded (``page.traffic``), and must stay on npsd and free of
    console errors; a screenshot goes to test-artifacts/ when the block fails."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    traffic = Traffic(site.url)
    page.on("request", lambda r: traffic.urls.append(r.url))
    page.on("console", lambda m: traffic.console_errors.append(m.text) if m.type == "error" else None)
    page.traffic = traffic
    try:
        yield page
        assert traffic.foreign() == [], f"requests left npsd: {traffic.foreign()}"
        assert [e for e in traffic.console_errors if "Content Security Policy" in e or "Refused" in e] == []
    except BaseException:
        save_artifacts(page, request.node.name)
        raise
    finally:
        context.close()


def sign_in(page: Any, site: Site, person: Person, next_path: str = "/app") -> None:
    """Sign in through the form, by the labels the issue names."""
    page.goto(site.url + next_path)
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the current page (axe-playwright-python)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    found = results.response.get("violations", [])
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v.get("impact") in ("serious", "critical")
    ]
