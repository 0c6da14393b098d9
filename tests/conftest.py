"""Test fixtures: the real app over HTTP on a fresh, migrated database, once per database kind.

Every test gets two fresh organizations (``tenant`` and ``other``), so tests never see each
other's data and isolation is exercised everywhere. PostgreSQL runs in a schema of its own per
run; with ``CI`` set it must be reachable (the tests fail rather than skip).
"""

from __future__ import annotations

import contextlib
import logging
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
from sqlalchemy import create_engine, event, text

from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database, normalize_url
from npsd.kit.logs import StderrHandler
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


@contextlib.contextmanager
def pg_schema(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema named ``prefix`` and a random suffix, as the URL that works
    in it (its ``search_path``); dropped with everything in it afterwards. Skips the test when
    PostgreSQL is not reachable (CI never skips: ``_pg_url`` fails there)."""
    base = _pg_url()
    if base is None:
        pytest.skip("PostgreSQL is not reachable (set NPSD_TEST_DATABASE_URL); CI never skips this")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """An empty PostgreSQL schema (nothing migrated), dropped afterwards."""
    with pg_schema("npsd_fresh") as url:
        yield url


# Seconds each of the slowest files takes in one test process (both databases, a loaded two-core
# machine, 2026-11-28); any other file counts SECONDS_PER_TEST per test. Only the order of the
# files depends on these figures (see pytest_collection_modifyitems): stale ones cost balance,
# never a test.
FILE_SECONDS = {
    "test_reliability_kills.py": 220,
    "test_reliability.py": 110,
    "test_dashboard_settings.py": 90,
    "test_dashboard_walk.py": 80,
    "test_backup.py": 70,
    "test_serve.py": 60,
    "test_dashboard_surveys.py": 55,
    "test_scale_out.py": 38,
    "test_faults_jobs.py": 35,
    "test_dashboard_companies.py": 35,
    "test_dashboard_overview.py": 32,
    "test_cli.py": 31,
    "test_fuzz.py": 27,
    "test_faults_webhooks.py": 22,
    "test_dashboard_auth.py": 20,
    "test_browser.py": 20,
    "test_faults_migrations.py": 15,
    "test_faults_idempotency.py": 12,
    "test_comment_search.py": 47,
    "test_demo.py": 23,
    "test_limits.py": 10,
    "test_records.py": 8,
    "test_errors.py": 3,
    "test_auth.py": 2,
}
SECONDS_PER_TEST = 0.2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In a pytest-xdist process, the slowest files first (the longest first, keeping each file's
    own order).

    ``scripts/test.sh`` runs ``--dist loadfile --no-loadscope-reorder``: the two processes take
    whole files in this order, each the next one as it gets free. xdist's own order (files with
    the most tests first) left the slow files of few tests (the SIGKILL runs, fuzzing, the
    dashboard walk) for the end, where one process ran them while the other had finished.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def seconds(path: str) -> float:
        name = path.rsplit("/", 1)[-1]
        return FILE_SECONDS.get(name, SECONDS_PER_TEST * len(files[path]))

    items[:] = [item for path in sorted(files, key=seconds, reverse=True) for item in files[path]]


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
        schema = contextlib.ExitStack()
        url = schema.enter_context(pg_schema("npsd_test"))
        cleanup = [schema.close]
    upgrade(url)
    settings = Settings(
        database_url=url,
        secret_key="test-secret-" + secrets.token_hex(16),
        worker=False,
        rate_limit=0,
        webhook_allow_private=True,
        insights=False,  # the insights tests run a server of their own that reads comments
    )
    return TestDatabase(kind, url, settings, Database(url, pool_size=5, settings=settings), cleanup)


class _Kept:
    """The databases, apps and test clients of one test process, one of each kind, made on first
    use and kept until the session ends.

    ``database`` is a session fixture with a parameter, and pytest keeps one value of such a
    fixture at a time: under pytest-xdist, where a process runs whole files one after another
    (each file's SQLite tests, then its PostgreSQL ones), every file would migrate both databases
    anew and rebuild the app and its client. Keeping them here makes a process of many files
    behave as one process runs the whole suite: two databases, two apps, two clients, shared by
    every test (which isolate by organization).
    """

    def __init__(self, tmp: Path, stack: contextlib.ExitStack) -> None:
        self.tmp = tmp
        self.stack = stack
        self.databases: dict[str, TestDatabase] = {}
        self.apps: dict[str, Any] = {}
        self.clients: dict[int, TestClient] = {}  # by id() of the app (kept alive in self.apps)
        self.unavailable: dict[str, str] = {}

    def database(self, kind: str) -> TestDatabase:
        if kind in self.unavailable:  # PostgreSQL was not there: skip again without a 3 s wait
            pytest.skip(self.unavailable[kind])
        if kind not in self.databases:
            try:
                tdb = _make_database(kind, self.tmp)
            except pytest.skip.Exception as exc:
                self.unavailable[kind] = str(exc)
                raise

            def close() -> None:
                tdb.db.dispose()
                for fn in tdb.cleanup:
                    fn()

            self.stack.callback(close)
            self.databases[kind] = tdb
        return self.databases[kind]

    def app(self, database: TestDatabase) -> Any:
        if database.kind not in self.apps:
            self.apps[database.kind] = create_app(database.settings, database.db)
        return self.apps[database.kind]

    def client(self, app: Any) -> TestClient:
        if id(app) not in self.clients:
            self.apps.setdefault(f"app-{id(app)}", app)  # a module's own app: its id stays unique
            client = TestClient(app, raise_server_exceptions=False)
            self.clients[id(app)] = self.stack.enter_context(client)
        return self.clients[id(app)]


@pytest.fixture(scope="session")
def _kept() -> Iterator[_Kept]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        yield _Kept(Path(tmp), stack)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, _kept: _Kept) -> TestDatabase:
    """A migrated database of each kind, shared by the session (tests isolate by organization)."""
    return _kept.database(request.param)


@pytest.fixture(scope="session")
def app(database: TestDatabase, _kept: _Kept) -> Any:
    return _kept.app(database)


@pytest.fixture(scope="session")
def client(app: Any, _kept: _Kept) -> TestClient:
    return _kept.client(app)


@pytest.fixture(autouse=True)
def _logging_as_a_fresh_process() -> Iterator[None]:
    """Take npsd's log handler off the root logger after each test.

    ``npsd`` commands run in this process (Typer's ``CliRunner``) and set up logging as a process
    of their own would, at the default ``info`` level; logging is process-wide, so without this a
    later command would also write, say, Alembic's info lines, which a real command started on
    its own never shows: whether a test passed would depend on which tests ran before it.
    """
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, StderrHandler):
            root.removeHandler(handler)
            root.setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def _quick_password_hashes() -> Iterator[None]:
    """Argon2id with its smallest cost for the passwords hashed in this process.

    The recommended cost (64 MiB, 3 passes, 4 lanes) takes 0.1-0.7 s per hash or check on a
    loaded two-core machine, and the dashboard's tests create and sign in hundreds of users; no
    test is about the cost (a hash names its parameters, so real ones made by ``npsd serve``
    processes still verify). Unknown addresses are checked against a dummy hash of the same cost,
    as in production. The npsd processes the tests start keep the real cost.
    """
    from argon2 import PasswordHasher

    from npsd.auth import passwords

    real = getattr(passwords, "_hasher", None), getattr(passwords, "_DUMMY_HASH", None)
    if not isinstance(real[0], PasswordHasher) or not isinstance(real[1], str):
        yield  # the module changed shape: run at full cost rather than guess
        return
    quick = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords._hasher, passwords._DUMMY_HASH = quick, quick.hash("npsd-no-such-user")
    try:
        yield
    finally:
        passwords._hasher, passwords._DUMMY_HASH = real


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


def metrics_for(
    client: Any, tenant: Tenant, survey_id: str, period: dict[str, str], previous: dict[str, str]
) -> Any:
    """``GET /v1/nps-surveys/nps-metrics`` of one survey for ``period`` compared with ``previous``
    (each ``{"since", "until"}``, as a digest reports them)."""
    r = client.get(
        "/v1/nps-surveys/nps-metrics",
        params={
            "surveyId": survey_id,
            "since": period["since"],
            "until": period["until"],
            "compareSince": previous["since"],
            "compareUntil": previous["until"],
        },
        headers=tenant.viewer,
    )
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


@contextlib.contextmanager
def statements_run(database: TestDatabase, wanted: Any) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (with their parameters) that the app runs on ``database`` inside the
    block, those for which ``wanted(statement, executemany)`` is true, to check how the database
    plans them (``EXPLAIN QUERY PLAN``)."""
    found: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if wanted(statement, many):
            found.append((statement, params))

    event.listen(database.db.engine, "before_cursor_execute", capture)
    try:
        yield found
    finally:
        event.remove(database.db.engine, "before_cursor_execute", capture)


def sqlite_plan(database: TestDatabase, statement: str, params: Any) -> list[str]:
    """SQLite's plan of one captured statement, a line per step."""
    with database.db.engine.connect() as conn:
        return [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)]
