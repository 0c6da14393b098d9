"""The ``npsd`` command line, on a temporary SQLite file: its names and flags are a contract that
the README and users' scripts rely on. Also the real executable, and ``npsd serve`` as a real
server process whose tokens survive a restart (signing key kept beside the database)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner, Result

from npsd.app import create_app
from npsd.auth import tokens
from npsd.cli import app as cli_app
from npsd.kit.config import Settings
from servers import free_port

KEY_FILE = ".npsd-secret-key"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite file in its own folder; no NPSD_SECRET_KEY, so the key file logic is used.
    The working directory is elsewhere, to show the key file goes beside the database."""
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'npsd.db'}"
    for name in list(os.environ):
        if name.startswith("NPSD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NPSD_DATABASE_URL", url)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return url


def npsd(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli_app, list(args), input=input)


def ok(*args: str, input: str | None = None) -> str:
    """Run a command that must succeed; return its stdout."""
    result = npsd(*args, input=input)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def fails(*args: str, input: str | None = None) -> Result:
    result = npsd(*args, input=input)
    assert result.exit_code != 0, (args, result.output)
    assert result.stdout == ""
    return result


def api(url: str) -> TestClient:
    """The app on the CLI's database, with settings read like ``npsd serve`` reads them."""
    return TestClient(create_app(Settings(database_url=url)), raise_server_exceptions=False)


# ------------------------------------------------------------------------------------------ migrate


def test_migrate_creates_the_schema(db_url: str) -> None:
    result = npsd("migrate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "up to date" in result.stderr
    engine = create_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"organization", "api_token", "user", "company", "enduser", "nps_record", "nps_rollup"} <= tables
    assert npsd("migrate").exit_code == 0  # idempotent


# --------------------------------------------------------------------------------------------- org


def test_org_create_is_idempotent(db_url: str) -> None:
    first = ok("org", "create", "Acme Corp")
    second = ok("org", "create", "Acme Corp")
    assert first == second
    assert len(first.strip()) == 24 and first.endswith("\n") and first.count("\n") == 1
    assert ok("org", "create", "Other") != first
    assert ok("org", "create", "  Acme Corp ") == first


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_org_create_rejects_bad_names(db_url: str, name: str) -> None:
    assert "organization name" in fails("org", "create", name).stderr


# ------------------------------------------------------------------------------------------- token


