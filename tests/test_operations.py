"""Operations (#11, first part): the readiness probe and the version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import npsd
from conftest import assert_error
from npsd.app import create_app
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.migrations import head_revision, upgrade


def test_ready_when_the_database_answers_at_the_newest_migration(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "migration": head_revision()}
    newest = max(
        p.name.split("_")[0] for p in (Path(npsd.__file__).parent / "migrations" / "versions").glob("0*.py")
    )
    assert head_revision() == newest  # the head is the newest migration file, not an older one


def test_not_ready_while_migrations_are_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade(url, "0004")
    settings = Settings(database_url=url, secret_key="k" * 32, worker=False)
    db = Database(url, pool_size=1, settings=settings)
    try:
        r = TestClient(create_app(settings, db), raise_server_exceptions=False).get("/readyz")
        body = assert_error(r, 503)
        assert "0004" in body["message"] and head_revision() in body["message"]
        assert "npsd migrate" in body["message"]
        upgrade(url)
        assert TestClient(create_app(settings, db)).get("/readyz").status_code == 200
    finally:
        db.dispose()


def test_not_ready_when_the_database_does_not_answer() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"  # no server listens on port 1
    settings = Settings(database_url=url, secret_key="k" * 32, worker=False)
    db = Database(url, pool_size=1, settings=settings)
    try:
        app: Any = create_app(settings, db)
        r = TestClient(app, raise_server_exceptions=False).get("/readyz")
        body = assert_error(r, 503)
        assert body["message"].startswith("the database does not answer")
        # liveness does not touch the database
        assert TestClient(app).get("/healthz").json() == {"status": "ok"}
    finally:
        db.dispose()


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "npsd.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout == f"npsd {npsd.__version__}\n"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"NPSD_DATABASE_URL": "notaurl"}, "NPSD_DATABASE_URL: got a value that is not a URL"),
        ({"NPSD_DATABASE_URL": "mysql://root:hunter2@db/npsd"}, "NPSD_DATABASE_URL: got the scheme 'mysql'"),
        ({"NPSD_DATABASE_URL": "sqlite:///:memory:"}, "NPSD_DATABASE_URL: an in-memory SQLite database"),
        ({"NPSD_DATABASE_URL": "postgresql://"}, "NPSD_DATABASE_URL: a PostgreSQL URL is"),
        ({"NPSD_DB_POOL_SIZE": "ten"}, "NPSD_DB_POOL_SIZE: Input should be a valid integer"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, env: dict[str, str], says: str) -> None:
    for command in (["migrate"], ["token", "list", "--org", "x"]):
        out = subprocess.run(
            [sys.executable, "-m", "npsd.cli", *command],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "NPSD_DATABASE_URL": f"sqlite:///{tmp_path}/n.db", **env, "COLUMNS": "60"},
        )
        assert out.returncode == 1, out
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: " + says), out.stderr
        assert "hunter2" not in out.stderr  # a password in the URL is never echoed


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "70000", "error: --port: got 70000, expected a whole number from 1 to 65535\n"),
        ("--port", "0", "error: --port: got 0, expected a whole number from 1 to 65535\n"),
        ("--port", "http", "error: --port: got 'http', expected a whole number from 1 to 65535\n"),
        ("--workers", "0", "error: --workers: got 0, expected a whole number of at least 1\n"),
    ],
)
def test_a_port_outside_the_range_is_refused(tmp_path: Path, option: str, value: str, says: str) -> None:
    """Like a bad setting: one line naming the option and the range, exit status 1, nothing
    started (no database file either)."""
    out = subprocess.run(
        [sys.executable, "-m", "npsd.cli", "serve", option, value],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "NPSD_DATABASE_URL": f"sqlite:///{tmp_path}/n.db", "COLUMNS": "40"},
    )
    assert out.returncode == 1, out
    assert out.stderr == says and out.stdout == "", out
    assert not (tmp_path / "n.db").exists()
