"""Walk every operation of the API as a second organization, aimed at the first one's objects.

Each path parameter is filled with the first organization's ids (and ``extid-`` / ``srcid-``
forms); every method must answer 404 (or 403) and change nothing. Every list, export, metric
and search of the second organization must show none of the first one's data.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from conftest import Tenant

BODIES: dict[tuple[str, str], Any] = {
    ("put", "/nps/{key}"): {"score": 1, "comment": "hijacked"},
    ("put", "/companies/{key}"): {"name": "hijacked"},
    ("put", "/endusers/{key}"): {"name": "hijacked"},
    ("put", "/v1/nps-surveys/{id}"): {"name": "hijacked"},
    ("patch", "/v1/nps-surveys/{id}"): {"name": "hijacked"},
    ("post", "/v1/nps-surveys/{id}/responses"): {"email": "intruder@example.com", "score": 0},
    ("post", "/v1/nps-surveys/{id}/invitations"): {"recipients": [{"email": "intruder@example.com"}]},
    ("patch", "/v1/webhooks/{id}"): {"description": "hijacked"},
    ("patch", "/v1/alert-rules/{id}"): {"name": "hijacked", "scoreAtMost": 10},
    ("put", "/v1/answers/{id}/tags"): {"tags": ["hijacked"]},
    ("post", "/v1/answers/{id}/notes"): {"text": "hijacked"},
    ("put", "/v1/answers/{id}/follow-up"): {"status": "resolved"},
    ("patch", "/v1/digests/{id}"): {"name": "hijacked", "hour": 3},
    ("patch", "/v1/insights/themes/{id}"): {"name": "hijacked"},
    ("post", "/v1/insights/suggestions/{id}/adopt"): {"name": "hijacked"},
}


@pytest.fixture
def victim(client: Any, tenant: Tenant) -> dict[str, Any]:
    """A full set of objects in ``tenant``, all marked with one unique string."""
    mark = "mark" + secrets.token_hex(6)
    h = tenant.admin
    company = client.post(
        "/companies",
        json={
            "name": f"{mark} Corp",
            "domains": [f"{mark}.com"],
            "externalId": f"ext-{mark}",
            "sourceId": f"src-{mark}",
        },
        headers=h,
    ).json()
    enduser = client.post(
        "/endusers",
        json={
            "email": f"boss@{mark}.com",
            "name": mark,
            "externalId": f"eu-{mark}",
            "sourceId": f"eus-{mark}",
        },
        headers=h,
    ).json()
    survey = client.post("/v1/nps-surveys", json={"name": f"{mark} survey"}, headers=h).json()
    record = client.post(
        "/nps",
        json={
            "email": f"boss@{mark}.com",
            "score": 9,
            "comment": mark,
            "sourceId": f"rec-{mark}",
            "campaignId": survey["id"],
            "source": mark,
        },
        headers=h,
    ).json()
    invited = client.post(
        f"/v1/nps-surveys/{survey['id']}/invitations",
        json={"recipients": [{"email": f"guest@{mark}.com"}]},
        headers=h,
    ).json()
    invitation_id = invited["results"][0]["invitationId"]
    webhook = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["response.created"], "description": mark},
        headers=h,
    ).json()
    digest = client.post(
        "/v1/digests",
        json={
            "name": mark,
            "frequency": "daily",
            "hour": 9,
            "timeZone": "UTC",
            "emails": [f"team@{mark}.com"],
        },
        headers=h,
    ).json()
    alert_rule = client.post(
        "/v1/alert-rules",
        json={
            "name": mark,
            "surveyId": survey["id"],
            "companyId": company["_id"],
            "commentContains": [mark],
            "emails": [f"team@{mark}.com"],
            "chatWebhookUrl": f"http://127.0.0.1:9/{mark}",
        },
        headers=h,
    ).json()
    user = client.post(
        "/v1/users", json={"email": f"user@{mark}.com", "role": "viewer", "password": mark}, headers=h
    ).json()
    unsub = f"gone@{mark}.com"
    assert client.post("/v1/unsubscribes", json={"email": unsub}, headers=h).status_code in (200, 201)
    erasure = client.post("/v1/erasures", json={"email": f"erased@{mark}.com"}, headers=h).json()
    imported = client.post(
        "/v1/imports",
        files={"file": (f"{mark}.csv", f"email,score,comment\nboss@{mark}.com,7,{mark}\n".encode())},
        headers=h,
    ).json()
    theme = client.post(
        "/v1/insights/themes", json={"name": mark, "examples": [f"{mark} example"]}, headers=h
    ).json()
    return {
        "mark": mark,
        "theme": theme,
        "company": company,
        "enduser": enduser,
        "survey": survey,
        "record": record,
        "invitation": invitation_id,
        "webhook": webhook,
        "alert_rule": alert_rule,
        "digest": digest,
        "unsubscribe": unsub,
        "user": user,
        "erasure": erasure,
        "import": imported,
    }


def keys_for(path: str, v: dict[str, Any], tenant: Tenant) -> list[str]:
    m = v["mark"]
    if path.startswith("/nps/"):
        return [v["record"]["_id"], f"srcid-rec-{m}"]
    if path.startswith("/v1/answers/"):
        return [v["record"]["_id"], f"srcid-rec-{m}"]
    if path.startswith("/companies/"):
        return [v["company"]["_id"], f"extid-ext-{m}", f"srcid-src-{m}"]
    if path.startswith("/endusers/"):
        return [v["enduser"]["_id"], f"extid-eu-{m}", f"srcid-eus-{m}"]
    if path.startswith("/v1/nps-surveys/"):
        return [v["survey"]["id"]]
    if path.startswith("/v1/invitations/"):
        return [v["invitation"]]
    if path.startswith("/v1/webhooks/"):
        return [v["webhook"]["id"]]
    if path.startswith("/v1/alert-rules/"):
        return [v["alert_rule"]["id"]]
    if path.startswith("/v1/digests/"):
        return [v["digest"]["id"]]
    if path.startswith("/v1/unsubscribes/"):
        return [v["unsubscribe"]]
    if path.startswith("/v1/tokens/"):
        return [tenant.jtis["viewer"]]
    if path.startswith("/v1/users/"):
        return [v["user"]["id"]]
    if path.startswith("/v1/erasures/"):
        return [v["erasure"]["id"]]
    if path.startswith("/v1/imports/"):
        return [v["import"]["id"]]
    if path.startswith(("/v1/insights/themes/", "/v1/insights/suggestions/")):
        return [v["theme"]["id"]]
    raise AssertionError(f"no id known for {path}: extend this test")


def snapshot(client: Any, tenant: Tenant, v: dict[str, Any]) -> list[Any]:
    h = tenant.admin
    return [
        client.get(f"/nps/{v['record']['_id']}", headers=h).json(),
        client.get(f"/v1/answers/{v['record']['_id']}", headers=h).json(),
        client.get(f"/companies/{v['company']['_id']}", headers=h).json(),
        client.get(f"/endusers/{v['enduser']['_id']}", headers=h).json(),
        client.get(f"/v1/nps-surveys/{v['survey']['id']}", headers=h).json(),
        client.get(f"/v1/invitations/{v['invitation']}", headers=h).json(),
        client.get(f"/v1/webhooks/{v['webhook']['id']}", headers=h).json(),
        client.get(f"/v1/alert-rules/{v['alert_rule']['id']}", headers=h).json(),
        client.get(f"/v1/digests/{v['digest']['id']}", headers=h).json(),
        client.get(f"/v1/digests/{v['digest']['id']}/deliveries", headers=h).json(),
        client.get(f"/v1/insights/themes/{v['theme']['id']}", headers=h).json(),
        sorted(u["email"] for u in client.get("/v1/unsubscribes", headers=h).json()),
        sorted(u["email"] for u in client.get("/v1/users", headers=h).json()),
        client.get("/nps", headers=tenant.viewer).status_code,
    ]


def test_every_operation_on_another_tenants_objects_is_404(
    client: Any, tenant: Tenant, other: Tenant, victim: dict[str, Any]
) -> None:
    before = snapshot(client, tenant, victim)
    spec = client.get("/openapi.json").json()
    tried = 0
    failures = []
    for path, operations in spec["paths"].items():
        if "{" not in path:
            continue
        for method in operations:
            for key in keys_for(path, victim, tenant):
                url = path.replace("{" + path.split("{")[1].split("}")[0] + "}", key)
                body = BODIES.get((method, path))
                if path.endswith("/merge"):
                    body = {"into": key}  # into itself: the theme's own lookup must fail first
                declared = {p["name"] for p in operations[method].get("parameters", []) if p["in"] == "query"}
                # as hard as the operation allows (an undeclared parameter is a 400 before any lookup)
                params = {"cascade": "true"} if "cascade" in declared else {}
                if path.endswith("/export"):
                    params["format"] = "csv"
                r = client.request(method.upper(), url, json=body, params=params, headers=other.admin)
                tried += 1
                echoed = r.text.replace(key, "")  # an error may quote the key the caller sent
                if r.status_code not in (403, 404) or victim["mark"] in echoed:
                    failures.append(f"{method.upper()} {url} -> {r.status_code} {r.text[:200]}")
    assert failures == []
    assert tried >= 40
    assert snapshot(client, tenant, victim) == before


def test_lists_exports_metrics_and_searches_show_nothing_of_another_tenant(
    client: Any, tenant: Tenant, other: Tenant, victim: dict[str, Any]
) -> None:
    m = victim["mark"]
    survey_id = victim["survey"]["id"]
    reads = [
        ("/nps", {"npsExpiryDay": 0, "limit": 10000}),
        ("/nps", {"email": f"boss@{m}.com"}),
        ("/nps", {"campaignId": survey_id}),
        ("/nps", {"companyId": victim["company"]["_id"]}),
        ("/nps/export", {"format": "csv", "npsExpiryDay": 0}),
        ("/nps/export", {"format": "ndjson", "campaignId": survey_id}),
        ("/companies", {"limit": 10000}),
        ("/endusers", {"email": f"boss@{m}.com"}),
        ("/endusers", {"limit": 10000}),
        ("/v1/nps-surveys", {"q": m}),
        ("/v1/nps-surveys", {"limit": 100}),
        ("/v1/nps-surveys/stats", {}),
        ("/v1/nps-surveys/nps-metrics", {"groupBy": "survey"}),
        ("/v1/nps-surveys/metrics/nps", {"groupBy": "company"}),
        ("/v1/nps-surveys/nps-metrics", {"groupBy": "source", "surveyId": survey_id}),
        ("/v1/unsubscribes", {}),
        ("/v1/webhooks", {}),
        ("/v1/alert-rules", {}),
        ("/v1/digests", {}),
        ("/v1/tokens", {}),
        ("/v1/users", {}),
        ("/v1/erasures", {}),
        ("/v1/imports", {}),
        ("/v1/insights/themes", {}),
        ("/v1/insights/answers", {}),
        ("/v1/insights/suggestions", {}),
        ("/v1/insights/status", {}),
    ]
    for path, params in reads:
        r = client.get(path, params=params, headers=other.admin)
        assert r.status_code in (200, 404), (path, r.status_code, r.text[:300])
        assert m not in r.text, (path, params)
        assert survey_id not in r.text or path == "/nps", (path, params)
        for jti in tenant.jtis.values():
            assert jti not in r.text
    stats = client.get("/v1/nps-surveys/stats", headers=other.admin).json()
    assert stats["total"] == 0 and stats["totalResponses"] == 0
    metrics = client.get("/v1/nps-surveys/nps-metrics", headers=other.admin).json()
    assert metrics["totalResponses"] == 0 and metrics["npsScore"] is None
    # ...while the owner sees its own
    assert client.get("/v1/nps-surveys/stats", headers=tenant.admin).json()["totalResponses"] == 1
