"""A real PostgreSQL streaming replica of the test cluster, for ``tests/test_replica.py``.

``replica_cluster`` (session scope) copies the test cluster with ``pg_basebackup -R`` into a
temporary directory, starts it as a hot standby on a free port with ``pg_ctl`` (as the
``postgres`` user, which PostgreSQL requires when the tests run as root), and removes it at the
end. Nothing of the system cluster is changed: it must already accept replication connections
from 127.0.0.1 (``.ci/run`` adds that ``pg_hba.conf`` line on the CI machine). Where the replica
cannot be made, the tests are skipped with the reason; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from servers import free_port

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PG_USER = "postgres"


class ReplicaUnavailable(Exception):
    """The replica cannot be made on this machine; the message says why."""


def with_port(url: str, port: int) -> str:
    """``url`` pointing at 127.0.0.1:``port`` instead of its host (user, database, options kept)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def plain(url: str) -> str:
    """A libpq URL (psycopg) for an npsd/SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class Replica:
    """A running hot standby of the test cluster."""

    primary_url: str
    port: int
    data_dir: Path
    bin_dir: Path
    log_file: Path

    @property
    def url(self) -> str:
        return with_port(self.primary_url, self.port)

    def for_url(self, primary_url: str) -> str:
        """The replica's URL for a URL of the primary (same database and options, e.g. a schema)."""
        return with_port(primary_url, self.port)

    def query(self, sql: str) -> Any:
        """The first column of the first row of ``sql`` run on the replica."""
        with psycopg.connect(plain(self.url), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

    def primary_lsn(self) -> str:
        with psycopg.connect(plain(self.primary_url), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
            return str(row[0])

    def replayed(self, lsn: str) -> bool:
        return bool(self.query(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"))

    def catch_up(self, timeout: float = 60) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        lsn = self.primary_lsn()
        deadline = time.monotonic() + timeout
        while not self.replayed(lsn):
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not replay up to {lsn} within {timeout} s")
            time.sleep(0.05)

    def pause(self, timeout: float = 30) -> None:
        """Stop applying WAL (it is still received): the replica's data stays as it is now."""
        self.query("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + timeout
        while self.query("SELECT pg_get_wal_replay_pause_state()") != "paused":
            if time.monotonic() > deadline:
                raise AssertionError("the replica's replay did not pause")
            time.sleep(0.05)

    def resume(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def _pg_ctl(self, *args: str) -> None:
        _as_postgres(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), *args]
        )

    def start(self) -> None:
        self._pg_ctl("-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


def _as_postgres(cmd: list[str], timeout: float = 120) -> None:
    """Run ``cmd`` as the postgres user (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise ReplicaUnavailable(f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[-1500:]}")


def _bin_dir(primary_url: str) -> Path:
    with psycopg.connect(plain(primary_url), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
        assert row is not None
        major = int(row[0])
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_wal_senders')"
        ).fetchall()
        settings: dict[str, str] = {str(name): str(value) for name, value in rows}
    if settings.get("wal_level") not in ("replica", "logical") or int(settings.get("max_wal_senders", 0)) < 2:
        raise ReplicaUnavailable(
            f"the test cluster cannot stream WAL (wal_level={settings.get('wal_level')}, "
            f"max_wal_senders={settings.get('max_wal_senders')})"
        )
    bin_dir = Path(f"/usr/lib/postgresql/{major}/bin")
    if not (bin_dir / "pg_basebackup").exists() or not (bin_dir / "pg_ctl").exists():
        found = shutil.which("pg_basebackup")
        if found is None:
            raise ReplicaUnavailable(f"no pg_basebackup/pg_ctl of PostgreSQL {major} on this machine")
        bin_dir = Path(found).parent
    return bin_dir


def make_replica(primary_url: str, root: Path) -> Replica:
    """Copy the cluster at ``primary_url`` into ``root`` and start it as a hot standby."""
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(PG_USER)
        except KeyError as exc:
            raise ReplicaUnavailable(
                "running as root but there is no postgres user to run a cluster"
            ) from exc
        os.chown(root, owner.pw_uid, owner.pw_gid)
    bin_dir = _bin_dir(primary_url)
    primary = urlsplit(primary_url)
    data_dir = root / "data"
    _as_postgres(
        [
            str(bin_dir / "pg_basebackup"),
            "-R",  # standby.signal and primary_conninfo: a streaming replica when started
            "-c",
            "fast",  # an immediate checkpoint instead of a spread one
            "-D",
            str(data_dir),
            "-h",
            primary.hostname or "127.0.0.1",
            "-p",
            str(primary.port or 5432),
            "-U",
            primary.username or PG_USER,
        ]
    )
    port = free_port()
    # Debian keeps the configuration outside the data directory: the copy gets its own. Hot
    # standby needs at least the primary's max_connections (and friends); 200 covers the default.
    (data_dir / "postgresql.conf").write_text(
        "\n".join(
            [
                f"port = {port}",
                "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{root}'",
                "hot_standby = on",
                "max_connections = 200",
                "max_worker_processes = 16",
                "max_wal_senders = 10",
                "max_locks_per_transaction = 128",
                "max_prepared_transactions = 64",
                "shared_buffers = 32MB",
                "fsync = off",
                "wal_receiver_status_interval = 1s",
                "",
            ]
        )
    )
    (data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\nlocal all all trust\n")
    (data_dir / "pg_ident.conf").write_text("")
    if os.geteuid() == 0:
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.chown(data_dir / name, PG_USER, PG_USER)
    replica = Replica(primary_url, port, data_dir, bin_dir, root / "replica.log")
    try:
        replica.start()
    except ReplicaUnavailable as exc:
        log = replica.log_file.read_text()[-1500:] if replica.log_file.exists() else ""
        raise ReplicaUnavailable(f"{exc}\n{log}") from exc
    replica.catch_up()
    return replica


def _unavailable(reason: str) -> None:
    message = f"no streaming replica could be made: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the replica tests must run; {message}", pytrace=False)
    pytest.skip(f"{message} (CI never skips this; .ci/run prepares the machine)")


@pytest.fixture(scope="session")
def replica_cluster() -> Iterator[Replica]:
    """A hot standby of the test cluster, streaming from it, for the whole session."""
    primary_url = plain(os.environ.get("NPSD_TEST_DATABASE_URL") or DEFAULT_PG)
    try:
        with psycopg.connect(primary_url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at the test URL is unreachable: {exc}")
    root = Path(tempfile.mkdtemp(prefix="npsd-replica-"))
    root.chmod(0o700)
    replica: Replica | None = None
    try:
        try:
            replica = make_replica(primary_url, root)
        except (ReplicaUnavailable, OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(str(exc))
        assert replica is not None
        yield replica
    finally:
        if replica is not None and replica.running:
            with contextlib.suppress(ReplicaUnavailable):
                replica.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