def test_token_create_prints_only_the_token_and_creates_the_org(db_url: str) -> None:
    out = ok("token", "create", "--org", "New Org", "--role", "editor", "--name", "ci")
    assert out.count("\n") == 1
    token = out.strip()
    assert token.count(".") == 2 and " " not in token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["role"] == "editor"
    assert claims["exp"] - claims["iat"] == 90 * 86400  # the default TTL
    assert claims["org"] == ok("org", "create", "New Org").strip()  # the org exists already: same id
    # the token works over HTTP, verified with the key kept beside the database
    with api(db_url) as client:
        r = client.post("/companies", json={"name": "A"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        r = client.delete(f"/companies/{r.json()['_id']}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403


@pytest.mark.parametrize(
    "ttl, seconds",
    [("90d", 90 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("2w", 14 * 86400), ("45s", 45), ("1D", 86400)],
)
def test_token_ttl(db_url: str, ttl: str, seconds: int) -> None:
    token = ok("token", "create", "--org", "o", "--role", "viewer", "--ttl", ttl).strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == seconds


@pytest.mark.parametrize("role", ["owner", "", "Admin", "root"])
def test_token_create_bad_role(db_url: str, role: str) -> None:
    result = fails("token", "create", "--org", "Never", "--role", role)
    assert "invalid role" in result.stderr
    assert all(name in result.stderr for name in ("viewer", "editor", "admin"))
    assert "no organization" in fails("token", "list", "--org", "Never").stderr  # nothing was created


@pytest.mark.parametrize("ttl", ["90x", "0d", "d", "-5d", "1.5d", "", "ninety days", "90"])
def test_token_create_bad_ttl(db_url: str, ttl: str) -> None:
    result = fails("token", "create", "--org", "o", "--role", "admin", "--ttl", ttl)
    assert "TTL" in result.stderr


def test_token_create_needs_org_and_role(db_url: str) -> None:
    assert npsd("token", "create", "--role", "admin").exit_code == 2
    assert npsd("token", "create", "--org", "o").exit_code == 2


def test_token_list_and_revoke(db_url: str) -> None:
    admin = ok("token", "create", "--org", "acme", "--role", "admin", "--name", "deploy bot").strip()
    viewer = ok("token", "create", "--org", "acme", "--role", "viewer").strip()
    ok("token", "create", "--org", "other", "--role", "admin", "--name", "not listed")
    jti = jwt.decode(admin, options={"verify_signature": False})["jti"]
    viewer_jti = jwt.decode(viewer, options={"verify_signature": False})["jti"]
    lines = [line.split("\t") for line in ok("token", "list", "--org", "acme").splitlines()]
    assert lines[0] == ["jti", "name", "role", "kind", "created", "expires", "last used", "revoked"]
    rows = {row[0]: row for row in lines[1:]}
    assert set(rows) == {jti, viewer_jti}
    assert rows[jti][1:4] == ["deploy bot", "admin", "api"] and rows[jti][7] == ""
    assert rows[viewer_jti][1:3] == ["", "viewer"]
    assert "no organization" in fails("token", "list", "--org", "nope").stderr
    assert "'[bold]x[/bold]'" in fails("token", "list", "--org", "[bold]x[/bold]").stderr  # no markup

    with api(db_url) as client:
        headers = {"Authorization": f"Bearer {admin}"}
        assert client.post("/companies", json={"name": "x"}, headers=headers).status_code == 200
        result = npsd("token", "revoke", jti)
        assert result.exit_code == 0 and "revoked" in result.stderr
        r = client.get("/companies", headers=headers)
        assert r.status_code == 401 and r.json()["statusCode"] == 401
        assert client.get("/companies", headers={"Authorization": f"Bearer {viewer}"}).status_code == 200
    rows = {
        row.split("\t")[0]: row.split("\t") for row in ok("token", "list", "--org", "acme").splitlines()[1:]
    }
    assert rows[jti][7].endswith("Z")  # revoked at
    assert rows[jti][6].endswith("Z")  # last used (by the POST)
    assert rows[viewer_jti][7] == ""
    assert npsd("token", "revoke", jti).exit_code == 0  # idempotent
    for bad in ("0" * 32, "nope", "x" * 100):
        assert "no token" in fails("token", "revoke", bad).stderr


# -------------------------------------------------------------------------------------------- user


def test_user_create_and_login(db_url: str) -> None:
    out = ok(
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        "Ann@Example.com",
        "--role",
        "editor",
        "--password-stdin",
        input="s3cret password\n",
    )
    assert len(out.strip()) == 24 and out.count("\n") == 1
    with api(db_url) as client:
        r = client.post("/v1/auth/login", json={"email": "ann@example.com", "password": "s3cret password"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokenType"] == "Bearer" and body["expiresAt"].endswith("Z")
        claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
        assert claims["role"] == "editor" and claims["org"] == ok("org", "create", "acme").strip()
        headers = {"Authorization": f"Bearer {body['accessToken']}"}
        assert client.post("/companies", json={"name": "x"}, headers=headers).status_code == 200
        assert (
            client.post("/v1/auth/login", json={"email": "ann@example.com", "password": "nope"}).status_code
            == 401
        )
    # the login token is listed like the others
    kinds = [row.split("\t")[3] for row in ok("token", "list", "--org", "acme").splitlines()[1:]]
    assert kinds == ["session"]


def test_user_create_failures(db_url: str) -> None:
    ok(
        "user",
        "create",
        "--org",
        "acme",
        "--email",
        "a@example.com",
        "--role",
        "admin",
        "--password-stdin",
        input="long enough\n",
    )
    assert (
        "already exists"
        in fails(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "A@EXAMPLE.com",
            "--role",
            "viewer",
            "--password-stdin",
            input="long enough\n",
        ).stderr
    )
    assert (
        "8 characters"
        in fails(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "b@example.com",
            "--role",
            "viewer",
            "--password-stdin",
            input="short\n",
        ).stderr
    )
    assert (
        "role"
        in fails(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "c@example.com",
            "--role",
            "boss",
            "--password-stdin",
            input="long enough\n",
        ).stderr
    )
    assert (
        "e-mail"
        in fails(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "not-an-email",
            "--role",
            "viewer",
            "--password-stdin",
            input="long enough\n",
        ).stderr
    )
    assert (
        "8 characters"
        in fails(
            "user",
            "create",
            "--org",
            "acme",
            "--email",
            "d@example.com",
            "--role",
            "viewer",
            "--password-stdin",
            input="",
        ).stderr
    )


# ---------------------------------------------------------------------------------- signing key


def test_signing_key_is_kept_beside_the_database(db_url: str, tmp_path: Path) -> None:
    token = ok("token", "create", "--org", "o", "--role", "admin").strip()
    key_file = tmp_path / "data" / KEY_FILE
    assert key_file.exists() and not (tmp_path / "cwd" / KEY_FILE).exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 32
    # a later process (fresh Settings) reads the same key and accepts the token
    assert Settings(database_url=db_url).signing_key == key
    assert tokens.decode(Settings(database_url=db_url), token)["role"] == "admin"
    ok("token", "create", "--org", "o", "--role", "admin")
    assert key_file.read_text().strip() == key  # never regenerated


def test_explicit_secret_key_writes_no_file(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPSD_SECRET_KEY", "an explicit key of enough length 0123456789")
    token = ok("token", "create", "--org", "o", "--role", "admin").strip()
    assert not (tmp_path / "data" / KEY_FILE).exists()
    claims = tokens.decode(
        Settings(database_url=db_url, secret_key="an explicit key of enough length 0123456789"), token
    )
    assert claims["role"] == "admin"
    with pytest.raises(tokens.InvalidToken):
        tokens.decode(Settings(database_url=db_url, secret_key="another key"), token)


def test_unusable_key_file_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("")
    with pytest.raises(RuntimeError, match="no usable signing key"):
        _ = Settings(database_url=f"sqlite:///{tmp_path / 'npsd.db'}").signing_key


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    import concurrent.futures

    url = f"sqlite:///{tmp_path / 'npsd.db'}"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: Settings(database_url=url).signing_key, range(16)))
    assert len(keys) == 1 and len(keys.pop()) >= 32
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_postgresql_requires_an_explicit_key() -> None:
    with pytest.raises(RuntimeError, match="NPSD_SECRET_KEY"):
        _ = Settings(database_url="postgresql://postgres@127.0.0.1:5432/test", secret_key=None).signing_key


def test_issued_tokens_expire_by_ttl(db_url: str) -> None:
    settings = Settings(database_url=db_url, secret_key="k" * 40)
    issued = tokens.issue(settings, org_id="o", role="admin", ttl=timedelta(seconds=-30), subject="o")
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.decode(settings, issued.token)


# ----------------------------------------------------------------------------------- real process


def npsd_command() -> list[str]:
    exe = Path(sys.executable).parent / "npsd"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("npsd")
    return [found] if found else [sys.executable, "-m", "npsd.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPSD_")}
    env.update(extra)
    return env


def test_npsd_help_as_a_real_executable(tmp_path: Path) -> None:
    result = subprocess.run(
        [*npsd_command(), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(COLUMNS="200"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "org", "token", "user"):
        assert command in result.stdout
    result = subprocess.run(
        [*npsd_command(), "token", "create", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(COLUMNS="200"),
        cwd=tmp_path,
    )
    assert result.returncode == 0
    for flag in ("--org", "--role", "--ttl", "--name"):
        assert flag in result.stdout


@pytest.fixture
def server_runner(tmp_path: Path) -> Iterator[Any]:
    """Starts ``npsd serve`` processes and makes sure every one is stopped."""
    started: list[subprocess.Popen[bytes]] = []

    def start(db_url: str, port: int) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"serve-{len(started)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [*npsd_command(), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(NPSD_DATABASE_URL=db_url),
            cwd=tmp_path,
        )
        started.append(proc)
        deadline = time.monotonic() + 60  # a bound on waiting, not an assertion about speed
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / f"serve-{len(started) - 1}.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("npsd serve did not answer /healthz")

    def stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for proc in started:
        stop(proc)


def test_serve_real_process_and_tokens_survive_restart(
    db_url: str, server_runner: Any, tmp_path: Path
) -> None:
    token = ok("token", "create", "--org", "acme", "--role", "admin").strip()
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    proc = server_runner(db_url, port)
    base = f"http://127.0.0.1:{port}"
    r = httpx.post(f"{base}/companies", json={"name": "Served"}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{base}/companies", timeout=10).status_code == 401
    server_runner.stop(proc)
    assert proc.returncode is not None
    # a new process, the same key file: the token still works and the data is still there
    port = free_port()
    server_runner(db_url, port)
    r = httpx.get(f"http://127.0.0.1:{port}/companies", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert [c["name"] for c in r.json()] == ["Served"]
    assert stat.S_IMODE((tmp_path / "data" / KEY_FILE).stat().st_mode) == 0o600
