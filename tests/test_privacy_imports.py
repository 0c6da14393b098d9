"""An erasure reaches the imports: uploads waiting to be imported and every import's report.

``POST /v1/imports`` stores the uploaded file until its job has run; until then the file holds
the addresses of everyone in it. An erasure requested meanwhile must not leave the person's
address there (nor let the job bring the person back): the address is replaced in the stored
file by a mark whose rows the import refuses as erased, and removed from import reports (file
name, row errors, reason). Driven over HTTP, the jobs run by the worker function, on both
databases; the stored bytes are read back to check.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import JSON, String, Text, cast, func, select, update

from conftest import Tenant, TestDatabase
from mail_helpers import run_jobs
from npsd.imports.layouts import ERASED_ISSUE
from npsd.kit.db import Database
from npsd.kit.models import Base, DataImport, Job
from npsd.kit.timeutil import utcnow


def places_holding(db: Database, needle: str) -> list[str]:
    """Every ``table.column`` holding ``needle`` (any case): text and JSON columns in SQL, and the
    stored uploads (bytes) decoded here."""
    found: list[str] = []
    with db.transaction(write=False) as session:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON):
                    continue
                hit = session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(func.lower(cast(column, Text)).contains(needle.lower(), autoescape=True))
                )
                if hit:
                    found.append(f"{table.name}.{column.name}")
        for content in session.scalars(select(DataImport.content).where(DataImport.content.is_not(None))):
            for codec in ("utf-8", "utf-16"):
                try:
                    if needle.lower() in content.decode(codec).lower():
                        found.append("data_import.content")
                except UnicodeDecodeError:
                    pass
    return found


def upload(client: TestClient, tenant: Tenant, data: bytes, name: str = "export.csv", **fields: str) -> Any:
    r = client.post(
        "/v1/imports", files={"file": (name, data, "text/csv")}, data=fields, headers=tenant.editor
    )
    assert r.status_code == 202, r.text
    return r.json()


def hold(db: Database, import_id: str, hours: float = 24) -> None:
    """Move the import's job ``hours`` ahead (as if the workers were busy); 0: due now."""
    with db.transaction() as session:
        jobs = session.execute(select(Job.id, Job.payload).where(Job.kind == "import.run")).all()
        ids = [job_id for job_id, payload in jobs if payload.get("import_id") == import_id]
        assert len(ids) == 1
        session.execute(update(Job).where(Job.id == ids[0]).values(run_at=utcnow() + timedelta(hours=hours)))


def erase(client: TestClient, tenant: Tenant, database: TestDatabase, address: str) -> dict[str, Any]:
    r = client.post("/v1/erasures", json={"email": address}, headers=tenant.admin)
    assert r.status_code == 202, r.text
    run_jobs(database.db)
    done = client.get(f"/v1/erasures/{r.json()['id']}", headers=tenant.admin).json()
    assert done["state"] == "done", done
    return dict(done)


def stored(db: Database, import_id: str) -> bytes | None:
    with db.transaction(write=False) as session:
        return session.scalar(select(DataImport.content).where(DataImport.id == import_id))


