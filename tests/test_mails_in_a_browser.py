"""The HTML of npsd's mails as a mail client shows it (issue #12: "the mails and pages in a real
browser"): a branded invitation in German, its reminder and a digest, each taken from the real test
SMTP server and loaded into headless Chromium with ``page.set_content``.

A mail client runs no script and, by default, loads nothing; a mail must not need to either. Every
request the rendered mail makes is recorded and refused, except the organization's logo, the one
image a branded mail may show (answered here with a small PNG so that it renders). Alert mails are
plain text only (``alerts/delivery.py::compose``), so there is no HTML of theirs to render.

The checks read the rendered page: its language, the visible question, the score links and where
they lead, the unsubscribe link, the brand colour as computed, the digest's NPS against the metrics
API, axe-core's serious and critical findings, and the width on a 375 px wide phone. A failing test
leaves a screenshot and the HTML in ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import Tenant, TestDatabase, metrics_for, post_nps
from dashboard import save_artifacts, serious_violations
from mail_helpers import (
    CUSTOM,
    Sink,
    custom_survey,
    days_pass,
    invite_one,
    local,
    make_survey,
    part,
    run_jobs,
    score_links,
    unique_email,
    unsubscribe_url,
)
from npsd.kit.timeutil import utcnow

pytest.importorskip("playwright.sync_api")

LOGO = "https://cdn.acme.example/logo.png"
# a 1x1 PNG: what the logo's host answers in these tests
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
BRAND = "#7a1f5c"
BRAND_RGB = "rgb(122, 31, 92)"
DE = {
    "question": "Wie wahrscheinlich empfehlen Sie das Onboarding von Acme weiter?",
    "followUpQuestion": "Was hat Ihnen gefehlt?",
    "thankYouMessage": "Danke, das hilft uns sehr!",
}
INTRO_DE = "Wir würden uns über Ihre Meinung freuen. Ein Klick genügt:"
REMINDER_INTRO_DE = "Vor einigen Tagen haben wir Sie um Ihre Meinung gebeten."
SCALE_DE = ("Überhaupt nicht wahrscheinlich", "Äußerst wahrscheinlich")
PHONE = {"width": 375, "height": 800}


# ------------------------------------------------------------------------------------------ helpers


@contextmanager
def mail_page(
    chromium: Any,
    html: str,
    request: pytest.FixtureRequest,
    *,
    allowed: tuple[str, ...] = (),
    label: str = "mail",
) -> Iterator[tuple[Any, list[str]]]:
    """The mail's HTML in a fresh phone-sized page with scripts off, as a mail client shows it;
    yields the page and every URL it tried to load. Only ``allowed`` URLs are answered (with a
    PNG), everything else is refused."""
    context = chromium.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    requested: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        requested.append(url)
        if url in allowed:
            route.fulfill(status=200, content_type="image/png", body=PNG)
        else:
            route.abort()

    page.route("**/*", handle)
    try:
        page.set_content(html, wait_until="load")
        yield page, requested
    except BaseException:
        save_artifacts(page, f"{request.node.name}_{label}", html)
        raise
    finally:
        context.close()


def axe_findings(chromium: Any, html: str) -> list[str]:
    """axe-core runs as a script, so it gets a page of its own with scripts on (the mail has none)."""
    context = chromium.new_context(viewport=PHONE)
    page = context.new_page()
    page.route("**/*", lambda route: route.abort())  # the logo stays out: its alt text is what counts
    try:
        page.set_content(html, wait_until="load")
        return serious_violations(page)
    finally:
        context.close()


def computed(locator: Any, prop: str) -> str:
    value: str = locator.evaluate("(el, p) => getComputedStyle(el).getPropertyValue(p)", prop)
    return value


def text_box(locator: Any) -> dict[str, float]:
    """Where an element's text is drawn (its box may be wider than the words)."""
    box: dict[str, float] = locator.evaluate(
        """el => { const range = document.createRange(); range.selectNodeContents(el);
            const r = range.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top}; }"""
    )
    return box


def too_wide(page: Any, limit: int) -> list[str]:
    """Elements of the rendered mail wider than ``limit`` px."""
    found: list[str] = page.evaluate(
        """limit => [...document.querySelectorAll('body, body *')]
            .filter(el => el.getBoundingClientRect().width > limit)
            .map(el => `${el.tagName.toLowerCase()} ${Math.round(el.getBoundingClientRect().width)}px`)""",
        limit,
    )
    return found


def put_profile(client: Any, tenant: Tenant, **fields: Any) -> None:
    r = client.put("/v1/organization", json={"name": tenant.name, **fields}, headers=tenant.admin)
    assert r.status_code == 200, r.text


# -------------------------------------------------------------------------------------- invitations


