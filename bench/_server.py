"""Run a real ``npsd serve`` in a subprocess for benchmarks: the full HTTP stack, measured from outside."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from npsd.auth import service as auth_service
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(url: str, secret: str, org: str = "bench") -> tuple[str, str]:
    """Migrate ``url`` and return (org id, admin token)."""
    upgrade(url)
    settings = Settings(database_url=url, secret_key=secret)
    db = Database(url, pool_size=1)
    with db.transaction() as session:
        o = auth_service.ensure_org(session, org)
        token = auth_service.create_token(session, settings, o, "admin", timedelta(days=1)).token
        org_id = o.id
    db.dispose()
    return org_id, token


@contextmanager
def serve_process(
    url: str, secret: str, workers: int = 1, command: list[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``npsd serve`` against ``url`` (rate limit and in-process worker off, so they do not
    weigh on the figures); yield its base URL and process; stop it. ``command`` replaces the
    server's command line (``{port}`` in it is the port), for a wrapper that reports back."""
    port = free_port()
    env = {
        **os.environ,
        "NPSD_DATABASE_URL": url,
        "NPSD_SECRET_KEY": secret,
        "NPSD_LOG_LEVEL": "warning",
        "NPSD_RATE_LIMIT": "0",
        "NPSD_WORKER": "false",
    }
    argv = command or ["-m", "npsd.cli", "serve", "--port", "{port}", "--workers", str(workers)]
    proc = subprocess.Popen(
        [sys.executable, *(a.replace("{port}", str(port)) for a in argv)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "server did not start: " + (proc.stderr.read().decode() if proc.stderr else "")
                )
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def server(url: str, secret: str, workers: int = 1) -> Iterator[str]:
    """Like :func:`serve_process`, yielding only the base URL."""
    with serve_process(url, secret, workers) as (base, _):
        yield base
