"""The respondent pages over HTTP, on both databases: ``/r/{token}`` (answer, comment, closed,
expired, unknown, escaping, languages, accessibility markup), ``/u/{token}`` (unsubscribe, RFC 8058
one-click) and the public link ``/s/{publicId}`` (anonymous, identified, rate-limited)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from sqlalchemy import update

from conftest import Tenant, TestDatabase, assert_error, iso_ms
from mail_helpers import (
    Sink,
    get_invitation,
    invite,
    invite_one,
    local,
    make_survey,
    part,
    records_of,
    run_jobs,
    score_links,
    token_of,
    unique_email,
    unsubscribe_url,
)
from npsd.collect import pages, service
from npsd.kit.models import Invitation


def sent_invitation(
    client: Any, tenant: Tenant, database: TestDatabase, sink: Sink, survey_id: str, **recipient: Any
) -> tuple[str, dict[int, str], str]:
    """Invite one new address, send the mail, and return (invitation id, score links, address)."""
    address = unique_email()
    inv_id = invite_one(client, tenant, survey_id, address, **recipient)
    run_jobs(database.db)
    [mail] = sink.to(address)
    links = {n: local(url) for n, url in score_links(part(mail, "plain")).items()}
    return inv_id, links, address


def form_url(links: dict[int, str]) -> str:
    return links[0].split("?", 1)[0]


class Markup(HTMLParser):
    """Just enough structure of a page to check it: elements with attributes, and the text of some."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("legend", "label", "textarea", "h1", "button", "title", "p", "script"):
            self._open.append(tag)
            self.texts.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for tag in self._open:
            self.texts[tag][-1] += data

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


# ---------------------------------------------------------------------------------------- the page


def test_page_is_an_accessible_form(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink) -> None:
    survey = make_survey(client, tenant)
    _, links, _ = sent_invitation(client, tenant, database, smtp, survey["id"])
    r = client.get(form_url(links))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    page = Markup(r.text)
    assert page.all("html", lang="en")
    assert page.all("meta", name="viewport")
    assert "script" not in page.texts and not page.all("script")
    [form] = page.all("form")
    assert form["method"] == "post"
    assert page.texts["legend"] == [
        f"How likely are you to recommend {tenant.name} to a friend or colleague?"
    ]
    radios = page.all("input", type="radio", name="score")
    assert [r["value"] for r in radios] == [str(n) for n in range(11)]
    assert not any("checked" in r for r in radios)
    labels = {a["for"]: text for a, text in zip(page.all("label"), page.texts["label"], strict=True)}
    for radio in radios:
        assert labels[radio["id"]] == radio["value"]  # every radio has its label
    [textarea] = page.all("textarea")
    assert textarea["name"] == "comment"
    assert labels[textarea["id"]].startswith("What is the most important reason for your score?")
    assert page.texts["button"] == ["Send"]
    assert page.texts["textarea"] == ["\n"]  # nothing yet


def test_score_link_then_comment_updates_the_one_record(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, thankYouMessage="Thanks, Acme team.\nWe read every answer.")
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])

    clicked = client.get(links[3])
    assert clicked.status_code == 200
    page = Markup(clicked.text)
    assert page.all("input", type="radio", value="3")[0].get("checked") == ""
    assert "Your score of 3 has been recorded" in clicked.text
    [record] = records_of(client, tenant, address)
    assert (record["score"], record["comment"]) == (3, None)

    submitted = client.post(form_url(links), data={"score": "8", "comment": "Fast support"})
    assert submitted.status_code == 200
    done = Markup(submitted.text)
    assert done.texts["h1"] == ["Thank you"]
    assert "Thanks, Acme team.\nWe read every answer." in submitted.text
    [updated] = records_of(client, tenant, address)
    assert updated["_id"] == record["_id"]
    assert (updated["score"], updated["comment"], updated["source"]) == (8, "Fast support", "email")
    assert updated["dateAnswered"] == record["dateAnswered"]
    assert get_invitation(client, tenant, inv_id)["responseId"] == record["_id"]

    # coming back shows the answer; a new click keeps the comment
    again = Markup(client.get(form_url(links)).text)
    assert again.all("input", type="radio", value="8")[0].get("checked") == ""
    assert again.texts["textarea"] == ["\nFast support"]
    client.get(links[10])
    [last] = records_of(client, tenant, address)
    assert (last["_id"], last["score"], last["comment"]) == (record["_id"], 10, "Fast support")
    # clearing the comment
    client.post(form_url(links), data={"score": "10", "comment": "   "})
    assert records_of(client, tenant, address)[0]["comment"] is None