def answers(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    r = client.get("/nps", params={"npsExpiryDay": 0, "limit": 1000}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return list(r.json())


# -------------------------------------------------------------------------------------------- tests


def test_an_upload_waiting_to_be_imported_loses_the_address(
    client: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    tag = secrets.token_hex(4)
    address = f"ana-{tag}@acme.example"
    neighbour = f"hanna-{tag}@acme.example"  # another person at the same domain
    data = (
        "email,score,comment,date,sourceId\n"
        f"{address.upper()},9,first,2024-01-10,s1-{tag}\n"
        f'{neighbour},8,"wrote to {address} about it",2024-01-11,s2-{tag}\n'
        f"{address},3,second,2024-01-12,s3-{tag}\n"
        f"other-{tag}@beta.example,10,,2024-01-13,s4-{tag}\n"
    ).encode()
    imp = upload(client, tenant, data, **{"from": "csv"})
    hold(database.db, imp["id"])
    assert "data_import.content" in places_holding(database.db, address)

    erase(client, tenant, database, address)
    assert places_holding(database.db, address) == []  # the waiting file no longer holds it
    content = stored(database.db, imp["id"])
    assert content is not None and content.decode().count("[erased]") == 3
    assert neighbour in content.decode()  # another person's address is left alone

    hold(database.db, imp["id"], 0)
    run_jobs(database.db)
    done = client.get(f"/v1/imports/{imp['id']}", headers=tenant.editor).json()
    assert (done["state"], done["rowsDone"], done["created"], done["errorCount"]) == ("done", 4, 2, 2)
    assert [(e["row"], e["column"], e["issue"]) for e in done["errors"]] == [
        (2, "email", ERASED_ISSUE),
        (4, "email", ERASED_ISSUE),
    ]
    taken = {r["email"]: r for r in answers(client, tenant)}
    assert set(taken) == {neighbour, f"other-{tag}@beta.example"}
    assert taken[neighbour]["comment"] == "wrote to [erased] about it"
    assert places_holding(database.db, address) == []


def test_a_utf16_upload_is_scrubbed_and_still_imported(
    client: TestClient, tenant: Tenant, database: TestDatabase
) -> None:
    tag = secrets.token_hex(4)
    address = f"bo-{tag}@kunde.example"
    longer = f"bo-{tag}@kunde.example.org"  # another address whose start is this one
    ending = f"obo-{tag}@kunde.example"  # and one that ends with it
    text = (
        "email,score,comment,date,sourceId\r\n"
        f"{address},6,Zu teuer — für uns,2024-02-01,u1-{tag}\r\n"
        f"{longer},9,,2024-02-02,u2-{tag}\r\n"
        f"{ending},10,,2024-02-03,u3-{tag}\r\n"
    )
    imp = upload(client, tenant, text.encode("utf-16"), **{"from": "csv"})
    hold(database.db, imp["id"])
    erase(client, tenant, database, address)
    content = stored(database.db, imp["id"])
    assert content is not None
    assert content.decode("utf-8") == text.replace(f"\n{address},", "\n[erased],")  # the others whole
    hold(database.db, imp["id"], 0)
    run_jobs(database.db)
    done = client.get(f"/v1/imports/{imp['id']}", headers=tenant.editor).json()
    assert (done["state"], done["created"], done["errorCount"]) == ("done", 2, 1)
    assert sorted(r["email"] for r in answers(client, tenant)) == sorted([longer, ending])


def test_import_reports_lose_the_address(client: TestClient, tenant: Tenant, database: TestDatabase) -> None:
    tag = secrets.token_hex(4)
    address = f"cy-{tag}@acme.example"
    data = (
        "email,score,comment,date,sourceId\n"
        f"{address};,9,typo in the address,2024-01-10,r1-{tag}\n"
        f"ok-{tag}@acme.example,8,,2024-01-11,r2-{tag}\n"
    ).encode()
    imp = upload(client, tenant, data, name=f"from {address} (crm).csv", **{"from": "csv"})
    run_jobs(database.db)  # the import runs first: its report quotes the address
    report = client.get(f"/v1/imports/{imp['id']}", headers=tenant.editor).json()
    assert report["state"] == "done" and address in report["errors"][0]["issue"]
    assert address in report["filename"]

    erase(client, tenant, database, address.upper())
    after = client.get(f"/v1/imports/{imp['id']}", headers=tenant.editor).json()
    assert after["filename"] == "from [erased] (crm).csv"
    assert "[erased];" in after["errors"][0]["issue"] and after["errors"][0]["row"] == 2
    assert (after["created"], after["errorCount"]) == (1, 1)  # the counts stay as they were
    assert places_holding(database.db, address) == []


def test_another_organizations_imports_are_untouched(
    client: TestClient, tenant: Tenant, other: Tenant, database: TestDatabase
) -> None:
    address = f"dee-{secrets.token_hex(4)}@shared.example"
    data = f"email,score\n{address},7\n".encode()
    theirs = upload(client, other, data, **{"from": "csv"})
    hold(database.db, theirs["id"])
    erase(client, tenant, database, address)
    content = stored(database.db, theirs["id"])
    assert content is not None and address in content.decode()  # erasures are per organization
    hold(database.db, theirs["id"], 0)
    run_jobs(database.db)
    assert [r["email"] for r in answers(client, other)] == [address]
