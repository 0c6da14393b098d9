from conftest import Tenant


def test_create_and_get(client, tenant: Tenant, other: Tenant) -> None:
    r = client.post("/nps", json={"email": "jane@test.com", "score": 7}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    rid = r.json()["_id"]
    assert client.get(f"/nps/{rid}", headers=tenant.viewer).json()["score"] == 7
    assert client.get(f"/nps/{rid}", headers=other.admin).status_code == 404
