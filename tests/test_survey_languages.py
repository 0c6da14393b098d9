"""A survey's texts in each language it is sent in (issue #12): ``translations`` in the survey API,
and one language per recipient for the whole mail and page, never a mix.

Mails are read as the real test SMTP server received them; pages over HTTP and in Chromium.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest

from conftest import Tenant, TestDatabase, assert_error, make_tenant
from dashboard import Site, csrf_of, page_for
from mail_helpers import (
    CUSTOM,
    Sink,
    custom_survey,
    invite_one,
    local,
    make_survey,
    part,
    records_of,
    run_jobs,
    score_links,
    unique_email,
)
from npsd.web.assets import asset_url

DE = {
    "question": "Wie wahrscheinlich empfehlen Sie das Onboarding von Acme weiter?",
    "followUpQuestion": "Was hat Ihnen gefehlt?",
    "thankYouMessage": "Danke, das hilft uns sehr!",
}
ES = {
    "question": "¿Recomendaría la incorporación de Acme?",
    "followUpQuestion": "¿Qué le faltó?",
    "thankYouMessage": "¡Gracias, nos ayuda mucho!",
}
SUBJECTS = {
    "en": "A quick question for you",
    "de": "Eine kurze Frage an Sie",
    "es": "Una pregunta rápida para usted",
}
GREETINGS = {"en": "Hello Ann,", "de": "Hallo Ann,", "es": "Hola, Ann:"}


# ---------------------------------------------------------------------------------------- the API


def test_translations_are_stored_shown_and_replaced(client: Any, tenant: Tenant) -> None:
    survey = custom_survey(client, tenant, de=DE, es={"question": ES["question"]})
    assert survey["translations"] == {"de": DE, "es": {"question": ES["question"]}}
    got = client.get(f"/v1/nps-surveys/{survey['id']}", headers=tenant.viewer).json()
    assert got["translations"] == survey["translations"]
    listed = client.get("/v1/nps-surveys", headers=tenant.viewer).json()
    assert [s["translations"] for s in listed if s["id"] == survey["id"]] == [survey["translations"]]

    # a PATCH without translations keeps them; with them, replaces the whole object
    r = client.patch(f"/v1/nps-surveys/{survey['id']}", json={"name": "renamed"}, headers=tenant.editor)
    assert r.json()["translations"] == survey["translations"]
    r = client.patch(
        f"/v1/nps-surveys/{survey['id']}",
        json={"translations": {"fr": {"question": "Et alors ?"}}},
        headers=tenant.editor,
    )
    assert r.status_code == 200 and r.json()["translations"] == {"fr": {"question": "Et alors ?"}}
    # empty languages are dropped; null removes every translation
    r = client.put(
        f"/v1/nps-surveys/{survey['id']}", json={"translations": {"de": {}}}, headers=tenant.editor
    )
    assert r.json()["translations"] == {}
    r = client.patch(f"/v1/nps-surveys/{survey['id']}", json={"translations": None}, headers=tenant.editor)
    assert r.status_code == 200 and r.json()["translations"] == {}


def test_existing_clients_work_unchanged(client: Any, tenant: Tenant) -> None:
    """A SalesOS client that knows nothing of translations: same fields, same defaults."""
    r = client.post("/v1/nps-surveys", json={"name": "Plain"}, headers=tenant.editor)
    assert r.status_code == 201
    body = r.json()
    assert body["question"] == "How likely are you to recommend us to a friend or colleague?"
    assert body["language"] == "en" and body["translations"] == {}


@pytest.mark.parametrize(
    ("translations", "field"),
    [
        ({"it": {"question": "Allora?"}}, "translations"),  # not a language npsd speaks
        ({"de-CH": {"question": "Grüezi?"}}, "translations"),
        ({"en": {"question": "Own language?"}}, "translations.en"),  # the survey's own language
        ({"de": {"question": ""}}, "translations.de.question"),
        ({"de": {"question": "   "}}, "translations.de.question"),
        ({"de": {"question": "x" * 2001}}, "translations.de.question"),
        ({"de": {"followUpQuestion": "a\x00b"}}, "translations.de.followUpQuestion"),
        ({"de": {"thankYouMessage": 5}}, "translations.de.thankYouMessage"),
        ({"de": {"greeting": "Moin"}}, "translations.de.greeting"),
        ({"de": "Frage?"}, "translations.de"),
        (["de"], "translations"),
        ("de", "translations"),
    ],
)
def test_bad_translations_are_named(client: Any, tenant: Tenant, translations: Any, field: str) -> None:
    r = client.post(
        "/v1/nps-surveys", json={"name": "Bad", "translations": translations}, headers=tenant.editor
    )
    assert_error(r, 400, field)
    survey = make_survey(client, tenant)
    r = client.patch(
        f"/v1/nps-surveys/{survey['id']}", json={"translations": translations}, headers=tenant.editor
    )
    assert_error(r, 400, field)


def test_changing_the_language_to_a_translated_one_is_refused(client: Any, tenant: Tenant) -> None:
    survey = custom_survey(client, tenant, de=DE)
    r = client.patch(f"/v1/nps-surveys/{survey['id']}", json={"language": "de"}, headers=tenant.editor)
    assert_error(r, 400, "translations.de")
    ok = client.patch(
        f"/v1/nps-surveys/{survey['id']}",
        json={"language": "de", "translations": {"en": DE}},
        headers=tenant.editor,
    )
    assert ok.status_code == 200 and ok.json()["language"] == "de"


def test_another_organization_cannot_read_or_change_translations(
    client: Any, tenant: Tenant, other: Tenant
) -> None:
    survey = custom_survey(client, tenant, de=DE)
    url = f"/v1/nps-surveys/{survey['id']}"
    assert_error(client.get(url, headers=other.admin), 404)
    assert_error(client.patch(url, json={"translations": None}, headers=other.admin), 404)
    assert client.get(url, headers=tenant.viewer).json()["translations"] == {"de": DE}
    assert survey["id"] not in [s["id"] for s in client.get("/v1/nps-surveys", headers=other.admin).json()]


# ------------------------------------------------------------------------------------------ mails


def mail_to(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink, survey: dict[str, Any], locale: str
) -> Any:
    address = unique_email(locale)
    invite_one(client, tenant, survey["id"], address, name="Ann", locale=locale)
    run_jobs(database.db)
    [mail] = smtp.to(address)
    return mail


def one_language(mail: Any, lang: str, question: str) -> None:
    """The mail speaks ``lang`` from subject to footer, around ``question``."""
    assert mail["Subject"] == SUBJECTS[lang]
    assert mail["Content-Language"] == lang
    text, html = part(mail, "plain"), part(mail, "html")
    assert f'<html lang="{lang}">' in html
    for body in (text, html):
        assert GREETINGS[lang] in body
        assert question.replace("'", "&#39;") in body or question in body
        for other, greeting in GREETINGS.items():
            if other != lang:
                assert greeting not in body, (lang, other)


def test_each_recipient_gets_one_language(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = custom_survey(client, tenant, de=DE)
    # German: greeting, question, everything in German
    one_language(mail_to(client, tenant, database, smtp, survey, "de-AT"), "de", DE["question"])
    # Spanish: no Spanish question was given, so the whole mail is in the survey's English
    es = mail_to(client, tenant, database, smtp, survey, "es")
    one_language(es, "en", CUSTOM)
    assert "Hola" not in part(es, "plain") and "probabilidad" not in part(es, "plain")
    # once a Spanish translation exists, the Spanish recipient gets Spanish throughout
    client.patch(
        f"/v1/nps-surveys/{survey['id']}", json={"translations": {"de": DE, "es": ES}}, headers=tenant.editor
    )
    one_language(mail_to(client, tenant, database, smtp, survey, "es-MX"), "es", ES["question"])
    one_language(mail_to(client, tenant, database, smtp, survey, "en-GB"), "en", CUSTOM)


def test_a_missing_follow_up_translation_keeps_the_survey_language(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """The page after the click asks the follow-up question: without its translation the German
    recipient would read a German question above an English one, so mail and page stay English."""
    survey = custom_survey(client, tenant, de={"question": DE["question"]})
    mail = mail_to(client, tenant, database, smtp, survey, "de")
    one_language(mail, "en", CUSTOM)
    page = client.get(local(score_links(part(mail, "plain"))[8]))
    assert '<html lang="en">' in page.text and "What did you miss?" in page.text


def test_the_default_texts_need_no_translation(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, throttleDays=0, translations={"de": {"question": "Eigene Frage?"}})
    de = mail_to(client, tenant, database, smtp, survey, "de")
    one_language(de, "de", "Eigene Frage?")
    fr = mail_to(client, tenant, database, smtp, survey, "fr")
    assert fr["Content-Language"] == "fr"
    assert f"Quelle est la probabilité que vous recommandiez {tenant.name} à un ami" in part(fr, "plain")


# ------------------------------------------------------------------------------------------ pages


def test_the_page_follows_the_mail_and_thanks_in_that_language(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = custom_survey(client, tenant, de=DE)
    mail = mail_to(client, tenant, database, smtp, survey, "de")
    link = local(score_links(part(mail, "plain"))[4])
    page = client.get(link)
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert f"<legend>{DE['question']}</legend>" in page.text
    assert DE["followUpQuestion"] in page.text and ">Absenden</button>" in page.text
    assert CUSTOM not in page.text and "What did you miss?" not in page.text
    thanks = client.post(link.split("?")[0], data={"score": "4", "comment": "Mehr Beispiele"})
    assert thanks.status_code == 200
    assert DE["thankYouMessage"] in thanks.text and "Thanks, this helps!" not in thanks.text
    # ?lang= asks for another language the survey has; the form keeps it
    english = client.get(link.split("?")[0] + "?lang=en")
    assert (
        '<html lang="en">' in english.text
        and f"<legend>{CUSTOM.replace(chr(39), '&#39;')}</legend>" in english.text
    )
    assert 'action="' in english.text and "?lang=en" in english.text
    # a language the survey lacks, or none npsd speaks, changes nothing
    for lang in ("es", "zz", "x" * 500):
        assert '<html lang="de">' in client.get(link.split("?")[0] + f"?lang={lang}").text


def test_public_page_speaks_the_browsers_translated_language(client: Any, tenant: Tenant) -> None:
    survey = custom_survey(client, tenant, es=ES)
    link = client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.editor).json()
    url = local(link["url"])
    # without translations in the browser's languages: the survey's own language
    assert '<html lang="en">' in client.get(url, headers={"Accept-Language": "fr-FR,de;q=0.8"}).text
    es = client.get(url, headers={"Accept-Language": "fr-FR,es;q=0.8"})
    assert '<html lang="es">' in es.text and ES["question"] in es.text and ">Enviar</button>" in es.text
    assert '<html lang="es">' in client.get(url + "?lang=es").text
    assert '<html lang="en">' in client.get(url + "?lang=en", headers={"Accept-Language": "es"}).text
    thanks = client.post(url + "?lang=es", data={"score": "10"})
    assert thanks.status_code == 200 and ES["thankYouMessage"] in thanks.text


# -------------------------------------------------------------------------------------- dashboard


def test_dashboard_form_sets_translations(
    app: Any, client: Any, database: TestDatabase, tenant: Tenant
) -> None:
    from test_org_profile import dashboard, field_error

    editor = dashboard(app, database, tenant, "editor")
    form = editor.get("/app/surveys/new").text
    assert 'name="translations.de.question"' in form and "<legend>Deutsch (de)</legend>" in form
    data = {
        "csrf_token": csrf_of(form),
        "name": "Onboarding",
        "surveyType": "RELATIONSHIP",
        "question": CUSTOM,
        "isActive": "true",
        "language": "en",
        "throttleDays": "90",
        "translations.de.question": DE["question"],
        "translations.de.followUpQuestion": DE["followUpQuestion"],
    }
    # a blank translation is no translation; the survey's own language is refused next to it
    refused = editor.post("/app/surveys", data={**data, "translations.en.question": "Own?"})
    assert refused.status_code == 400
    assert "own language" in field_error(refused.text, "translations.en.question")
    assert DE["question"] in refused.text  # what was typed is kept
    created = editor.post("/app/surveys", data=data)
    assert created.status_code == 303, created.text[-2000:]
    survey_id = created.headers["location"].rsplit("/", 1)[1]
    api = client.get(f"/v1/nps-surveys/{survey_id}", headers=tenant.viewer).json()
    assert api["translations"] == {
        "de": {"question": DE["question"], "followUpQuestion": DE["followUpQuestion"]}
    }
    page = editor.get(f"/app/surveys/{survey_id}").text
    assert f'<span lang="de">de: {DE["question"]}</span>' in page
    # the edit form shows them, and clearing a field changes only that text
    edit = editor.get(f"/app/surveys/{survey_id}/edit").text
    assert DE["followUpQuestion"] in edit
    values = {k: v for k, v in data.items() if k != "translations.de.followUpQuestion"}
    changed = editor.post(f"/app/surveys/{survey_id}/edit", data={**values, "csrf_token": csrf_of(edit)})
    assert changed.status_code == 303
    api = client.get(f"/v1/nps-surveys/{survey_id}", headers=tenant.viewer).json()
    assert api["translations"] == {"de": {"question": DE["question"]}}
    too_long = editor.post(
        f"/app/surveys/{survey_id}/edit",
        data={**values, "csrf_token": csrf_of(edit), "translations.fr.question": "q" * 2001},
    )
    assert too_long.status_code == 400 and field_error(too_long.text, "translations.fr.question")


# ---------------------------------------------------------------------------------------- browser


def test_respondent_page_in_a_browser(
    site: Site, chromium: Any, database: TestDatabase, request: pytest.FixtureRequest
) -> None:
    """A German recipient opens the mail's link in Chromium: the organization's name and logo,
    the German question; the logo is npsd's own icon here, so the page loads nothing from elsewhere
    and the test can see that the CSP let the logo through."""
    tenant = make_tenant(database)
    api = httpx.Client(base_url=site.url, timeout=30)
    name = f"Acme {secrets.token_hex(3)}"
    r = api.put(
        "/v1/organization",
        json={
            "name": name,
            "logoUrl": site.url + asset_url("favicon.svg"),
            "brandColor": "#7a1f5c",
            "privacyUrl": site.url + "/privacy",
        },
        headers=tenant.admin,
    )
    assert r.status_code == 200, r.text
    survey = api.post(
        "/v1/nps-surveys",
        json={"name": "Onboarding", "question": CUSTOM, "translations": {"de": {"question": DE["question"]}}},
        headers=tenant.editor,
    ).json()
    address = unique_email("browser")
    invite_one(api, tenant, survey["id"], address, locale="de")
    run_jobs(site.db)  # the site's settings: its SMTP server, its address in the links
    [mail] = site.sink.to(address)
    link = score_links(part(mail, "plain"))[9]
    with page_for(chromium, site, request) as page:
        page.goto(link.split("?")[0])
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.locator("header.brand p").inner_text() == name
        assert page.locator("legend").inner_text() == DE["question"]
        logo = page.locator("header.brand img")
        assert logo.evaluate("img => img.complete && img.naturalWidth > 0")  # allowed by the page's CSP
        privacy = page.get_by_role("link", name="Datenschutzerklärung")
        assert privacy.get_attribute("href") == site.url + "/privacy"
        button = page.get_by_role("button", name="Absenden")
        assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(122, 31, 92)"
        page.get_by_label("9", exact=True).check()
        page.get_by_label(re.compile("Was ist der wichtigste Grund")).fill("Sehr gut")
        with page.expect_navigation():
            button.click()
        assert page.locator("h1").inner_text() == "Vielen Dank"
        assert page.locator("header.brand p").inner_text() == name
    api.close()
    answers = [r for r in database_records(database, tenant, address)]
    assert [(a["score"], a["comment"]) for a in answers] == [(9, "Sehr gut")]


def database_records(database: TestDatabase, tenant: Tenant, address: str) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from npsd.app import create_app

    with TestClient(create_app(database.settings, database.db)) as c:
        return records_of(c, tenant, address)
