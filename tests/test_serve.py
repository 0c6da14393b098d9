"""``npsd serve`` as an operator runs it (#11): JSON logs of a real server process, slow clients
cut off by the header timeout, the start-up line printed once the port answers, the base URL
following --host and --port, and the one-line errors (or the created directory) that every
command gives for an unreachable database or a missing SQLite directory.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from conftest import Tenant, TestDatabase, assert_error
from npsd.auth import service as auth_service
from npsd.cli import app as cli_app
from npsd.kit.config import Settings
from npsd.kit.db import Database
from servers import ROOT, ServerProcess, free_port
from test_observability import parse, value

METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(24)
SMTP_PASSWORD = "smtp-pass-" + secrets.token_hex(8)
HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 150


class LoggedServer(ServerProcess):
    """A :class:`ServerProcess` whose stderr goes to a file the test reads while it runs (a pipe
    nobody reads would fill and stall the server)."""

    def __init__(self, database_url: str, secret_key: str, log: Path, workers: int = 1, **env: str) -> None:
        super().__init__(database_url, secret_key, workers, **env)
        self.log = log

    def start(self, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "NPSD_DATABASE_URL": self.database_url,
            "NPSD_SECRET_KEY": self.secret_key,
            "NPSD_RATE_LIMIT": "0",
            "NPSD_WORKER": "false",
            **self.extra_env,
        }
        command = [sys.executable, "-m", "npsd.cli", "serve", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"npsd serve exited with {self.proc.returncode}: {self.text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"npsd serve did not answer /healthz in time: {self.text()[-2000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.strip()]


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(database: TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    """One ``npsd serve`` per database kind: JSON logs at info, metrics behind a token, a 1 s
    header timeout, and an SMTP password that must never be logged."""
    assert database.settings.secret_key
    live = LoggedServer(
        database.url,
        database.settings.secret_key,
        tmp_path_factory.mktemp("serve") / "stderr.log",
        NPSD_LOG_FORMAT="json",
        NPSD_LOG_LEVEL="info",
        NPSD_METRICS_TOKEN=METRICS_TOKEN,
        NPSD_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        NPSD_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        NPSD_SMTP_URL=f"smtp://npsd:{SMTP_PASSWORD}@127.0.0.1:1",
    )
    live.start()
    yield live
    live.stop()


def scrape(server: LoggedServer) -> Any:
    r = httpx.get(
        server.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return parse(r.text)


# ------------------------------------------------------------------------------------------ logs


def test_json_logs_carry_the_request_and_never_a_secret(
    server: LoggedServer, database: TestDatabase, tenant: Tenant
) -> None:
    password = "Correct-Horse-" + secrets.token_hex(6)
    wrong_password = "Wrong-Battery-" + secrets.token_hex(6)
    email = f"ops-{secrets.token_hex(4)}@example.com"
    with database.db.transaction() as session:
        org = auth_service.find_org(session, tenant.name)
        assert org is not None
        auth_service.create_user(session, org, email, "editor", password)
    respondent_token = "respondent" + secrets.token_hex(12)
    query_secret = "querysecret" + secrets.token_hex(8)
    base = server.base_url
    with httpx.Client(base_url=base, timeout=30) as http:
        failed = http.post("/v1/auth/login", json={"email": email, "password": wrong_password})
        assert failed.status_code == 401
        login = http.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        token = login.json()["accessToken"]
        created = http.post(
            "/nps",
            json={"email": f"r-{secrets.token_hex(4)}@example.com", "score": 9},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": secrets.token_hex(8)},
        )
        assert created.status_code in (200, 201), created.text
        missing = http.get(f"/nps/{secrets.token_hex(12)}", headers=tenant.viewer)
        assert missing.status_code == 404
        respondent = http.get(f"/r/{respondent_token}?score=9")
        query = http.get(f"/nps?apiToken={query_secret}", headers=tenant.viewer)
        assert query.status_code == 400
    ids = {
        "login-failed": failed.headers["x-request-id"],
        "create": created.headers["x-request-id"],
        "missing": missing.headers["x-request-id"],
        "respondent": respondent.headers["x-request-id"],
    }
    assert missing.json()["requestId"] == ids["missing"]

    def access_lines() -> dict[str, dict[str, Any]] | None:
        found = {}
        for line in server.lines():
            record = orjson.loads(line)
            if record.get("logger") == "npsd.access" and record.get("requestId") in ids.values():
                found[record["requestId"]] = record
        return found if len(found) == len(ids) else None

    found = wait_for(access_lines, what="the access lines of the requests")
    # every line the server wrote is one JSON object with the common fields
    for line in server.lines():
        record = orjson.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
    create = found[ids["create"]]
    assert create["orgId"] == tenant.org_id
    assert (create["method"], create["route"], create["status"]) == ("POST", "/nps", created.status_code)
    assert isinstance(create["durationMs"], float) and create["durationMs"] >= 0
    miss = found[ids["missing"]]
    assert (miss["route"], miss["status"], miss["orgId"]) == ("/nps/{key}", 404, tenant.org_id)
    assert found[ids["login-failed"]]["status"] == 401 and "orgId" not in found[ids["login-failed"]]
    assert found[ids["respondent"]]["route"] == "/r/{token}"
    output = server.text()
    for secret in (
        password,
        wrong_password,
        token,
        *tenant.tokens.values(),
        respondent_token,
        query_secret,
        SMTP_PASSWORD,
        METRICS_TOKEN,
        database.settings.secret_key or "unset",
    ):
        assert secret not in output


# ------------------------------------------------------------------------------------------ slow clients


def _closed_by_server(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it is still open."""
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def test_slow_clients_are_cut_off_and_others_still_served(server: LoggedServer) -> None:
    before = value(scrape(server), "npsd_http_header_timeouts_total")
    host, port = "127.0.0.1", server.port
    slow: list[socket.socket] = []
    try:
        for i in range(100):
            sock = socket.create_connection((host, port), timeout=10)
            if i % 10:
                sock.sendall(b"GET /healthz HT")  # half a request line
            slow.append(sock)  # every tenth sends nothing at all
        # a kept-alive connection that starts its second request and stalls
        kept = socket.create_connection((host, port), timeout=10)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: npsd\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            chunk = kept.recv(4096)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: np")
        slow.append(kept)
        opened = time.monotonic()
        # meanwhile, ordinary requests are answered
        for _ in range(5):
            assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200
        # the server closes each stalled connection after the header timeout (a generous deadline
        # for a loaded machine; without the timeout they would stay open for ever)
        deadline = opened + 30
        replies = [_closed_by_server(sock, deadline) for sock in slow]
        still_open = sum(reply is None for reply in replies)
        assert still_open == 0, f"{still_open} of {len(slow)} stalled connections still open"
        assert all(reply is not None and reply.startswith(b"HTTP/1.1 408") for reply in replies)
        assert time.monotonic() - opened < 30
    finally:
        for sock in slow:
            sock.close()
    assert value(scrape(server), "npsd_http_header_timeouts_total") - before >= 101
    assert httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200


