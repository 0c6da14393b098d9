"""The organization's profile (issue #12, "Speaking as the organization"): ``GET``/``PUT
/v1/organization``, and the mails, reminders and respondent pages that speak with it.

Mails are read as the real test SMTP server received them; pages are fetched over HTTP (the
browser test is in test_survey_languages.py).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from conftest import Tenant, TestDatabase, assert_error
from dashboard import csrf_of
from mail_helpers import (
    Sink,
    days_pass,
    invite_one,
    local,
    make_survey,
    part,
    run_jobs,
    score_links,
    unique_email,
)

PROFILE = {
    "senderName": "Acme Customer Care",
    "senderEmail": "care@acme.example",
    "logoUrl": "https://cdn.acme.example/logo.png",
    "brandColor": "#7A1F5C",
    "privacyUrl": "https://acme.example/privacy",
}


def put_profile(client: Any, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    r = client.put("/v1/organization", json={"name": tenant.name, **fields}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ---------------------------------------------------------------------------------------- the API


def test_profile_starts_empty_and_any_role_reads_it(client: Any, tenant: Tenant) -> None:
    for role in ("viewer", "editor", "admin"):
        r = client.get("/v1/organization", headers=tenant.headers(role))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] == tenant.org_id
        assert body["name"] == tenant.name
        assert {k: body[k] for k in PROFILE} == dict.fromkeys(PROFILE)
        assert body["createdAt"].endswith("Z")
    assert_error(client.get("/v1/organization"), 401)


def test_put_replaces_the_whole_profile(client: Any, tenant: Tenant) -> None:
    new_name = f"Acme {secrets.token_hex(4)}"
    out = put_profile(client, tenant, **PROFILE, name=new_name)
    assert out["name"] == new_name
    assert out["brandColor"] == "#7a1f5c"  # stored lower-case
    assert {k: out[k] for k in PROFILE if k != "brandColor"} == {
        k: v for k, v in PROFILE.items() if k != "brandColor"
    }
    assert client.get("/v1/organization", headers=tenant.viewer).json() == out
    # a full replace: what is left out (or blank) is cleared
    cleared = client.put(
        "/v1/organization", json={"name": new_name, "senderName": "  ", "logoUrl": None}, headers=tenant.admin
    ).json()
    assert {k: cleared[k] for k in PROFILE} == dict.fromkeys(PROFILE)
    # the new name is the one sign-in, tokens and everything else keep using
    assert client.get("/v1/organization", headers=tenant.admin).json()["name"] == new_name


def test_only_an_admin_changes_the_profile(client: Any, tenant: Tenant) -> None:
    for role in ("viewer", "editor"):
        r = client.put("/v1/organization", json={"name": "taken over"}, headers=tenant.headers(role))
        assert_error(r, 403)
    assert client.get("/v1/organization", headers=tenant.viewer).json()["name"] == tenant.name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"senderEmail": "not an address"}, "senderEmail"),
        ({"senderEmail": "a@b.c\r\nBcc: x@y.z"}, "senderEmail"),
        ({"senderName": "Eve\r\nBcc: victim@example.com"}, "senderName"),
        ({"logoUrl": "javascript:alert(1)"}, "logoUrl"),
        ({"logoUrl": "//cdn.example/logo.png"}, "logoUrl"),
        ({"logoUrl": "https://exa mple.com/x.png"}, "logoUrl"),
        ({"privacyUrl": "ftp://acme.example/privacy"}, "privacyUrl"),
        ({"privacyUrl": "https://" + "a" * 2000 + ".example"}, "privacyUrl"),
        ({"brandColor": "red"}, "brandColor"),
        ({"brandColor": "#12345g"}, "brandColor"),
        ({"brandColor": "#fff;background:url(x)"}, "brandColor"),
        ({"brandColor": 123}, "brandColor"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"nickname": "acme"}, "nickname"),
    ],
)
def test_bad_fields_are_named(client: Any, tenant: Tenant, body: dict[str, Any], field: str) -> None:
    r = client.put("/v1/organization", json={"name": tenant.name, **body}, headers=tenant.admin)
    assert_error(r, 400, field)
    assert client.get("/v1/organization", headers=tenant.admin).json()["name"] == tenant.name


def test_every_bad_field_at_once_and_malformed_bodies(client: Any, tenant: Tenant) -> None:
    r = client.put(
        "/v1/organization",
        json={
            "name": tenant.name,
            "senderEmail": "nope",
            "logoUrl": "file:///etc/passwd",
            "brandColor": "blue",
        },
        headers=tenant.admin,
    )
    body = assert_error(r, 400)
    assert {d["field"] for d in body["details"]} == {"senderEmail", "logoUrl", "brandColor"}
    assert_error(client.put("/v1/organization", json={}, headers=tenant.admin), 400, "name")
    assert_error(client.put("/v1/organization", json=["name"], headers=tenant.admin), 400)
    assert_error(
        client.put(
            "/v1/organization",
            content=b"{not json",
            headers={**tenant.admin, "Content-Type": "application/json"},
        ),
        400,
    )


def test_another_organizations_name_is_a_conflict(client: Any, tenant: Tenant, other: Tenant) -> None:
    r = client.put("/v1/organization", json={"name": other.name}, headers=tenant.admin)
    assert_error(r, 409, "name")
    assert client.get("/v1/organization", headers=tenant.admin).json()["name"] == tenant.name


def test_each_organization_sees_and_changes_only_its_own(client: Any, tenant: Tenant, other: Tenant) -> None:
    put_profile(client, tenant, **PROFILE)
    mine = client.get("/v1/organization", headers=tenant.admin).json()
    # the other organization's admin changes its own profile; ours stays as it was
    changed = put_profile(client, other, senderEmail="spoof@other.example")
    assert changed["id"] == other.org_id
    assert client.get("/v1/organization", headers=tenant.admin).json() == mine
    theirs = client.get("/v1/organization", headers=other.viewer).json()
    assert theirs["id"] == other.org_id and theirs["senderEmail"] == "spoof@other.example"
    assert theirs["logoUrl"] is None and tenant.name not in str(theirs)


# ------------------------------------------------------------------------------------------ mails


def sent_mail(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink, **survey: Any) -> Any:
    s = make_survey(client, tenant, **survey)
    address = unique_email("brand")
    inv_id = invite_one(client, tenant, s["id"], address, name="Ann")
    run_jobs(database.db)
    [mail] = smtp.to(address)
    return mail, inv_id, s


def test_invitation_and_reminder_speak_as_the_organization(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    put_profile(client, tenant, **PROFILE)
    mail, inv_id, _ = sent_mail(client, tenant, database, smtp)
    assert mail["From"].addresses[0].display_name == "Acme Customer Care"
    assert mail["From"].addresses[0].addr_spec == "care@acme.example"
    assert mail["Message-ID"].endswith("@acme.example>")
    text, html = part(mail, "plain"), part(mail, "html")
    question = f"How likely are you to recommend {tenant.name} to a friend or colleague?"
    assert question in text and question in html
    assert "recommend us" not in text + html
    assert text.startswith(tenant.name)
    assert '<img src="https://cdn.acme.example/logo.png"' in html and f'alt="{tenant.name}"' in html
    assert "background:#7a1f5c" in html
    assert "Privacy policy: https://acme.example/privacy" in text
    assert '<a href="https://acme.example/privacy"' in html

    # the reminder comes from the same sender with the same brand
    days_pass(database.db, [inv_id], 4)
    run_jobs(database.db)
    mails = smtp.to(mail["To"].addresses[0].addr_spec)
    assert [m["Subject"] for m in mails] == ["A quick question for you", "Reminder: a quick question for you"]
    reminder = mails[1]
    assert str(reminder["From"]) == str(mail["From"])
    assert '<img src="https://cdn.acme.example/logo.png"' in part(reminder, "html")
    assert question in part(reminder, "plain")


def test_sender_parts_fall_back(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink) -> None:
    default_name, default_address = "npsd", database.settings.mail_from.split("<")[1].rstrip(">")
    # no profile: the server's NPSD_SMTP_FROM, no logo, no privacy link
    mail, _, _ = sent_mail(client, tenant, database, smtp)
    assert str(mail["From"]) == database.settings.mail_from
    assert "<img" not in part(mail, "html") and "Privacy" not in part(mail, "plain")
    # only an address: the organization's name says who it is
    put_profile(client, tenant, senderEmail="hello@acme.example")
    mail, _, _ = sent_mail(client, tenant, database, smtp)
    assert mail["From"].addresses[0].display_name == tenant.name
    assert mail["From"].addresses[0].addr_spec == "hello@acme.example"
    # only a name: that name, on the server's address
    put_profile(client, tenant, senderName="Ünïcode Care, Inc.")
    mail, _, _ = sent_mail(client, tenant, database, smtp)
    assert mail["From"].addresses[0].display_name == "Ünïcode Care, Inc."
    assert mail["From"].addresses[0].addr_spec == default_address
    assert default_name  # the default's name is replaced, not appended


def test_light_brand_colour_keeps_text_readable(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    put_profile(client, tenant, brandColor="#ffe066")  # light yellow: dark text on it
    mail, _, _ = sent_mail(client, tenant, database, smtp)
    html = part(mail, "html")
    assert "background:#ffe066;color:#000000" in html


# ------------------------------------------------------------------------------------------ pages


def test_respondent_pages_show_the_brand(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    put_profile(client, tenant, **PROFILE)
    mail, _, survey = sent_mail(client, tenant, database, smtp, thankYouMessage="Merci, see you!")
    links = {n: local(url) for n, url in score_links(part(mail, "plain")).items()}
    r = client.get(links[9])
    assert r.status_code == 200
    html = r.text
    assert f"<p>{tenant.name}</p>" in html
    assert '<img src="https://cdn.acme.example/logo.png" alt="">' in html
    assert '<a href="https://acme.example/privacy"' in html and "Privacy policy" in html
    assert "background:#7a1f5c" in html
    assert f"recommend {tenant.name} to a friend" in html
    # the logo's origin, and only it, may be loaded; no referrer goes with it
    csp = r.headers["Content-Security-Policy"]
    assert csp.endswith("; img-src https://cdn.acme.example") and "default-src 'none'" in csp
    assert r.headers["Referrer-Policy"] == "no-referrer"

    thanks = client.post(links[9].split("?")[0], data={"score": "9", "comment": "great"})
    assert thanks.status_code == 200
    assert "Merci, see you!" in thanks.text and f"<p>{tenant.name}</p>" in thanks.text

    token = links[0].split("/r/")[1].split("?")[0]
    unsubscribe = client.get(f"/u/{token}")
    assert unsubscribe.status_code == 200 and f"<p>{tenant.name}</p>" in unsubscribe.text

    link = client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.editor).json()
    public = client.get(local(link["url"]))
    assert public.status_code == 200 and f"<p>{tenant.name}</p>" in public.text
    assert "img-src https://cdn.acme.example" in public.headers["Content-Security-Policy"]

    # an unknown link belongs to nobody: no brand, nothing loaded from elsewhere
    unknown = client.get("/r/" + "x" * 32)
    assert unknown.status_code == 404
    assert "<header" not in unknown.text and "img-src" not in unknown.headers["Content-Security-Policy"]


def test_pages_without_a_profile_load_nothing_from_elsewhere(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    mail, _, _ = sent_mail(client, tenant, database, smtp)
    link = local(score_links(part(mail, "plain"))[3])
    r = client.get(link)
    assert f"<p>{tenant.name}</p>" in r.text and "<img" not in r.text and "<footer" not in r.text
    assert "img-src" not in r.headers["Content-Security-Policy"]


# -------------------------------------------------------------------------------------- dashboard


def dashboard(app: Any, database: TestDatabase, tenant: Tenant, role: str) -> Any:
    """A browser-like client signed in to the dashboard as a new ``role`` of ``tenant``."""
    from fastapi.testclient import TestClient

    from dashboard import make_user
    from npsd.web.session import SESSION_COOKIE
    from test_dashboard_settings import session_token

    person = make_user(database.db, tenant.org_id, role)
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, session_token(database, person))
    return client


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="error" id="f-{re.escape(name)}-error">([^<]*)</p>', html)
    return match.group(1) if match else ""


def input_value(html: str, name: str) -> str | None:
    match = re.search(
        rf'<input id="f-{re.escape(name)}" name="{re.escape(name)}" type="[a-z]+" value="([^"]*)"', html
    )
    return match.group(1) if match else None


FORM = "/app/settings/organization"


def test_dashboard_edits_the_profile(app: Any, client: Any, database: TestDatabase, tenant: Tenant) -> None:
    admin = dashboard(app, database, tenant, "admin")
    page = admin.get(FORM)
    assert page.status_code == 200
    assert input_value(page.text, "name") == tenant.name
    assert '<a href="/app/settings/organization" aria-current="true">Organization</a>' in page.text
    new_name = f"Acme {secrets.token_hex(3)}"
    saved = admin.post(
        FORM,
        data={
            "csrf_token": csrf_of(page.text),
            "name": new_name,
            "senderName": "Acme Care",
            "senderEmail": "care@acme.example",
            "logoUrl": "https://cdn.acme.example/logo.png",
            "brandColor": "#123ABC",
            "privacyUrl": "",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == FORM + "?saved=1"
    api = client.get("/v1/organization", headers=tenant.viewer).json()
    assert api["name"] == new_name and api["senderName"] == "Acme Care" and api["brandColor"] == "#123abc"
    assert api["privacyUrl"] is None
    shown = admin.get(FORM + "?saved=1").text
    assert "The profile was saved" in shown and input_value(shown, "senderEmail") == "care@acme.example"


def test_dashboard_form_errors_are_next_to_their_fields(
    app: Any, client: Any, database: TestDatabase, tenant: Tenant, other: Tenant
) -> None:
    admin = dashboard(app, database, tenant, "admin")
    token = csrf_of(admin.get(FORM).text)
    r = admin.post(
        FORM,
        data={
            "csrf_token": token,
            "name": "",
            "senderEmail": "not an address",
            "logoUrl": "javascript:alert(1)",
            "brandColor": "<b>red</b>",
            "privacyUrl": "x" * 3000,
        },
    )
    assert r.status_code == 400
    for name in ("name", "senderEmail", "logoUrl", "brandColor", "privacyUrl"):
        assert field_error(r.text, name), name
    assert input_value(r.text, "senderEmail") == "not an address"  # what was typed is kept
    assert "<b>red</b>" not in r.text and input_value(r.text, "brandColor") == "&lt;b&gt;red&lt;/b&gt;"
    taken = admin.post(FORM, data={"csrf_token": token, "name": other.name})
    assert taken.status_code == 409 and field_error(taken.text, "name") == "is taken"
    # nothing changed, and a POST without the CSRF token changes nothing either
    refused = admin.post(FORM, data={"name": "no csrf"})
    assert refused.status_code in (400, 403)
    assert client.get("/v1/organization", headers=tenant.admin).json()["name"] == tenant.name


def test_only_admins_open_the_profile_page(app: Any, database: TestDatabase, tenant: Tenant) -> None:
    for role in ("viewer", "editor"):
        person = dashboard(app, database, tenant, role)
        assert person.get(FORM).status_code == 403
        assert person.post(FORM, data={"name": "x"}).status_code in (400, 403)
