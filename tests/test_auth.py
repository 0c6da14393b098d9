"""Authentication and roles over HTTP on both databases: the three ways to send a token, every way a
token can be wrong, revocation, and password login for users made with ``npsd user create``."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from conftest import Tenant, assert_error
from conftest import TestDatabase as DatabaseFixture
from npsd.auth import service as auth_service
from npsd.auth import tokens
from npsd.cli import app as cli_app
from npsd.kit.models import ApiToken
from npsd.kit.timeutil import utcnow


def basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def craft(
    database: DatabaseFixture,
    org_id: str,
    *,
    key: str | None = None,
    headers: dict[str, Any] | None = None,
    record: bool = True,
    **overrides: Any,
) -> str:
    """A token with the claims npsd issues, changed by ``overrides`` (None removes a claim), and its
    ``jti`` recorded like an issued token, so the one change is the only thing wrong with it."""
    settings = database.settings
    now = int(datetime.now(UTC).timestamp())
    jti = tokens.new_jti()
    claims: dict[str, Any] = {
        "sub": org_id,
        "org": org_id,
        "role": "admin",
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    if record:
        with database.db.transaction() as session:
            session.add(
                ApiToken(
                    jti=jti,
                    org_id=org_id,
                    role="admin",
                    kind="api",
                    created_at=utcnow(),
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
    return jwt.encode(
        claims,
        key or settings.signing_key,
        algorithm="HS256",
        headers={"kid": tokens.key_id(settings), **(headers or {})},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli_env(database: DatabaseFixture) -> dict[str, str]:
    """Point the CLI at the test database and its signing key."""
    return {"NPSD_DATABASE_URL": database.url, "NPSD_SECRET_KEY": database.settings.secret_key or ""}


# --------------------------------------------------------------------------------- accepted forms


def test_bearer_api_key_and_basic_all_work(client, tenant: Tenant, other: Tenant) -> None:
    token = tenant.tokens["viewer"]
    client.post("/companies", json={"name": "Mine"}, headers=tenant.editor)
    client.post("/companies", json={"name": "Theirs"}, headers=other.editor)
    for headers in (
        bearer(token),
        {"Authorization": f"bearer   {token}"},
        {"X-API-Key": token},
        basic(token),
        basic(token, "anything"),
        basic("", token),
    ):
        r = client.get("/companies", headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert [c["name"] for c in r.json()] == ["Mine"]


def test_crafted_control_token_works(client, database: DatabaseFixture, tenant: Tenant) -> None:
    """The forgeries below differ from this one in one thing each."""
    assert client.get("/companies", headers=bearer(craft(database, tenant.org_id))).status_code == 200


# ---------------------------------------------------------------------------------- refused tokens


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Token abc"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic "},
        {"Authorization": "Basic " + base64.b64encode(b":").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer abc"},
        {"X-API-Key": "garbage"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer " + "a" * 10000},
    ],
)
def test_missing_or_malformed_credentials_are_401(client, headers: dict[str, str]) -> None:
    r = client.get("/companies", headers=headers)
    body = assert_error(r, 401)
    assert body["path"] == "/companies" and body["requestId"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_tampered_signature_is_401(client, tenant: Tenant) -> None:
    token = tenant.tokens["admin"]
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = b64url({**claims, "role": "admin", "org": tenant.org_id, "exp": claims["exp"] + 10})
    assert_error(client.get("/companies", headers=bearer(f"{head}.{forged_payload}.{sig}")), 401)
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    assert_error(client.get("/companies", headers=bearer(f"{head}.{payload}.{flipped}")), 401)
    assert_error(client.get("/companies", headers=bearer(f"{head}.{payload}.")), 401)


def test_alg_none_is_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    good = craft(database, tenant.org_id)
    _, payload, _ = good.split(".")
    for alg in ("none", "None", "NONE"):
        header = b64url({"alg": alg, "typ": "JWT", "kid": tokens.key_id(database.settings)})
        assert_error(client.get("/companies", headers=bearer(f"{header}.{payload}.")), 401)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_algorithms_and_keys_are_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    # signed with another key but claiming our kid
    assert_error(client.get("/companies", headers=bearer(craft(database, tenant.org_id, key="k" * 40))), 401)
    # another kid
    assert_error(
        client.get("/companies", headers=bearer(craft(database, tenant.org_id, headers={"kid": "x"}))), 401
    )
    # HS512 with the right key is still not the fixed algorithm
    settings = database.settings
    now = int(datetime.now(UTC).timestamp())
    token = jwt.encode(
        {
            "sub": "s",
            "org": tenant.org_id,
            "role": "admin",
            "jti": tenant.jtis["admin"],
            "iat": now,
            "exp": now + 60,
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
        },
        settings.signing_key,
        algorithm="HS512",
        headers={"kid": tokens.key_id(settings)},
    )
    assert_error(client.get("/companies", headers=bearer(token)), 401)


def test_expired_token_is_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    now = int(datetime.now(UTC).timestamp())
    body = assert_error(
        client.get(
            "/companies",
            headers=bearer(craft(database, tenant.org_id, iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        ),
        401,
    )
    assert "expired" in body["message"]
    # issued by the service with a TTL that has already run out
    with database.db.transaction() as session:
        org = auth_service.find_org(session, tenant.name)
        assert org is not None
        issued = auth_service.create_token(session, database.settings, org, "admin", timedelta(seconds=-60))
    assert_error(client.get("/companies", headers=bearer(issued.token)), 401)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "evil"},
        {"aud": None},
        {"iss": None},
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"sub": None},
        {"role": "owner"},
        {"role": None},
        {"org": None},
        {"org": 5},
        {"nbf": int(datetime.now(UTC).timestamp()) + 3600},
    ],
)
def test_wrong_or_missing_claims_are_401(
    client, database: DatabaseFixture, tenant: Tenant, overrides: dict[str, Any]
) -> None:
    assert_error(client.get("/companies", headers=bearer(craft(database, tenant.org_id, **overrides))), 401)


def test_unrecorded_jti_is_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    """A validly signed token whose jti npsd never recorded is refused."""
    assert_error(client.get("/companies", headers=bearer(craft(database, tenant.org_id, record=False))), 401)


def test_token_naming_another_org_than_its_record_is_401(
    client, database: DatabaseFixture, tenant: Tenant, other: Tenant
) -> None:
    token = craft(database, tenant.org_id, jti=tenant.jtis["viewer"], org=other.org_id, role="viewer")
    assert_error(client.get("/companies", headers=bearer(token)), 401)
    escalated = craft(database, tenant.org_id, jti=tenant.jtis["viewer"], role="admin")
    assert_error(client.get("/companies", headers=bearer(escalated)), 401)


def test_revoked_token_is_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    token = tenant.tokens["editor"]
    assert client.get("/companies", headers=bearer(token)).status_code == 200
    with database.db.transaction() as session:
        assert auth_service.revoke_token(session, tenant.jtis["editor"]) is True
        assert auth_service.revoke_token(session, "0" * 32) is False
    for headers in (bearer(token), {"X-API-Key": token}, basic(token)):
        body = assert_error(client.get("/companies", headers=headers), 401)
        assert "revoked" in body["message"]
    # other tokens of the organization still work
    assert client.get("/companies", headers=tenant.viewer).status_code == 200


def test_cli_token_create_and_revoke_against_the_api(
    client, database: DatabaseFixture, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cli_env(database).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    made = runner.invoke(
        cli_app, ["token", "create", "--org", tenant.name, "--role", "editor", "--name", "ci"]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    r = client.post("/companies", json={"name": "Via CLI"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert [c["name"] for c in client.get("/companies", headers=tenant.viewer).json()] == ["Via CLI"]
    assert_error(client.delete(f"/companies/{r.json()['_id']}", headers=bearer(token)), 403)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    revoked = runner.invoke(cli_app, ["token", "revoke", jti])
    assert revoked.exit_code == 0, revoked.output
    assert_error(client.get("/companies", headers=bearer(token)), 401)


# ---------------------------------------------------------------------------------------- roles


def test_role_errors_are_403_in_the_error_shape(client, tenant: Tenant) -> None:
    body = assert_error(client.post("/companies", json={"name": "x"}, headers=tenant.viewer), 403)
    assert "editor" in body["message"] and "viewer" in body["message"]
    assert client.post("/companies", json={"name": "x"}, headers=tenant.editor).status_code == 200


# ---------------------------------------------------------------------------------------- login


def make_user(
    database: DatabaseFixture, monkeypatch: pytest.MonkeyPatch, org: str, role: str, password: str
) -> str:
    for name, value in cli_env(database).items():
        monkeypatch.setenv(name, value)
    email = f"User.{secrets.token_hex(4)}@Example.com"
    result = CliRunner().invoke(
        cli_app,
        ["user", "create", "--org", org, "--email", email, "--role", role, "--password-stdin"],
        input=password + "\n",
    )
    assert result.exit_code == 0, result.output
    return email


def test_login_returns_a_working_token(
    client, database: DatabaseFixture, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = make_user(database, monkeypatch, tenant.name, "editor", "correct horse battery")
    r = client.post("/v1/auth/login", json={"email": email.lower(), "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"accessToken", "tokenType", "expiresAt"}
    assert body["tokenType"] == "Bearer"
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    hours = (expires - datetime.now(UTC)).total_seconds() / 3600
    assert database.settings.login_ttl_hours - 0.1 < hours <= database.settings.login_ttl_hours
    headers = bearer(body["accessToken"])
    created = client.post("/companies", json={"name": "By login"}, headers=headers)
    assert created.status_code == 200, created.text
    assert [c["name"] for c in client.get("/companies", headers=tenant.viewer).json()] == ["By login"]
    assert_error(
        client.delete(f"/companies/{created.json()['_id']}", headers=headers), 403
    )  # editor, not admin


def test_login_as_viewer_cannot_write(
    client, database: DatabaseFixture, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = make_user(database, monkeypatch, tenant.name, "viewer", "pa55word!")
    token = client.post("/v1/auth/login", json={"email": email, "password": "pa55word!"}).json()[
        "accessToken"
    ]
    assert client.get("/companies", headers=bearer(token)).status_code == 200
    assert_error(client.post("/companies", json={"name": "x"}, headers=bearer(token)), 403)


def test_login_failures(
    client, database: DatabaseFixture, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = make_user(database, monkeypatch, tenant.name, "admin", "the-right-one")
    wrong = assert_error(
        client.post("/v1/auth/login", json={"email": email, "password": "the-wrong-one"}), 401
    )
    unknown = assert_error(
        client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "the-right-one"}), 401
    )
    assert wrong["message"] == unknown["message"]  # does not tell which part was wrong
    assert_error(client.post("/v1/auth/login", json={"email": email}), 400, "password")
    assert_error(client.post("/v1/auth/login", json={"password": "x"}), 400, "email")
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": 5}), 400, "password")
    assert_error(client.post("/v1/auth/login", json={"email": email, "password": "x", "otp": 1}), 400, "otp")
    assert_error(client.post("/v1/auth/login", json=[email, "the-right-one"]), 400)
    assert_error(
        client.post("/v1/auth/login", content=b"{nope", headers={"Content-Type": "application/json"}), 400
    )
    assert_error(
        client.post("/v1/auth/login", json={"email": email + "\x00", "password": "the-right-one"}),
        400,
        "email",
    )
    assert_error(client.post("/v1/auth/login", json={"email": "a" * 400, "password": "x"}), 400, "email")
    assert_error(
        client.post("/v1/auth/login", json={"email": email, "password": "x" * 2000}), 400, "password"
    )


def test_rs_hs_key_confusion_is_401(client, database: DatabaseFixture, tenant: Tenant) -> None:
    """Asymmetric algorithms are never accepted: an RS256/ES256 token (here signed with a key of
    the attacker's own) and an HS256 token whose header claims RS256 are both refused."""
    import base64
    import hashlib
    import hmac

    import orjson

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    settings = database.settings
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "sub": tenant.org_id,
        "org": tenant.org_id,
        "role": "admin",
        "jti": tenant.jtis["admin"],
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    for alg in ("RS256", "ES256", "PS256"):
        header = {"alg": alg, "typ": "JWT", "kid": tokens.key_id(settings)}
        signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
        # an HMAC with our own key under an asymmetric header: the textbook confusion attack
        forged = hmac.new(settings.signing_key.encode(), signing_input.encode(), hashlib.sha256).digest()
        assert_error(client.get("/companies", headers=bearer(f"{signing_input}.{b64(forged)}")), 401)
        assert_error(client.get("/companies", headers=bearer(f"{signing_input}.{b64(b'x' * 256)}")), 401)
    assert client.get("/companies", headers=tenant.admin).status_code == 200