def check_invitation(page: Any, mail: Any, base: str, tenant: Tenant, intro: str) -> dict[int, str]:
    """What a German recipient sees of a branded invitation or reminder; returns the score links."""
    assert page.evaluate("document.documentElement.lang") == "de"
    assert page.title() == str(mail["Subject"])
    assert page.evaluate("document.scripts.length") == 0
    assert page.get_by_text("Hallo Ann,", exact=True).is_visible()
    assert page.get_by_text(intro).is_visible()
    assert page.get_by_text(DE["question"], exact=True).is_visible()
    assert page.get_by_text(CUSTOM).count() == 0  # one language, never a mix

    # the 11 score links: visible, in order, each to the server's respondent page with its score
    hrefs: dict[int, str] = {}
    for n in range(11):
        link = page.get_by_role("link", name=str(n), exact=True)
        assert link.count() == 1, n
        assert link.is_visible(), n
        box = link.bounding_box()
        assert box is not None and box["width"] >= 20 and box["height"] >= 24, (n, box)  # a finger's target
        href = link.get_attribute("href")
        assert href is not None and re.fullmatch(re.escape(base) + rf"/r/[A-Za-z0-9_-]+\?score={n}", href)
        hrefs[n] = href
    assert len({h.split("?")[0] for h in hrefs.values()}) == 1  # one invitation's token
    assert hrefs == score_links(part(mail, "plain"))  # the same links as the plain text
    boxes = [page.get_by_role("link", name=str(n), exact=True).bounding_box() for n in range(11)]
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)  # 0 on the left, 10 on the right
    # the scale's two ends read as two labels, one under 0 and one under 10, never as one line
    low, high = (text_box(page.get_by_text(t, exact=True)) for t in SCALE_DE)
    assert high["left"] - low["right"] >= 16, (low, high)
    assert low["top"] == high["top"]
    assert abs(low["left"] - boxes[0]["x"]) <= 2
    assert abs(high["right"] - (boxes[10]["x"] + boxes[10]["width"])) <= 2

    # unsubscribe: the link of the List-Unsubscribe header, for the same invitation
    token = hrefs[0].split("/r/")[1].split("?")[0]
    unsubscribe = page.get_by_role("link", name="Abmelden", exact=True)
    assert unsubscribe.is_visible()
    assert unsubscribe.get_attribute("href") == unsubscribe_url(mail) == f"{base}/u/{token}"
    privacy = page.get_by_role("link", name="Datenschutzerklärung", exact=True)
    assert privacy.get_attribute("href") == "https://acme.example/privacy"

    # the organization's voice: its logo (named by its alt text), its colour on header and buttons
    logo = page.get_by_role("img", name=tenant.name, exact=True)
    assert logo.is_visible()
    assert logo.get_attribute("src") == LOGO
    assert logo.evaluate("img => img.complete && img.naturalWidth > 0")
    assert computed(logo.locator("xpath=.."), "background-color") == BRAND_RGB
    for n in (0, 5, 10):
        button = page.get_by_role("link", name=str(n), exact=True)
        assert computed(button, "color") == BRAND_RGB
        assert computed(button, "background-color") == "rgb(255, 255, 255)"

    # a phone: the mail fits, nothing wider than a mail column, no sideways scrolling
    assert too_wide(page, 600) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    return hrefs


def test_branded_german_invitation_and_reminder_in_a_browser(
    client: Any,
    tenant: Tenant,
    database: TestDatabase,
    smtp: Sink,
    chromium: Any,
    request: pytest.FixtureRequest,
) -> None:
    put_profile(
        client,
        tenant,
        senderName="Acme Kundenservice",
        senderEmail="service@acme.example",
        logoUrl=LOGO,
        brandColor=BRAND,
        privacyUrl="https://acme.example/privacy",
    )
    survey = custom_survey(client, tenant, de=DE)
    address = unique_email("de")
    inv_id = invite_one(client, tenant, survey["id"], address, name="Ann", locale="de")
    run_jobs(database.db)
    [invitation] = smtp.to(address)
    assert invitation["From"].addresses[0].display_name == "Acme Kundenservice"
    base = database.settings.base_url.rstrip("/")

    html = part(invitation, "html")
    with mail_page(chromium, html, request, allowed=(LOGO,), label="invitation") as (page, requested):
        links = check_invitation(page, invitation, base, tenant, INTRO_DE)
        assert page.get_by_text(REMINDER_INTRO_DE).count() == 0
    assert requested == [LOGO], requested  # the logo, once; nothing else
    assert axe_findings(chromium, html) == []

    # the reminder, days later: the same invitation, the same language and brand, its own words
    days_pass(database.db, [inv_id], 4)
    run_jobs(database.db)
    _, reminder = smtp.to(address)
    assert reminder["Subject"] == "Erinnerung: Eine kurze Frage an Sie"
    html = part(reminder, "html")
    with mail_page(chromium, html, request, allowed=(LOGO,), label="reminder") as (page, requested):
        assert check_invitation(page, reminder, base, tenant, REMINDER_INTRO_DE) == links
        assert page.get_by_text(INTRO_DE).count() == 0
    assert requested == [LOGO], requested
    assert axe_findings(chromium, html) == []

    # the link leads to the German respondent page of this survey (a click records the score)
    page_html = client.get(local(links[9])).text
    assert '<html lang="de">' in page_html and DE["question"] in page_html
    assert DE["followUpQuestion"] in page_html


