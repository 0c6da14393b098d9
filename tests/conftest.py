"""Test fixtures: the real app over HTTP on a fresh, migrated database, once per database kind.

Every test gets two fresh organizations (``tenant`` and ``other``), so tests never see each
other's data and isolation is exercised everywhere. PostgreSQL runs in a schema of its own per
run; with ``CI`` set it must be reachable (the tests fail rather than skip).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database, normalize_url
from npsd.migrations import upgrade

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_url() -> str | None:
    url = os.environ.get("NPSD_TEST_DATABASE_URL") or DEFAULT_PG
    try:
        engine = create_engine(normalize_url(url), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI is set but PostgreSQL at {url} is unreachable: {exc}") from exc
        return None
    return url


@dataclass
class TestDatabase:
    __test__ = False  # a fixture value, not a test class

    kind: str
    url: str
    settings: Settings
    db: Database
    cleanup: list[Any] = field(default_factory=list)


def _make_database(kind: str, tmp: Path) -> TestDatabase:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'npsd-test.db'}"
        cleanup: list[Any] = []
    else:
        base = _pg_url()
        if base is None:
            pytest.skip("PostgreSQL is not reachable (set NPSD_TEST_DATABASE_URL); CI never skips this")
        schema = f"npsd_test_{secrets.token_hex(4)}"
        admin = create_engine(normalize_url(base))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options=-csearch_path%3D{schema}"

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

        cleanup = [drop]
    upgrade(url)
    settings = Settings(
        database_url=url,
        secret_key="test-secret-" + secrets.token_hex(16),
        worker=False,
        rate_limit=0,
        webhook_allow_private=True,
    )
    return TestDatabase(kind, url, settings, Database(url, pool_size=5, settings=settings), cleanup)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    """A migrated database of each kind, shared by the session (tests isolate by organization)."""
    with tempfile.TemporaryDirectory() as tmp:
        tdb = _make_database(request.param, Path(tmp))
        yield tdb
        tdb.db.dispose()
        for fn in tdb.cleanup:
            fn()


@pytest.fixture(scope="session")
def app(database: TestDatabase) -> Any:
    return create_app(database.settings, database.db)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@dataclass
class Tenant:
    """An organization with one token per role."""

    org_id: str
    name: str
    tokens: dict[str, str]
    jtis: dict[str, str]

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.headers("admin")

    @property
    def editor(self) -> dict[str, str]:
        return self.headers("editor")

    @property
    def viewer(self) -> dict[str, str]:
        return self.headers("viewer")


def make_tenant(database: TestDatabase, name: str | None = None) -> Tenant:
    name = name or f"org-{secrets.token_hex(6)}"
    tokens: dict[str, str] = {}
    jtis: dict[str, str] = {}
    with database.db.transaction() as session:
        org = auth_service.ensure_org(session, name)
        for role in ("admin", "editor", "viewer"):
            issued = auth_service.create_token(
                session, database.settings, org, role, timedelta(days=1), name=f"test {role}"
            )
            tokens[role] = issued.token
            jtis[role] = issued.jti
        org_id = org.id
    return Tenant(org_id, name, tokens, jtis)


@pytest.fixture
def tenant(database: TestDatabase) -> Tenant:
    return make_tenant(database)


@pytest.fixture
def other(database: TestDatabase) -> Tenant:
    """A second organization: it must never see or touch ``tenant``'s data."""
    return make_tenant(database)


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """Check the one error shape, and that ``field`` is named when given."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "error", "message", "details", "path", "requestId"}, body
    assert body["statusCode"] == status
    assert body["message"]
    if field is not None:
        fields = [d["field"] for d in body["details"]]
        assert any(f == field or f.startswith(field + ".") or f.endswith("." + field) for f in fields), body
    return body


def iso_ms(dt: datetime) -> str:
    """An aware time as the API prints times: UTC, milliseconds, ``Z``."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def post_nps(client: Any, tenant: Tenant, email: str, score: int, **fields: Any) -> dict[str, Any]:
    """``POST /nps`` as the tenant's editor; the created record."""
    r = client.post("/nps", json={"email": email, "score": score, **fields}, headers=tenant.editor)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def smtp(database: TestDatabase) -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) that the database's settings send to; its received mails."""
    from mail_helpers import smtp_server

    with smtp_server(database.settings) as sink:
        yield sink


@pytest.fixture(scope="module")
def site(database: TestDatabase) -> Iterator[Any]:
    """The dashboard (and API) on a live uvicorn server on the test database; see tests/dashboard.py."""
    from dashboard import serve

    with serve(database.url, database.settings.secret_key) as live:
        yield live


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (``playwright install`` cannot download browsers here)."""
    from dashboard import launch_chromium

    yield from launch_chromium()
