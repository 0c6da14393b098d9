"""Deleting a survey removes its invitations too, and their queued mails are never sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from conftest import Tenant, TestDatabase, assert_error
from npsd.kit.jobs import run_pending
from npsd.kit.models import Invitation, Job


def test_deleting_a_survey_removes_its_invitations_and_their_mail(
    client: Any, database: TestDatabase, tenant: Tenant
) -> None:
    survey = client.post("/v1/nps-surveys", json={"name": "short-lived"}, headers=tenant.admin).json()
    results = client.post(
        f"/v1/nps-surveys/{survey['id']}/invitations",
        json={"recipients": [{"email": "a@example.com"}, {"email": "b@example.com"}]},
        headers=tenant.admin,
    ).json()["results"]
    ids = [r["invitationId"] for r in results]
    assert [r["status"] for r in results] == ["queued", "queued"]
    assert client.delete(f"/v1/nps-surveys/{survey['id']}", headers=tenant.admin).status_code == 204
    for invitation_id in ids:
        assert_error(client.get(f"/v1/invitations/{invitation_id}", headers=tenant.admin), 404)
    with database.db.transaction(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Invitation).where(Invitation.id.in_(ids))) == 0
    run_pending(database.db)  # the queued send jobs find nothing to send and finish quietly
    with database.db.transaction(write=False) as s:
        statuses = set(s.scalars(select(Job.status).where(Job.org_id == tenant.org_id)))
    assert "failed" not in statuses and "queued" not in statuses
