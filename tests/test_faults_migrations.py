"""Concurrent first start (#11, coordination faults): migrations take a database lock.

Several processes started together against an empty database each run the migrations before
serving. Without a lock they raced (two created the same table, one died). With it (an advisory
lock on PostgreSQL, a lock file beside the SQLite database) one migrates and the others find
the schema at head.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from npsd.kit.db import normalize_url
from npsd.migrations import head_revision
from servers import ROOT, ServerProcess


def versions(url: str) -> list[str]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "npsd.cli", *args],
        env={**os.environ, "NPSD_LOG_LEVEL": "warning", **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_two_servers_and_a_worker_start_together_on_an_empty_postgresql(fresh_pg_url: str) -> None:
    secret = "faults-" + secrets.token_hex(16)
    servers = [ServerProcess(fresh_pg_url, secret, NPSD_WORKER="true") for _ in range(2)]
    errors: list[BaseException] = []
    go = threading.Barrier(3)

    def start(server: ServerProcess) -> None:
        go.wait()
        try:
            server.start(timeout=90)
        except BaseException as exc:  # reported below, with the process's stderr
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    go.wait()
    worker = cli("worker", env={"NPSD_DATABASE_URL": fresh_pg_url, "NPSD_SECRET_KEY": secret})
    try:
        for t in threads:
            t.join(120)
        assert errors == [], errors
        for server in servers:
            assert server.proc is not None and server.proc.poll() is None
            r = httpx.get(server.base_url + "/readyz", timeout=10)
            assert r.status_code == 200, r.text
        time.sleep(1)  # the worker migrated before the servers answered /readyz, or it died trying
        assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
        assert versions(fresh_pg_url) == [head_revision()]
    finally:
        for server in servers:
            server.kill()
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
        worker.wait(10)


def test_three_migrations_at_once_on_one_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {"NPSD_DATABASE_URL": url, "NPSD_SECRET_KEY": "faults-" + secrets.token_hex(16)}
    procs = [cli("migrate", env=env) for _ in range(3)]
    outcomes = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        outcomes.append((proc.returncode, err.decode()[-1500:]))
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert versions(url) == [head_revision()]
