"""A webhook's deliveries of ``person.erased`` can be listed by their event type, on both databases.

The delivery list's ``eventType`` filter used to name its own list of types, without
``person.erased``: asking for those deliveries was a 400. It now takes every event type a webhook
can subscribe to (and ``webhook.test``).
"""

from __future__ import annotations

from typing import Any

from conftest import Tenant, TestDatabase, assert_error, post_nps
from mail_helpers import run_jobs


def test_erasure_deliveries_are_found_by_their_event_type(
    client: Any, tenant: Tenant, database: TestDatabase
) -> None:
    hook = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/erased", "events": ["person.erased"]},
        headers=tenant.admin,
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    post_nps(client, tenant, "leaving@example.com", 4)
    erasure = client.post("/v1/erasures", json={"email": "leaving@example.com"}, headers=tenant.admin)
    assert erasure.status_code == 202
    run_jobs(database.db)
    url = f"/v1/webhooks/{hook_id}/deliveries"
    found = client.get(url, params={"eventType": "person.erased"}, headers=tenant.admin)
    assert found.status_code == 200, found.text
    assert [d["eventType"] for d in found.json()] == ["person.erased"]
    assert found.headers["X-Total-Count"] == "1"
    none = client.get(url, params={"eventType": "response.created"}, headers=tenant.admin)
    assert none.json() == [] and none.headers["X-Total-Count"] == "0"
    assert_error(
        client.get(url, params={"eventType": "person.forgotten"}, headers=tenant.admin), 400, "eventType"
    )