def test_light_brand_colour_without_logo_in_a_browser(
    client: Any,
    tenant: Tenant,
    database: TestDatabase,
    smtp: Sink,
    chromium: Any,
    request: pytest.FixtureRequest,
) -> None:
    """No logo: the organization's name heads the mail, readable on a light brand colour, and the
    mail loads nothing at all."""
    put_profile(client, tenant, brandColor="#ffe066")
    survey = make_survey(client, tenant, throttleDays=0)
    address = unique_email("light")
    invite_one(client, tenant, survey["id"], address, locale="en")
    run_jobs(database.db)
    [mail] = smtp.to(address)
    html = part(mail, "html")
    with mail_page(chromium, html, request, label="light") as (page, requested):
        assert page.evaluate("document.documentElement.lang") == "en"
        name = page.get_by_text(tenant.name, exact=True)
        assert name.is_visible()
        assert computed(name, "background-color") == "rgb(255, 224, 102)"
        assert computed(name, "color") == "rgb(0, 0, 0)"
        assert page.get_by_role("img").count() == 0
        for n in range(11):
            link = page.get_by_role("link", name=str(n), exact=True)
            assert link.is_visible()
            # yellow text on white would be unreadable: the buttons keep a readable blue
            assert computed(link, "color") == "rgb(11, 87, 208)"
        assert page.get_by_role("link", name="Unsubscribe", exact=True).is_visible()
        assert too_wide(page, 600) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert requested == []
    assert axe_findings(chromium, html) == []


# ------------------------------------------------------------------------------------------ digests


def test_digest_in_a_browser_shows_the_metrics_apis_nps(
    client: Any,
    tenant: Tenant,
    database: TestDatabase,
    smtp: Sink,
    chromium: Any,
    request: pytest.FixtureRequest,
) -> None:
    put_profile(client, tenant, logoUrl=LOGO, brandColor=BRAND)
    survey = make_survey(client, tenant, name="Onboarding NPS")
    mark = secrets.token_hex(4)
    day = utcnow().date() - timedelta(days=1)
    for i, score in enumerate((10, 10, 9, 7, 6, 3)):
        post_nps(
            client,
            tenant,
            f"d{i}-{mark}@example.com",
            score,
            campaignId=survey["id"],
            comment="Das Export <b>brach</b> & keiner rief an" if score == 3 else None,
            dateAnswered=datetime(day.year, day.month, day.day, 9 + i, tzinfo=UTC).isoformat(),
        )
    to = f"team-{mark}@example.com"
    r = client.post(
        "/v1/digests",
        json={
            "frequency": "daily",
            "hour": 9,
            "timeZone": "UTC",
            "emails": [to],
            "surveyId": survey["id"],
            "name": "Morning",
        },
        headers=tenant.admin,
    )
    assert r.status_code == 201, r.text
    sent = client.post(f"/v1/digests/{r.json()['id']}/send", headers=tenant.admin)
    assert sent.status_code == 202, sent.text
    figures = sent.json()["figures"]
    period, previous = figures["period"], figures["previousPeriod"]
    assert period == {"since": day.isoformat(), "until": day.isoformat()}
    api = metrics_for(client, tenant, survey["id"], period, previous)
    assert api["totalResponses"] == 6 and api["npsScore"] == pytest.approx(100 * (3 - 2) / 6, abs=0.05)

    run_jobs(database.db)
    [mail] = smtp.to(to)
    html = part(mail, "html")
    with mail_page(chromium, html, request, label="digest") as (page, requested):
        assert page.evaluate("document.documentElement.lang") == "en"  # digests are written in English
        assert page.evaluate("document.scripts.length") == 0
        heading = page.get_by_role("heading", level=1)
        assert heading.is_visible() and tenant.name in heading.inner_text()
        nps = page.locator(".nps")
        assert nps.is_visible()
        assert nps.inner_text().strip() == f"{api['npsScore']:.1f}"
        assert page.get_by_text(f"± {api['marginOfError']:.1f}").is_visible()
        assert page.get_by_text("3 promoters, 1 passives, 2 detractors").is_visible()
        # a comment is shown as written, never as markup
        assert page.get_by_text("Das Export <b>brach</b> & keiner rief an").is_visible()
        assert page.locator("q b").count() == 0
        feed = page.get_by_role("link", name="All detractors of the period on the dashboard")
        assert feed.get_attribute("href") == figures["feedUrl"]
        assert too_wide(page, 600) == []
    assert requested == []  # the digest shows no image: nothing is loaded, not even the logo
    assert axe_findings(chromium, html) == []