def test_concurrent_clicks_make_one_record(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda n: client.get(links[n]).status_code, [2, 3, 4, 5, 6, 7, 8, 9]))
    assert statuses == [200] * 8
    records = records_of(client, tenant, address)
    assert len(records) == 1
    assert get_invitation(client, tenant, inv_id)["responseId"] == records[0]["_id"]
    assert records[0]["__v"] == 7  # one create, seven updates
    assert client.get(f"/v1/nps-surveys/{survey['id']}", headers=tenant.viewer).json()["responseCount"] == 1


def test_comments_are_stored_verbatim_and_escaped(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    _, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    comment = "<script>alert(\"x\")</script> & 'quotes'\n  second line é😀"
    r = client.post(form_url(links), data={"score": "6", "comment": comment.replace("\n", "\r\n")})
    assert r.status_code == 200
    assert records_of(client, tenant, address)[0]["comment"] == comment
    shown = client.get(form_url(links)).text
    assert "<script>" not in shown
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;quotes&#39;" in shown
    assert Markup(shown).texts["textarea"] == ["\n" + comment]


def test_thank_you_message_is_escaped(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, thankYouMessage="<img src=x onerror=alert(1)>")
    _, links, _ = sent_invitation(client, tenant, database, smtp, survey["id"])
    r = client.post(form_url(links), data={"score": "9"})
    assert r.status_code == 200
    assert "<img" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text


def test_bad_answers_are_400_and_record_nothing(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    _, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    for bad in ("11", "-1", "abc", "", "5.0", "1" * 50):
        r = client.get(form_url(links), params={"score": bad})
        assert r.status_code == 400, bad
        assert "Please choose a score from 0 to 10." in r.text
    missing = client.post(form_url(links), data={"comment": "kept <b>"})
    assert missing.status_code == 400
    assert Markup(missing.text).texts["textarea"] == ["\nkept <b>"]
    assert client.post(form_url(links), data={"score": "7", "comment": "a\x00b"}).status_code == 400
    too_long = client.post(form_url(links), data={"score": "7", "comment": "x" * (service.MAX_COMMENT + 1)})
    assert too_long.status_code == 400 and "too long" in too_long.text
    assert (
        client.post(
            form_url(links),
            content=b"\xff\xfe",
            headers={"Content-Type": "multipart/form-data; boundary=nope"},
        ).status_code
        == 400
    )
    assert records_of(client, tenant, address) == []


def test_head_records_nothing(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink) -> None:
    survey = make_survey(client, tenant)
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    assert client.head(links[9]).status_code == 200
    assert records_of(client, tenant, address) == []
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"


def test_closed_survey_is_410_and_records_nothing(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, throttleDays=0)
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    for response in (client.get(links[9]), client.post(form_url(links), data={"score": "9"})):
        assert response.status_code == 410
        assert Markup(response.text).texts["h1"] == ["This survey is closed"]
    assert records_of(client, tenant, address) == []
    assert get_invitation(client, tenant, inv_id)["status"] == "sent"

    # outside its window
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    now = datetime.now(UTC)
    r = client.patch(
        f"/v1/nps-surveys/{survey['id']}",
        json={"startsAt": iso_ms(now - timedelta(days=5)), "endsAt": iso_ms(now - timedelta(days=1))},
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    assert client.get(links[9]).status_code == 410
    r = client.patch(
        f"/v1/nps-surveys/{survey['id']}",
        json={"startsAt": iso_ms(now + timedelta(days=1)), "endsAt": None},
        headers=tenant.editor,
    )
    assert r.status_code == 200, r.text
    assert client.get(links[9]).status_code == 410
    assert records_of(client, tenant, address) == []
    client.patch(f"/v1/nps-surveys/{survey['id']}", json={"startsAt": None}, headers=tenant.editor)
    assert client.get(links[9]).status_code == 200
    assert [r["score"] for r in records_of(client, tenant, address)] == [9]


def test_unknown_expired_and_withdrawn_links(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    for path in ("/r/short", "/r/" + "A" * 32, "/r/" + "A" * 32 + "?score=9", "/r/%00" + "A" * 40, "/u/nope"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert Markup(r.text).texts["h1"] == ["This link is not valid"]
    german = client.get("/r/" + "B" * 32, headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert german.status_code == 404 and Markup(german.text).texts["h1"] == ["Dieser Link ist ungültig"]
    assert client.post("/r/" + "A" * 32, data={"score": "1"}).status_code == 404

    survey = make_survey(client, tenant)
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    with database.db.transaction() as session:
        session.execute(
            update(Invitation)
            .where(Invitation.id == inv_id)
            .values(expires_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1))
        )
    expired = client.get(links[9])
    assert expired.status_code == 410
    assert Markup(expired.text).texts["h1"] == ["This link has expired"]
    assert client.post(form_url(links), data={"score": "9"}).status_code == 410
    assert records_of(client, tenant, address) == []

    # a cancelled invitation's link (it was never mailed, but the token exists)
    pending = invite_one(client, tenant, make_survey(client, tenant, throttleDays=0)["id"], unique_email())
    client.delete(f"/v1/invitations/{pending}", headers=tenant.editor)
    token = service.invitation_token(database.settings, pending)
    withdrawn = client.get(f"/r/{token}?score=5")
    assert withdrawn.status_code == 410
    assert Markup(withdrawn.text).texts["h1"] == ["This invitation was withdrawn"]


@pytest.mark.parametrize(
    ("locale", "legend", "submit"),
    [
        ("es", "¿Qué probabilidad hay de que recomiende {org} a un amigo o colega?", "Enviar"),
        (
            "fr-CA",
            "Quelle est la probabilité que vous recommandiez {org} à un ami ou à un collègue ?",
            "Envoyer",
        ),
        (
            "de",
            "Wie wahrscheinlich ist es, dass Sie {org} einem Freund oder Kollegen weiterempfehlen?",
            "Absenden",
        ),
    ],
)
def test_page_in_the_recipients_language(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink, locale: str, legend: str, submit: str
) -> None:
    # a follow-up question the author wrote is shown in the recipient's language when translated
    lang = locale[:2]
    survey = make_survey(
        client,
        tenant,
        followUpQuestion="What should we improve?",
        translations={lang: {"followUpQuestion": "¿?"}},
    )
    _, links, _ = sent_invitation(client, tenant, database, smtp, survey["id"], locale=locale)
    page = Markup(client.get(links[6]).text)
    assert page.all("html", lang=lang)
    assert page.texts["legend"] == [legend.format(org=tenant.name)]
    assert page.texts["button"] == [submit]
    assert any(text.startswith("¿?") for text in page.texts["label"])


# ------------------------------------------------------------------------------------ unsubscribe


def test_unsubscribe_page_and_one_click(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant, throttleDays=0)
    first, second = unique_email("page"), unique_email("oneclick")
    ids = [
        r["invitationId"]
        for r in invite(client, tenant, survey["id"], [{"email": first, "locale": "fr"}, {"email": second}])
    ]
    run_jobs(database.db)
    page_url = local(unsubscribe_url(smtp.to(first)[0]))

    confirm = client.get(page_url)
    assert confirm.status_code == 200
    markup = Markup(confirm.text)
    assert markup.texts["h1"] == ["Se désabonner"]
    assert first in confirm.text
    assert markup.all("form", method="post")
    assert client.get("/v1/unsubscribes", params={"email": first}, headers=tenant.viewer).json() == []

    done = client.post(page_url)
    assert done.status_code == 200 and Markup(done.text).texts["h1"] == ["Vous êtes désabonné"]
    [entry] = client.get("/v1/unsubscribes", params={"email": first}, headers=tenant.viewer).json()
    assert (entry["source"], entry["invitationId"]) == ("link", ids[0])
    assert client.post(page_url).status_code == 200  # twice is fine
    assert Markup(client.get(page_url).text).texts["h1"] == ["Vous êtes désabonné"]

    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click" to the List-Unsubscribe URL
    one_click = client.post(
        local(unsubscribe_url(smtp.to(second)[0])),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    [entry] = client.get("/v1/unsubscribes", params={"email": second}, headers=tenant.viewer).json()
    assert (entry["source"], entry["invitationId"]) == ("one-click", ids[1])

    results = invite(client, tenant, survey["id"], [{"email": first}, {"email": second.upper()}])
    assert [r["status"] for r in results] == ["unsubscribed", "unsubscribed"]
    # the survey link itself still works for an answer they want to give
    assert client.get(local(score_links(part(smtp.to(first)[0], "plain"))[9])).status_code == 200


def test_unsubscribe_works_after_the_link_expired(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    inv_id, links, address = sent_invitation(client, tenant, database, smtp, survey["id"])
    with database.db.transaction() as session:
        session.execute(
            update(Invitation).where(Invitation.id == inv_id).values(expires_at=datetime(2000, 1, 1))
        )
    r = client.post(f"/u/{token_of(links[0])}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert len(client.get("/v1/unsubscribes", params={"email": address}, headers=tenant.viewer).json()) == 1


# ------------------------------------------------------------------------------------ public link


def public_path(client: Any, tenant: Tenant, survey_id: str) -> str:
    r = client.get(f"/v1/nps-surveys/{survey_id}/link", headers=tenant.viewer)
    assert r.status_code == 200, r.text
    return local(r.json()["url"])


def test_public_link(client: Any, tenant: Tenant, other: Tenant, database: TestDatabase) -> None:
    survey = make_survey(client, tenant, language="de", thankYouMessage="Danke!")
    r = client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.viewer)
    assert r.status_code == 200
    link = r.json()
    assert link["url"] == f"{database.settings.base_url.rstrip('/')}/s/{link['publicId']}"
    assert len(link["publicId"]) >= 16
    assert client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.admin).json() == link  # stable
    assert_error(client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=other.viewer), 404)
    path = local(link["url"])

    page = client.get(path)
    assert page.status_code == 200
    markup = Markup(page.text)
    assert markup.all("html", lang="de")
    assert len(markup.all("input", type="radio", name="score")) == 11
    assert not markup.all("input", name="email")

    anonymous = client.post(path, data={"score": "10", "comment": "Super"})
    assert anonymous.status_code == 200 and "Danke!" in anonymous.text
    [record] = records_of(client, tenant, service.ANONYMOUS_EMAIL)
    assert (record["score"], record["comment"], record["source"], record["campaignId"]) == (
        10,
        "Super",
        "link",
        survey["id"],
    )

    address = unique_email("public")
    identified = Markup(client.get(path, params={"email": address}).text)
    assert identified.all("input", type="hidden", name="email", value=address)
    assert client.post(path, data={"score": "6", "email": address}).status_code == 200
    [mine] = records_of(client, tenant, address)
    assert (mine["score"], mine["source"], mine["campaignId"]) == (6, "link", survey["id"])
    assert client.get(f"/v1/nps-surveys/{survey['id']}", headers=tenant.viewer).json()["responseCount"] == 2

    assert client.get(path, params={"email": "not an address"}).status_code == 400
    assert client.post(path, data={"score": "6", "email": "nope"}).status_code == 400
    assert client.post(path, data={"score": "twelve"}).status_code == 400
    assert client.get("/s/unknown-public-id").status_code == 404
    assert client.get("/s/x").status_code == 404
    client.post(f"/v1/nps-surveys/{survey['id']}/toggle", headers=tenant.editor)
    assert client.get(path).status_code == 410
    assert client.post(path, data={"score": "1"}).status_code == 410
    assert client.get(f"/v1/nps-surveys/{survey['id']}", headers=tenant.viewer).json()["responseCount"] == 2


def test_public_link_is_rate_limited(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    path = public_path(client, tenant, survey["id"])
    address = unique_email("eager")
    limit, _ = pages.IDENTIFIED_LIMIT
    for _ in range(limit):
        assert client.post(path, data={"score": "9", "email": address}).status_code == 200
    blocked = client.post(path, data={"score": "9", "email": address.upper()})
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert client.post(path, data={"score": "9", "email": unique_email()}).status_code == 200
    assert len(records_of(client, tenant, address)) == limit

    anonymous_limit, _ = pages.ANONYMOUS_LIMIT
    for _ in range(anonymous_limit):
        assert client.post(path, data={"score": "3"}).status_code == 200
    assert client.post(path, data={"score": "3"}).status_code == 429
    other_survey = public_path(client, tenant, make_survey(client, tenant)["id"])
    assert client.post(other_survey, data={"score": "3"}).status_code == 200
