"""The respondent page in a real browser (headless Chromium through Playwright) against a real
uvicorn server: open the e-mailed link, pick a score, write a comment, see the thank-you page;
the same by keyboard alone; and a phone-sized screen. A failing test leaves a screenshot in
``test-artifacts/``."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import Tenant, TestDatabase
from dashboard import CHROMIUM_ARGS
from mail_helpers import Sink, free_port, part, run_jobs, score_links, smtp_server, unique_email
from npsd.app import create_app
from npsd.kit.config import Settings
from npsd.kit.db import Database

playwright_api = pytest.importorskip("playwright.sync_api")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class Live:
    url: str
    settings: Settings
    db: Database
    sink: Sink


@pytest.fixture(scope="module")
def live(database: TestDatabase) -> Iterator[Live]:
    """npsd served by uvicorn on a free port, on the test database, mailing to a test SMTP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=database.url,
        secret_key=database.settings.secret_key,
        base_url=url,
        worker=False,
        webhook_allow_private=True,
    )
    db = Database(database.url, pool_size=4, settings=settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, db), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with smtp_server(settings) as sink:
            yield Live(url, settings, db, sink)
    finally:
        server.should_exit = True
        thread.join(10)
        db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI is set but Debian's chromium is not installed")
        pytest.skip("chromium is not installed")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def page_for(browser: Any, request: pytest.FixtureRequest, **context_options: Any) -> Iterator[Any]:
    """A fresh page; a screenshot of it goes to test-artifacts/ when the block fails."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(page.content())
        raise
    finally:
        context.close()


def emailed_links(live: Live, tenant: Tenant, **survey: Any) -> tuple[dict[int, str], str, str]:
    """Create a survey and invite one address through the live server, send the mail, and return
    the score links read from it, the address and the survey id."""
    with httpx.Client(base_url=live.url, headers=tenant.editor, timeout=30) as api:
        created = api.post("/v1/nps-surveys", json={"name": "Browser NPS", **survey})
        assert created.status_code == 201, created.text
        address = unique_email("browser")
        invited = api.post(
            f"/v1/nps-surveys/{created.json()['id']}/invitations", json={"recipients": [{"email": address}]}
        )
        assert invited.json()["results"][0]["status"] == "queued", invited.text
    run_jobs(live.db)
    [mail] = live.sink.to(address)
    links = score_links(part(mail, "plain"))
    assert all(url.startswith(live.url + "/r/") for url in links.values())
    return links, address, created.json()["id"]


def record_of(live: Live, tenant: Tenant, address: str) -> dict[str, Any]:
    with httpx.Client(base_url=live.url, headers=tenant.viewer, timeout=30) as api:
        records = api.get("/nps", params={"email": address}).json()
    assert len(records) == 1, records
    return dict(records[0])


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS rgb()/rgba() colours."""

    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def style(page: Any, selector: str, prop: str) -> str:
    return str(page.eval_on_selector(selector, f"e => getComputedStyle(e).{prop}"))


# ----------------------------------------------------------------------------------------------- tests


def test_answer_with_the_mouse(
    live: Live, tenant: Tenant, browser: Any, request: pytest.FixtureRequest
) -> None:
    links, address, _ = emailed_links(live, tenant, thankYouMessage="Thanks from the Acme team!")
    with page_for(browser, request) as page:
        page.goto(links[6])
        assert "Your score of 6 has been recorded" in page.inner_text("[role=status]")
        assert page.is_checked("#score-6")
        assert record_of(live, tenant, address)["score"] == 6

        page.get_by_role("radio", name="9", exact=True).click()  # the number, by its accessible name
        assert page.is_checked("#score-9") and not page.is_checked("#score-6")
        page.fill("#comment", "Great onboarding.\n<b>Really</b> helpful")
        with page.expect_navigation():
            page.get_by_role("button", name="Send").click()
        assert page.inner_text("h1") == "Thank you"
        assert page.inner_text("p.message") == "Thanks from the Acme team!"
    record = record_of(live, tenant, address)
    assert (record["score"], record["comment"], record["source"]) == (
        9,
        "Great onboarding.\n<b>Really</b> helpful",
        "email",
    )


def test_answer_by_keyboard_alone(
    live: Live, tenant: Tenant, browser: Any, request: pytest.FixtureRequest
) -> None:
    links, address, _ = emailed_links(live, tenant)
    with page_for(browser, request) as page:
        page.goto(links[5])
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "score-5"  # Tab enters the scale at the choice
        # the focus is visible: a solid outline around the focused number
        assert style(page, "label[for=score-5]", "outlineStyle") == "solid"
        assert float(style(page, "label[for=score-5]", "outlineWidth").removesuffix("px")) >= 2
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")
        assert page.evaluate("document.activeElement.id") == "score-8"
        assert page.is_checked("#score-8")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "comment"
        page.keyboard.type("Typed without a mouse")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.tagName") == "BUTTON"
        assert style(page, "button", "outlineStyle") == "solid"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.inner_text("h1") == "Thank you"
    record = record_of(live, tenant, address)
    assert (record["score"], record["comment"]) == (8, "Typed without a mouse")


def test_phone_screen_and_contrast(
    live: Live, tenant: Tenant, browser: Any, request: pytest.FixtureRequest
) -> None:
    links, _, _ = emailed_links(live, tenant, language="fr")
    with page_for(
        browser, request, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    ) as page:
        page.goto(links[0].split("?")[0])
        assert page.get_attribute("html", "lang") == "fr"
        assert page.inner_text("legend") == (
            f"Quelle est la probabilité que vous recommandiez {tenant.name} à un ami ou à un collègue ?"
        )
        # nothing wider than the screen; every number is a comfortable touch target
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        heights = page.eval_on_selector_all(
            ".opt label", "els => els.map(e => e.getBoundingClientRect().height)"
        )
        widths = page.eval_on_selector_all(
            ".opt label", "els => els.map(e => e.getBoundingClientRect().width)"
        )
        assert len(heights) == 11 and min(heights) >= 44 and min(widths) >= 44
        # WCAG AA contrast for text: page, numbers, the chosen number, the button
        assert contrast(style(page, "legend", "color"), style(page, "main", "backgroundColor")) >= 4.5
        assert (
            contrast(
                style(page, "label[for=score-3]", "color"),
                style(page, "label[for=score-3]", "backgroundColor"),
            )
            >= 4.5
        )
        page.get_by_role("radio", name="3", exact=True).tap()
        assert page.is_checked("#score-3")
        assert (
            contrast(
                style(page, "label[for=score-3]", "color"),
                style(page, "label[for=score-3]", "backgroundColor"),
            )
            >= 4.5
        )
        assert contrast(style(page, "button", "color"), style(page, "button", "backgroundColor")) >= 4.5
        with page.expect_navigation():
            page.tap("button[type=submit]")
        assert page.inner_text("h1") == "Merci"