def test_beyond_the_connection_limit_requests_get_503_until_connections_free(server: LoggedServer) -> None:
    stalled = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(MAX_CONNECTIONS)
    ]
    try:
        for sock in stalled:
            sock.sendall(b"GET /he")
        refused = httpx.get(server.base_url + "/v1/nps-surveys?page=1", timeout=10)
        assert refused.status_code == 503
        # the one error shape, as every other refusal (not uvicorn's plain "Service Unavailable")
        body = assert_error(refused, 503)
        assert "NPSD_MAX_CONNECTIONS" in body["message"] and body["path"] == "/v1/nps-surveys"
        assert body["requestId"] and refused.headers["x-request-id"] == body["requestId"]
        assert refused.headers["retry-after"] == "1"
        # the header timeout frees them, and requests are answered again
        wait_for(
            lambda: httpx.get(server.base_url + "/healthz", timeout=10).status_code == 200,
            timeout=30,
            what="the stalled connections to be closed",
        )
    finally:
        for sock in stalled:
            sock.close()


def test_the_metrics_token_over_http(server: LoggedServer, tenant: Tenant) -> None:
    assert httpx.get(server.base_url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(server.base_url + "/metrics", headers=tenant.admin, timeout=10).status_code == 401
    samples = scrape(server)
    assert value(samples, "npsd_http_requests_total", route="/metrics", method="GET", status="401") >= 2


# ------------------------------------------------------------------------------------------ start-up


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPSD_")}
    return {**env, "NPSD_DATABASE_URL": database_url, "NPSD_WORKER": "false", **extra}


def _npsd(*args: str) -> list[str]:
    return [sys.executable, "-m", "npsd.cli", *args]


COMMANDS = {
    "migrate": ["migrate"],
    "worker": ["worker", "--once"],
    "org create": ["org", "create", "acme"],
    "token create": ["token", "create", "--org", "acme", "--role", "viewer"],
    "user create": ["user", "create", "--org", "acme", "--email", "ops@example.com", "--role", "admin"],
    "demo": ["demo"],
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run ``npsd`` commands in this process (a fresh Python each would cost seconds) with only
    the given NPSD_ settings; the logging setup a command applies is undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def run(url: str, *args: str, **env: str) -> Any:
        for name in list(os.environ):
            if name.startswith("NPSD_"):
                monkeypatch.delenv(name)
        for name, setting in {"NPSD_DATABASE_URL": url, "NPSD_WORKER": "false", **env}.items():
            monkeypatch.setenv(name, setting)
        return CliRunner().invoke(cli_app, list(args), input="a long enough password 123\n")

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_command_creates_a_missing_sqlite_directory(tmp_path: Path, cli: Any) -> None:
    """Each path to the database: `migrate`, `worker`, and `_session` (which `org create`, `token
    create`, `user create`, `demo` and the other commands share; `serve` is started below). Each
    costs the migrations of a new file, so the commands that share a path are not all run."""
    commands = {name: COMMANDS[name] for name in ("migrate", "worker", "token create")}
    for name, args in commands.items():
        database = tmp_path / name.replace(" ", "-") / "missing" / "dir" / "npsd.db"
        result = cli(f"sqlite:///{database}", *args)
        assert result.exit_code == 0, (name, result.output)
        assert database.is_file(), name


def test_an_unreachable_database_is_one_line_for_every_command(cli: Any) -> None:
    password = "pw-" + secrets.token_hex(8)
    port = free_port()  # nothing listens there
    url = f"postgresql://npsd:{password}@127.0.0.1:{port}/npsd"
    commands = {
        **COMMANDS,
        "user create": [*COMMANDS["user create"], "--password-stdin"],
        "serve": ["serve", "--port", str(free_port())],
        "worker (loop)": ["worker"],
    }
    for name, args in commands.items():
        result = cli(url, *args, NPSD_SECRET_KEY="k" * 40)
        assert result.exit_code == 1, (name, result.output)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (name, result.stderr)
        assert lines[0].startswith(
            f"error: NPSD_DATABASE_URL: cannot connect to the database at 127.0.0.1:{port}/npsd:"
        ), (name, result.stderr)
        assert "refused" in lines[0].lower(), lines[0]
        assert password not in result.output


def test_serve_announces_once_bound_links_follow_host_and_port_and_workers_share_counters(
    tmp_path: Path,
) -> None:
    """`npsd serve --workers 2` on a SQLite file whose directory does not exist yet, without
    NPSD_BASE_URL: the line comes once the port is bound (a request sent right then is answered),
    survey links are built on --host and --port, and every scrape, whichever worker answers it,
    counts the requests of both workers (prometheus-client's multiprocess mode)."""
    database = tmp_path / "not" / "yet" / "npsd.db"
    url = f"sqlite:///{database}"
    env = _env(url, NPSD_METRICS="true", NPSD_LOG_LEVEL="warning")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            _npsd("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        announced = f"npsd serving on {base}"
        wait_for(lambda: announced in log.read_text() or proc.poll() is not None, 90, "the serving line")
        assert proc.poll() is None, log.read_text()
        # no retry: once the line is out, the port takes connections (the workers answer them
        # as soon as they have started)
        assert httpx.get(f"{base}/healthz", timeout=90).status_code == 200
        assert database.is_file()
        settings = Settings(database_url=url)  # the signing key `npsd serve` made beside the file
        db = Database(url, pool_size=1, settings=settings)
        try:
            with db.transaction() as session:
                org = auth_service.ensure_org(session, "ops")
                token = auth_service.create_token(session, settings, org, "admin", timedelta(hours=1)).token
        finally:
            db.dispose()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            survey = http.post("/v1/nps-surveys", json={"name": "Start-up"})
            assert survey.status_code == 201, survey.text
            link = http.get(f"/v1/nps-surveys/{survey.json()['id']}/link")
            assert link.status_code == 200, link.text
        assert link.json()["url"].startswith(f"{base}/s/")
        statuses = [
            httpx.get(f"{base}/nps/{secrets.token_hex(12)}", timeout=30).status_code for _ in range(30)
        ]
        assert set(statuses) == {401}
        for _ in range(6):  # new connections: the two workers take turns accepting them
            samples = parse(httpx.get(f"{base}/metrics", timeout=30).text)
            assert (
                value(samples, "npsd_http_requests_total", route="/nps/{key}", method="GET", status="401")
                == 30
            )
    finally:
        proc.terminate()
        proc.wait(60)
