"""Query parameters over HTTP, on both databases: a filter is never silently ignored.

Every operation of the OpenAPI document refuses a query parameter it does not declare (400 naming
it, in the one error shape); text parameters refuse NUL, ``sortOrder`` is one enum, a ``since``
after its ``until`` is a 400, and ``npsExpiryDay`` is a day count without a maximum. The
respondent pages, which people reach from mail links that mail clients decorate with tracking
parameters, ignore what they do not know.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from conftest import Tenant, TestDatabase, assert_error, post_nps
from mail_helpers import Sink, invite_one, local, make_survey, part, run_jobs, score_links, unsubscribe_url
from npsd.kit.errors import install_error_handlers
from npsd.kit.http import TransactionRoute

UNKNOWN = "bogusFilter"
# Operations that return a list (or a page of one, or figures over one): each must refuse UNKNOWN.
LIST_OPERATIONS = {
    "/nps",
    "/nps/export",
    "/companies",
    "/companies/{key}/endusers",
    "/endusers",
    "/v1/nps-surveys",
    "/v1/nps-surveys/{id}/responses",
    "/v1/nps-surveys/{id}/responses/export",
    "/v1/nps-surveys/{id}/invitations",
    "/v1/nps-surveys/nps-metrics",
    "/v1/nps-surveys/metrics/nps",
    "/v1/unsubscribes",
    "/v1/webhooks",
    "/v1/webhooks/{id}/deliveries",
    "/v1/alert-rules",
    "/v1/alert-rules/{id}/deliveries",
    "/v1/digests",
    "/v1/digests/{id}/deliveries",
    "/v1/tokens",
    "/v1/erasures",
}
REQUIRED_VALUES = {"format": "csv"}


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


@pytest.fixture
def objects(client: Any, tenant: Tenant) -> dict[str, str]:
    """One object of every kind in ``tenant``, to fill the path parameters of every operation."""
    h = tenant.admin
    company = client.post("/companies", json={"name": "Acme", "domains": ["qp-acme.com"]}, headers=h).json()
    enduser = client.post("/endusers", json={"email": "ann@qp-acme.com"}, headers=h).json()
    survey = make_survey(client, tenant)
    record = post_nps(client, tenant, "ann@qp-acme.com", 9, campaignId=survey["id"])
    invitation = invite_one(client, tenant, survey["id"], "ben@qp-acme.com")
    webhook = client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["response.created"]}, headers=h
    ).json()
    alert_rule = client.post(
        "/v1/alert-rules",
        json={"name": "Detractors", "scoreAtMost": 6, "emails": ["cx@qp-acme.com"]},
        headers=h,
    ).json()
    erasure = client.post("/v1/erasures", json={"email": "cal@qp-acme.com"}, headers=h).json()
    digest = client.post(
        "/v1/digests",
        json={
            "frequency": "weekly",
            "weekday": "monday",
            "hour": 8,
            "timeZone": "UTC",
            "emails": ["team@qp-acme.com"],
        },
        headers=h,
    ).json()
    upload = client.post(
        "/v1/imports",
        files={"file": ("answers.csv", b"email,score\ndan@qp-acme.com,8\n", "text/csv")},
        headers=h,
    )
    assert upload.status_code == 202, upload.text
    theme = client.post(
        "/v1/insights/themes", json={"name": "Events", "examples": ["the trade fair"]}, headers=h
    )
    assert theme.status_code == 201, theme.text
    return {
        "/nps/{key}": record["_id"],
        "/v1/answers/{id}": record["_id"],
        "/companies/{key}": company["_id"],
        "/endusers/{key}": enduser["_id"],
        "/v1/nps-surveys/{id}": survey["id"],
        "/v1/invitations/{id}": invitation,
        "/v1/webhooks/{id}": webhook["id"],
        "/v1/alert-rules/{id}": alert_rule["id"],
        "/v1/digests/{id}": digest["id"],
        "/v1/unsubscribes/{email}": "gone@qp-acme.com",
        "/v1/tokens/{jti}": tenant.jtis["viewer"],
        "/v1/erasures/{id}": erasure["id"],
        "/v1/imports/{id}": upload.json()["id"],
        "/v1/insights/themes/{id}": theme.json()["id"],
    }


def fill(path: str, objects: dict[str, str]) -> str:
    """``path`` with its parameter replaced by the id of the object of that kind."""
    for template, value in objects.items():
        if path.startswith(template):
            return template.split("{")[0] + value + path[len(template) :]
    assert "{" not in path, f"no object for {path}"
    return path


def get_operations(client: Any) -> dict[str, dict[str, Any]]:
    doc = client.get("/openapi.json").json()
    return {path: ops["get"] for path, ops in doc["paths"].items() if "get" in ops}


def test_every_get_operation_refuses_an_unknown_parameter(
    client: Any, tenant: Tenant, objects: dict[str, str]
) -> None:
    operations = get_operations(client)
    assert set(operations) >= LIST_OPERATIONS  # the walk below covers every list
    walked = set()
    for path, op in operations.items():
        if path in ("/healthz", "/readyz"):
            continue  # the probes of load balancers and orchestrators, outside the API's routers
        url = fill(path, objects)
        required = {
            p["name"]: REQUIRED_VALUES[p["name"]]
            for p in op.get("parameters", [])
            if p["in"] == "query" and p.get("required")
        }
        known = client.get(url, params=required, headers=tenant.admin)
        assert known.status_code == 200, (path, known.text)
        body = assert_error(
            client.get(url, params={**required, UNKNOWN: "1"}, headers=tenant.admin), 400, UNKNOWN
        )
        assert UNKNOWN in body["message"]
        walked.add(path)
    assert walked >= LIST_OPERATIONS


def test_every_unknown_parameter_is_named(client: Any, tenant: Tenant) -> None:
    r = client.get("/nps", params={"limit": 5, "colour": "red", "size": "xl"}, headers=tenant.viewer)
    body = assert_error(r, 400, "colour")
    assert {d["field"] for d in body["details"]} == {"colour", "size"}
    # a known parameter under another case is not the known one
    assert_error(client.get("/nps", params={"Limit": 5}, headers=tenant.viewer), 400, "Limit")


def test_a_company_filter_by_a_name_companies_do_not_take_is_refused_not_ignored(
    client: Any, tenant: Tenant
) -> None:
    """``?c=`` is Planhat's filter of ``/endusers`` (tests/test_endusers.py); ``/companies`` has no
    such filter: a 400 naming it, never every company as if it had not been sent."""
    h = tenant.admin
    acme = client.post("/companies", json={"name": "Acme", "domains": ["c-acme.com"]}, headers=h).json()
    assert_error(client.get("/companies", params={"c": acme["_id"]}, headers=h), 400, "c")


def test_unknown_parameter_on_a_write_applies_nothing(client: Any, tenant: Tenant) -> None:
    r = client.post(
        "/nps", params={"upsert": "true"}, json={"email": "w@qp.com", "score": 5}, headers=tenant.editor
    )
    assert_error(r, 400, "upsert")
    assert client.get("/nps", params={"email": "w@qp.com"}, headers=tenant.viewer).json() == []


def test_planhat_list_parameters_are_in_the_openapi_document(client: Any) -> None:
    """The parameters the Planhat NPS document names for ``GET /nps`` ("Get npss List": companyId,
    limit, offset, sort, select, npsExpiryDay) are declared, as are the list parameters of
    ``/companies`` and ``/endusers``."""
    operations = get_operations(client)

    def names(path: str) -> set[str]:
        return {p["name"] for p in operations[path].get("parameters", []) if p["in"] == "query"}

    assert {"companyId", "limit", "offset", "sort", "select", "npsExpiryDay"} <= names("/nps")
    assert {"limit", "offset", "sort", "select"} <= names("/companies")
    assert {"companyId", "email", "limit", "offset", "sort", "select"} <= names("/endusers")
    expiry = next(p for p in operations["/nps"]["parameters"] if p["name"] == "npsExpiryDay")
    assert "maximum" not in str(expiry["schema"])


TEXT_PARAMETERS = [
    ("/nps", "email"),
    ("/nps", "campaignId"),
    ("/nps/export", "email"),
    ("/endusers", "email"),
    ("/v1/nps-surveys", "q"),
    ("/v1/nps-surveys/{id}/responses", "email"),
    ("/v1/nps-surveys/{id}/responses", "q"),
    ("/v1/nps-surveys/{id}/invitations", "email"),
    ("/v1/unsubscribes", "email"),
    ("/v1/nps-surveys/nps-metrics", "source"),
]


@pytest.mark.parametrize(("path", "name"), TEXT_PARAMETERS)
def test_nul_in_a_text_parameter_is_a_400_naming_it(
    client: Any, tenant: Tenant, objects: dict[str, str], path: str, name: str
) -> None:
    params = {name: "a\x00b", **({"format": "csv"} if path.endswith("export") else {})}
    body = assert_error(client.get(fill(path, objects), params=params, headers=tenant.admin), 400, name)
    assert "NUL" in body["details"][0]["issue"]


def test_nul_in_a_path_parameter(client: Any, tenant: Tenant) -> None:
    assert_error(client.delete("/v1/unsubscribes/a%00b@x.com", headers=tenant.admin), 400, "email")
    assert_error(client.delete("/v1/tokens/a%00b", headers=tenant.admin), 400, "jti")


def test_no_route_checks_nul_by_hand() -> None:
    """Query and path text is checked by one type (kit/listing.py), not by copies in the routes."""
    src = Path(__file__).resolve().parent.parent / "src" / "npsd"
    copies = [str(p.relative_to(src)) for p in sorted(src.glob("*/routes.py")) if "\\x00" in p.read_text()]
    assert copies == []


SORTED = ["/v1/nps-surveys", "/v1/nps-surveys/{id}/responses", "/v1/nps-surveys/{id}/invitations"]


def test_sort_order_is_one_enum(client: Any, tenant: Tenant, objects: dict[str, str]) -> None:
    operations = get_operations(client)
    for path in [*SORTED, "/v1/nps-surveys/{id}/responses/export"]:
        [param] = [p for p in operations[path]["parameters"] if p["name"] == "sortOrder"]
        assert re.findall(r"'(asc|desc)'", str(param["schema"])) == ["asc", "desc"], (path, param)
    for path in SORTED:
        url = fill(path, objects)
        for good in ("asc", "desc", "DESC", "Asc"):
            assert client.get(url, params={"sortOrder": good}, headers=tenant.admin).status_code == 200
        for bad in ("up", "", "ascending"):
            assert_error(client.get(url, params={"sortOrder": bad}, headers=tenant.admin), 400, "sortOrder")


@pytest.mark.parametrize(
    "path",
    [
        "/nps",
        "/nps/export",
        "/v1/nps-surveys/{id}/responses",
        "/v1/nps-surveys/{id}/responses/export",
        "/v1/nps-surveys/nps-metrics",
    ],
)
def test_since_after_until_is_a_400(client: Any, tenant: Tenant, objects: dict[str, str], path: str) -> None:
    params = {"since": ago(1), "until": ago(10), **({"format": "csv"} if path.endswith("export") else {})}
    assert_error(client.get(fill(path, objects), params=params, headers=tenant.admin), 400, "since")
    params.update(since=ago(10), until=ago(1))
    assert client.get(fill(path, objects), params=params, headers=tenant.admin).status_code == 200


def test_metrics_since_and_until_are_whole_days(client: Any, tenant: Tenant) -> None:
    """Metrics count whole UTC days: a ``since`` later in the same day as ``until`` is that one day."""
    params = {"since": "2024-03-05T18:00:00Z", "until": "2024-03-05T06:00:00Z"}
    assert client.get("/v1/nps-surveys/nps-metrics", params=params, headers=tenant.viewer).status_code == 200


@pytest.mark.parametrize("days", ["100000", str(10**12), "99999999999999999999999"])
def test_nps_expiry_day_has_no_maximum(client: Any, tenant: Tenant, days: str) -> None:
    """A window reaching before the first answer is no limit at all, however large."""
    old = post_nps(client, tenant, "old@qp.com", 3, dateAnswered=ago(20_000))
    new = post_nps(client, tenant, "new@qp.com", 9, dateAnswered=ago(1))
    r = client.get("/nps", params={"npsExpiryDay": days}, headers=tenant.viewer)
    assert r.status_code == 200, r.text
    assert [x["_id"] for x in r.json()] == [new["_id"], old["_id"]]
    exported = client.get(
        "/nps/export", params={"npsExpiryDay": days, "format": "json"}, headers=tenant.viewer
    )
    assert exported.status_code == 200, exported.text
    assert [x["_id"] for x in exported.json()] == [new["_id"], old["_id"]]


def test_nps_expiry_day_is_still_a_window(client: Any, tenant: Tenant) -> None:
    old = post_nps(client, tenant, "old@qp.com", 3, dateAnswered=ago(20_000))
    new = post_nps(client, tenant, "new@qp.com", 9, dateAnswered=ago(1))
    assert [x["_id"] for x in client.get("/nps?npsExpiryDay=19000", headers=tenant.viewer).json()] == [
        new["_id"]
    ]
    assert [x["_id"] for x in client.get("/nps?npsExpiryDay=21000", headers=tenant.viewer).json()] == [
        new["_id"],
        old["_id"],
    ]
    for bad in ("-1", "1.5", "many"):
        assert_error(client.get(f"/nps?npsExpiryDay={bad}", headers=tenant.viewer), 400, "npsExpiryDay")


def test_respondent_pages_ignore_tracking_parameters(
    client: Any, tenant: Tenant, database: TestDatabase, smtp: Sink
) -> None:
    """Mail clients and newsletters append ``utm_*`` and the like to links: a respondent who clicks
    one still answers, and unsubscribes; the public link works with them too."""
    survey = make_survey(client, tenant)
    invite_one(client, tenant, survey["id"], "clicker@qp-acme.com")
    run_jobs(database.db)
    [mail] = smtp.to("clicker@qp-acme.com")
    link = local(score_links(part(mail, "plain"))[9])
    clicked = client.get(link + "&utm_source=newsletter&utm_medium=email&fbclid=x")
    assert clicked.status_code == 200, clicked.text
    [record] = client.get("/nps", params={"email": "clicker@qp-acme.com"}, headers=tenant.viewer).json()
    assert record["score"] == 9
    unsubscribe = local(unsubscribe_url(mail))
    assert client.get(unsubscribe, params={"utm_source": "newsletter"}).status_code == 200
    public = local(client.get(f"/v1/nps-surveys/{survey['id']}/link", headers=tenant.viewer).json()["url"])
    assert client.get(public, params={"utm_campaign": "q4"}).status_code == 200


class Filters(BaseModel):
    colour: str | None = None


probe = APIRouter(route_class=TransactionRoute)


@probe.get("/things")
def things(
    filters: Annotated[Filters, Query()], company: Annotated[str | None, Query(alias="c")] = None
) -> dict[str, Any]:
    """An operation with an aliased parameter and a parameter model, outside npsd's own routes."""
    return {"company": company, "colour": filters.colour}


def test_aliases_and_parameter_models_are_known_parameters() -> None:
    """The check knows a parameter by the name clients send (its alias) and by the fields of a query
    model, so an alias declared with ``Query(alias=...)`` is accepted and documented like any other."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(probe)
    with TestClient(app) as client:
        r = client.get("/things", params={"c": "x", "colour": "red"})
        assert r.json() == {"company": "x", "colour": "red"}
        assert_error(client.get("/things", params={"company": "x"}), 400, "company")
        operation = client.get("/openapi.json").json()["paths"]["/things"]["get"]
        assert {p["name"] for p in operation["parameters"]} == {"c", "colour"}
