"""``/v1/nps-surveys/{id}/invitations``, ``/v1/invitations/{id}`` and ``/v1/unsubscribes`` over HTTP,
on both databases: per-recipient results, throttling, duplicates, cancel, listing, roles, tenancy,
and that queueing thousands of recipients costs a fixed number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select

from conftest import Tenant, TestDatabase, assert_error, iso_ms
from mail_helpers import (
    Sink,
    get_invitation,
    invite,
    invite_one,
    make_survey,
    run_jobs,
    unique_email,
)
from npsd.analytics import metrics
from npsd.kit.models import Invitation, Job

ISO_LEN = len("2021-07-29T20:09:50.914Z")


def parse(value: str) -> datetime:
    assert value.endswith("Z") and len(value) == ISO_LEN, value
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


def in_days(days: float) -> str:
    return iso_ms(datetime.now(UTC) + timedelta(days=days))


def company(client: Any, tenant: Tenant) -> str:
    r = client.post("/companies", json={"name": "Acme"}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return str(r.json()["_id"])


# -------------------------------------------------------------------------------------- results


def test_one_result_per_recipient_in_order(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    acme = company(client, tenant)
    a, b = unique_email("a"), unique_email("b")
    recipients: list[Any] = [
        {"email": a, "name": "Ann"},
        {"email": "not-an-address"},
        {"email": a.upper()},  # same address, other case
        {"email": b, "companyId": acme, "locale": "de-CH", "properties": {"plan": "pro"}},
        42,
        {"email": unique_email(), "phone": "123"},
        {"email": unique_email(), "companyId": "0123456789abcdef01234567"},
        {"email": unique_email(), "companyId": "acme"},
        {"email": unique_email(), "locale": "not a locale"},
        {"name": "no address"},
    ]
    results = invite(client, tenant, survey["id"], recipients)
    assert [r["status"] for r in results] == [
        "queued",
        "invalid",
        "duplicate",
        "queued",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
    ]
    assert [r["email"] for r in results[:4]] == [a, "not-an-address", a.upper(), b]
    assert set(results[0]) == {"email", "status", "invitationId"}
    assert set(results[2]) == {"email", "status"}
    assert results[1]["reason"] == "email must be a valid e-mail address"
    assert results[4] == {"email": None, "status": "invalid", "reason": "must be a JSON object"}
    assert "phone" in results[5]["reason"] and "not a known field" in results[5]["reason"]
    assert results[6]["reason"] == "companyId does not name a company of your organization"
    assert "companyId" in results[7]["reason"]
    assert "locale" in results[8]["reason"]
    assert results[9]["email"] is None and "email" in results[9]["reason"]

    listed = client.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=tenant.viewer)
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "2"
    by_id = {inv["id"]: inv for inv in listed.json()}
    assert set(by_id) == {results[0]["invitationId"], results[3]["invitationId"]}
    second = by_id[results[3]["invitationId"]]
    assert second["email"] == b
    assert second["companyId"] == acme
    assert second["locale"] == "de-CH"
    assert second["properties"] == {"plan": "pro"}
    assert second["status"] == "queued"
    assert by_id[results[0]["invitationId"]]["name"] == "Ann"


def test_invitation_fields_and_contact(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    acme = company(client, tenant)
    known = unique_email("known")
    r = client.post("/endusers", json={"email": known, "companyId": acme}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    contact_id = r.json()["_id"]
    send_at = in_days(2)
    results = invite(
        client, tenant, survey["id"], [{"email": known}, {"email": unique_email()}], sendAt=send_at
    )
    inv = get_invitation(client, tenant, results[0]["invitationId"])
    assert set(inv) == {
        "id",
        "surveyId",
        "email",
        "name",
        "companyId",
        "enduserId",
        "locale",
        "properties",
        "status",
        "sendAt",
        "sentAt",
        "remindedAt",
        "answeredAt",
        "cancelledAt",
        "failedReason",
        "responseId",
        "expiresAt",
        "createdAt",
        "updatedAt",
    }
    assert inv["surveyId"] == survey["id"]
    assert inv["enduserId"] == contact_id
    assert inv["companyId"] == acme  # taken from the existing contact
    assert inv["sendAt"] == send_at
    assert parse(inv["expiresAt"]) == parse(send_at) + timedelta(days=30)
    assert inv["sentAt"] is None and inv["answeredAt"] is None and inv["responseId"] is None
    stranger = get_invitation(client, tenant, results[1]["invitationId"])
    assert stranger["enduserId"] is None and stranger["companyId"] is None


def test_new_address_is_invited_for_the_company_of_its_domain(
    client: Any, tenant: Tenant, other: Tenant
) -> None:
    """As on every write path, an address without a contact belongs to the company whose domains
    hold it (of the inviting organization only), so the invitation and its answer agree."""
    survey = make_survey(client, tenant)
    r = client.post(
        "/companies", json={"name": "Domain Co", "domains": ["domainco.example"]}, headers=tenant.editor
    )
    domain_co = r.json()["_id"]
    client.post("/companies", json={"name": "Theirs", "domains": ["theirs.example"]}, headers=other.editor)
    results = invite(
        client,
        tenant,
        survey["id"],
        [
            {"email": unique_email("new", "domainco.example")},
            {"email": unique_email("new", "theirs.example")},
        ],
    )
    invited = [get_invitation(client, tenant, x["invitationId"]) for x in results]
    assert [(i["enduserId"], i["companyId"]) for i in invited] == [(None, domain_co), (None, None)]


def test_send_job_is_queued_at_send_at(client: Any, tenant: Tenant, database: TestDatabase) -> None:
    survey = make_survey(client, tenant)
    send_at = in_days(1)
    inv_id = invite_one(client, tenant, survey["id"], unique_email(), **{})
    later = invite(client, tenant, survey["id"], [{"email": unique_email()}], sendAt=send_at)[0][
        "invitationId"
    ]
    with database.db.transaction(write=False) as session:
        jobs = {
            j.payload["invitation_id"]: j
            for j in session.scalars(
                select(Job).where(
                    Job.dedupe_key.in_([f"invitation.send:{inv_id}", f"invitation.send:{later}"])
                )
            )
        }
    assert set(jobs) == {inv_id, later}
    assert jobs[later].kind == "invitation.send" and jobs[later].status == "queued"
    assert iso_ms(jobs[later].run_at.replace(tzinfo=UTC)) == send_at
    assert jobs[inv_id].run_at <= datetime.now(UTC).replace(tzinfo=None)


# -------------------------------------------------------------------------------------- throttling


def test_throttle_counts_every_survey_of_the_organization(client: Any, tenant: Tenant, other: Tenant) -> None:
    first = make_survey(client, tenant, throttleDays=90)
    second = make_survey(client, tenant, throttleDays=30)
    address = unique_email()
    inv_id = invite_one(client, tenant, first["id"], address)
    sent_at = parse(get_invitation(client, tenant, inv_id)["sendAt"])

    [throttled] = invite(client, tenant, second["id"], [{"email": address.upper()}])
    assert throttled["status"] == "throttled"
    assert parse(throttled["nextEligibleAt"]) == sent_at + timedelta(days=30)  # the new survey's throttleDays

    # due after the window: accepted
    [later] = invite(client, tenant, second["id"], [{"email": address}], sendAt=in_days(31))
    assert later["status"] == "queued"

    # another organization is not throttled by this one
    [elsewhere] = invite(client, other, make_survey(client, other)["id"], [{"email": address}])
    assert elsewhere["status"] == "queued"

    # a survey with throttleDays 0 does not throttle
    [free] = invite(client, tenant, make_survey(client, tenant, throttleDays=0)["id"], [{"email": address}])
    assert free["status"] == "queued"


def test_cancelled_invitations_do_not_throttle(client: Any, tenant: Tenant) -> None:
    first, second = make_survey(client, tenant), make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, first["id"], address)
    assert client.delete(f"/v1/invitations/{inv_id}", headers=tenant.editor).status_code == 200
    [result] = invite(client, tenant, second["id"], [{"email": address}])
    assert result["status"] == "queued"


def test_open_invitation_to_the_same_survey_is_a_duplicate(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant, throttleDays=0)
    address = unique_email()
    invite_one(client, tenant, survey["id"], address)
    [again] = invite(client, tenant, survey["id"], [{"email": address}])
    assert again == {"email": address, "status": "duplicate"}


def test_unsubscribed_address_is_not_invited(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    address = unique_email()
    r = client.post("/v1/unsubscribes", json={"email": address}, headers=tenant.editor)
    assert r.status_code == 201, r.text
    [result] = invite(client, tenant, survey["id"], [{"email": address.upper()}])
    assert result == {"email": address.upper(), "status": "unsubscribed"}


# -------------------------------------------------------------------------------------- bad input


def test_bad_bodies_are_400_naming_the_field(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    url = f"/v1/nps-surveys/{survey['id']}/invitations"
    h = tenant.editor
    assert_error(client.post(url, json={}, headers=h), 400, "recipients")
    assert_error(client.post(url, json={"recipients": "a@b.io"}, headers=h), 400, "recipients")
    assert_error(client.post(url, json={"recipients": []}, headers=h), 400, "recipients")
    assert_error(
        client.post(url, json={"recipients": [{"email": "a@b.io"}], "sendAt": "soon"}, headers=h),
        400,
        "sendAt",
    )
    assert_error(
        client.post(
            url, json={"recipients": [{"email": "a@b.io"}], "sendAt": "1900-01-01T00:00:00Z"}, headers=h
        ),
        400,
        "sendAt",
    )
    assert_error(
        client.post(url, json={"recipients": [{"email": "a@b.io"}], "subject": "x"}, headers=h),
        400,
        "subject",
    )
    assert_error(
        client.post(url, content=b"{not json", headers={**h, "Content-Type": "application/json"}), 400
    )
    assert_error(client.post(url, json=[{"email": "a@b.io"}], headers=h), 400)
    too_many = [{"email": f"u{i}@example.com"} for i in range(5001)]
    assert_error(client.post(url, json={"recipients": too_many}, headers=h), 400, "recipients")
    nul = client.post(url, json={"recipients": [{"email": "a@b.io", "name": "x\x00y"}]}, headers=h)
    assert nul.status_code == 200
    assert nul.json()["results"][0]["status"] == "invalid" and "NUL" in nul.json()["results"][0]["reason"]
    assert_error(
        client.post(
            "/v1/nps-surveys/nope/invitations", json={"recipients": [{"email": "a@b.io"}]}, headers=h
        ),
        400,
        "id",
    )
    assert_error(
        client.post(
            "/v1/nps-surveys/0123456789abcdef01234567/invitations",
            json={"recipients": [{"email": "a@b.io"}]},
            headers=h,
        ),
        404,
    )
    listing = f"/v1/nps-surveys/{survey['id']}/invitations"
    assert_error(client.get(listing, params={"status": "lost"}, headers=h), 400, "status")
    assert_error(client.get(listing, params={"limit": 101}, headers=h), 400, "limit")
    assert_error(client.get(listing, params={"page": 0}, headers=h), 400, "page")
    assert_error(client.get(listing, params={"sortOrder": "up"}, headers=h), 400, "sortOrder")
    assert_error(client.get(listing, params={"email": "a\x00b"}, headers=h), 400, "email")
    assert_error(client.get("/v1/invitations/xyz", headers=h), 400, "id")
    assert_error(client.delete("/v1/invitations/0123456789abcdef01234567", headers=h), 404)


def test_closed_survey_takes_no_invitations(client: Any, tenant: Tenant) -> None:
    off = make_survey(client, tenant, isActive=False)
    body = {"recipients": [{"email": unique_email()}]}
    assert_error(
        client.post(f"/v1/nps-surveys/{off['id']}/invitations", json=body, headers=tenant.editor),
        409,
        "isActive",
    )
    ending = make_survey(client, tenant, endsAt=in_days(1))
    assert_error(
        client.post(
            f"/v1/nps-surveys/{ending['id']}/invitations",
            json={**body, "sendAt": in_days(2)},
            headers=tenant.editor,
        ),
        409,
        "sendAt",
    )
    listed = client.get(f"/v1/nps-surveys/{off['id']}/invitations", headers=tenant.viewer)
    assert listed.json() == [] and listed.headers["X-Total-Count"] == "0"


def test_roles(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    url = f"/v1/nps-surveys/{survey['id']}/invitations"
    body = {"recipients": [{"email": unique_email()}]}
    assert_error(client.post(url, json=body, headers=tenant.viewer), 403)
    assert_error(client.post(url, json=body), 401)
    inv_id = invite_one(client, tenant, survey["id"], unique_email())
    assert client.get(url, headers=tenant.viewer).status_code == 200
    assert client.get(f"/v1/invitations/{inv_id}", headers=tenant.viewer).status_code == 200
    assert_error(client.delete(f"/v1/invitations/{inv_id}", headers=tenant.viewer), 403)
    assert client.delete(f"/v1/invitations/{inv_id}", headers=tenant.editor).status_code == 200


# -------------------------------------------------------------------------------------- set-based


def _statements(database: TestDatabase, fn: Any) -> int:
    count = 0

    def counter(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(database.db.engine, "before_cursor_execute", counter)
    try:
        fn()
    finally:
        event.remove(database.db.engine, "before_cursor_execute", counter)
    return count


def test_five_thousand_recipients_in_a_fixed_number_of_queries(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    survey = make_survey(client, tenant, throttleDays=30)
    domain = f"bulk-{survey['id']}.example.com"
    small = [{"email": f"s{i}@{domain}"} for i in range(10)]
    big = [{"email": f"u{i}@{domain}", "name": f"User {i}"} for i in range(5000)]
    results: list[dict[str, Any]] = []

    def send(recipients: list[dict[str, Any]]) -> None:
        # far ahead, so no later test's job run has to send them
        results[:] = invite(client, tenant, survey["id"], recipients, sendAt=in_days(300))

    few = _statements(database, lambda: send(small))
    many = _statements(database, lambda: send(big))
    assert [r["status"] for r in results] == ["queued"] * 5000
    assert len({r["invitationId"] for r in results}) == 5000
    # lookups run per 900 addresses and inserts per 1,000 rows, never per recipient
    assert few < 25, few
    assert many <= few + 30, (few, many)
    listed = client.get(
        f"/v1/nps-surveys/{survey['id']}/invitations", params={"limit": 1}, headers=tenant.viewer
    )
    assert listed.headers["X-Total-Count"] == "5010"
    with database.db.transaction(write=False) as session:
        jobs = session.scalar(
            select(Job.id).where(Job.dedupe_key == f"invitation.send:{results[-1]['invitationId']}")
        )
    assert jobs is not None


# ------------------------------------------------------------------------------------ list, cancel


def test_list_filters_and_paging(client: Any, tenant: Tenant) -> None:
    survey = make_survey(client, tenant)
    addresses = [unique_email(f"p{i}") for i in range(5)]
    ids = [r["invitationId"] for r in invite(client, tenant, survey["id"], [{"email": a} for a in addresses])]
    assert client.delete(f"/v1/invitations/{ids[1]}", headers=tenant.editor).status_code == 200
    url = f"/v1/nps-surveys/{survey['id']}/invitations"

    def listed(**params: Any) -> tuple[list[str], str]:
        r = client.get(url, params=params, headers=tenant.viewer)
        assert r.status_code == 200, r.text
        return [inv["id"] for inv in r.json()], r.headers["X-Total-Count"]

    assert listed(status="cancelled") == ([ids[1]], "1")
    assert listed(status="queued")[1] == "4"
    assert listed(status="queued, CANCELLED")[1] == "5"
    assert listed(status="sent") == ([], "0")
    assert listed(email=addresses[3].upper()) == ([ids[3]], "1")
    page1, total = listed(limit=2, sortOrder="asc")
    page3, _ = listed(limit=2, page=3, sortOrder="asc")
    assert total == "5" and page1 == ids[:2] and page3 == ids[4:]
    assert listed(limit=2)[0] == [ids[4], ids[3]]
    assert listed(page=9) == ([], "5")


def test_cancel(client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink) -> None:
    survey = make_survey(client, tenant)
    kept, dropped = unique_email("kept"), unique_email("dropped")
    ids = [
        r["invitationId"] for r in invite(client, tenant, survey["id"], [{"email": kept}, {"email": dropped}])
    ]
    r = client.delete(f"/v1/invitations/{ids[1]}", headers=tenant.editor)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    cancelled_at = r.json()["cancelledAt"]
    assert cancelled_at is not None
    again = client.delete(f"/v1/invitations/{ids[1]}", headers=tenant.editor)
    assert again.status_code == 200 and again.json()["cancelledAt"] == cancelled_at

    run_jobs(database.db)
    assert len(smtp.to(kept)) == 1
    assert smtp.to(dropped) == []
    assert get_invitation(client, tenant, ids[1])["status"] == "cancelled"
    sent = client.delete(f"/v1/invitations/{ids[0]}", headers=tenant.editor)
    body = assert_error(sent, 409, "status")
    assert "sent" in body["message"]
    assert get_invitation(client, tenant, ids[0])["status"] == "sent"


def test_deleting_the_survey_drops_its_invitations(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    survey = make_survey(client, tenant)
    address = unique_email()
    inv_id = invite_one(client, tenant, survey["id"], address)
    assert client.delete(f"/v1/nps-surveys/{survey['id']}", headers=tenant.admin).status_code == 204
    assert_error(client.get(f"/v1/invitations/{inv_id}", headers=tenant.viewer), 404)
    run_jobs(database.db)
    assert smtp.to(address) == []
    with database.db.transaction(write=False) as session:
        job = session.scalar(select(Job).where(Job.dedupe_key == f"invitation.send:{inv_id}"))
        assert job is not None and job.status == "done"


def test_tenant_isolation(client: Any, tenant: Tenant, other: Tenant) -> None:
    survey = make_survey(client, tenant)
    inv_id = invite_one(client, tenant, survey["id"], unique_email())
    assert_error(client.get(f"/v1/invitations/{inv_id}", headers=other.admin), 404)
    assert_error(client.delete(f"/v1/invitations/{inv_id}", headers=other.admin), 404)
    assert_error(client.get(f"/v1/nps-surveys/{survey['id']}/invitations", headers=other.admin), 404)
    assert_error(
        client.post(
            f"/v1/nps-surveys/{survey['id']}/invitations",
            json={"recipients": [{"email": unique_email()}]},
            headers=other.admin,
        ),
        404,
    )
    assert_error(client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=other.admin), 404)
    assert get_invitation(client, tenant, inv_id)["status"] == "queued"


# ------------------------------------------------------------------------------------ unsubscribes


def test_unsubscribes_api(client: Any, tenant: Tenant, other: Tenant) -> None:
    survey = make_survey(client, tenant)
    address = unique_email("opt-out")
    pending = invite_one(client, tenant, survey["id"], address)

    assert_error(client.post("/v1/unsubscribes", json={"email": address}, headers=tenant.viewer), 403)
    assert_error(client.post("/v1/unsubscribes", json={"email": "nope"}, headers=tenant.editor), 400, "email")
    assert_error(
        client.post("/v1/unsubscribes", json={"email": address, "why": "x"}, headers=tenant.editor),
        400,
        "why",
    )
    created = client.post("/v1/unsubscribes", json={"email": address}, headers=tenant.editor)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == address
    assert created.json()["source"] == "api"
    assert created.json()["invitationId"] is None
    repeated = client.post("/v1/unsubscribes", json={"email": address.upper()}, headers=tenant.editor)
    assert repeated.status_code == 200 and repeated.json() == created.json()

    # the queued invitation was cancelled with it
    assert get_invitation(client, tenant, pending)["status"] == "cancelled"

    listed = client.get("/v1/unsubscribes", headers=tenant.viewer)
    assert listed.status_code == 200
    # only a hash of the address is kept: the full list cannot show it (README, "Erasure and retention")
    assert listed.json() == [{**created.json(), "email": None}] and listed.headers["X-Total-Count"] == "1"
    assert client.get(
        "/v1/unsubscribes", params={"email": address.upper()}, headers=tenant.viewer
    ).json() == [created.json()]
    assert client.get("/v1/unsubscribes", params={"email": "x@y.io"}, headers=tenant.viewer).json() == []
    assert client.get("/v1/unsubscribes", headers=other.admin).json() == []

    # other organizations are unaffected
    [elsewhere] = invite(client, other, make_survey(client, other)["id"], [{"email": address}])
    assert elsewhere["status"] == "queued"
    assert_error(client.delete(f"/v1/unsubscribes/{address}", headers=other.admin), 404)

    assert_error(client.delete(f"/v1/unsubscribes/{address}", headers=tenant.editor), 403)
    assert_error(client.delete("/v1/unsubscribes/not-an-address", headers=tenant.admin), 400, "email")
    assert client.delete(f"/v1/unsubscribes/{address.upper()}", headers=tenant.admin).status_code == 204
    assert_error(client.delete(f"/v1/unsubscribes/{address}", headers=tenant.admin), 404)
    assert client.get("/v1/unsubscribes", headers=tenant.viewer).json() == []
    # invitable again (the cancelled one does not count as open, nor for throttling)
    [result] = invite(client, tenant, survey["id"], [{"email": address}])
    assert result["status"] == "queued"


def test_response_rate_is_none_before_anything_is_sent(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    survey = make_survey(client, tenant)
    invite_one(client, tenant, survey["id"], unique_email())
    with database.db.transaction(write=False) as session:
        assert metrics.response_rate(session, tenant.org_id, None) is None
        assert metrics.response_rate(session, tenant.org_id, [survey["id"]]) is None
        assert metrics.response_rate(session, tenant.org_id, []) is None
        stored = session.scalars(select(Invitation).where(Invitation.org_id == tenant.org_id)).all()
    assert len(stored) == 1 and len(stored[0].token_hash) == 64
