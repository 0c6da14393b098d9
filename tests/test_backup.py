"""Backup and restore (#11): `npsd backup` copies a live SQLite database while a real server writes
to it, `npsd restore` puts a copy in place only when no server or worker uses the database, and
the restore drill finds every acknowledged answer, exact roll-ups and a working comment search in
the copy. On PostgreSQL both commands print the pg_dump / pg_restore command, which a test runs.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shlex
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner, Result

from conftest import _pg_url, iso_ms
from invariants import rollup_mismatches
from npsd.analytics.nps import nps
from npsd.app import create_app
from npsd.auth import service as auth_service
from npsd.cli import app as cli_app
from npsd.kit.backup import lock_path
from npsd.kit.config import SECRET_KEY_FILE, Settings
from npsd.kit.db import Database, normalize_url
from npsd.migrations import head_revision, upgrade
from servers import ROOT, ServerProcess

KEY = "drill-secret-" + "k" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NPSD_* of the caller's shell leaks into the commands under test."""
    for name in list(os.environ):
        if name.startswith("NPSD_"):
            monkeypatch.delenv(name)


def npsd(*args: str, **env: str) -> Result:
    """``npsd ARGS`` in this process with ``env`` as its NPSD_* settings."""
    return CliRunner().invoke(cli_app, list(args), env=env)


def npsd_process(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``npsd ARGS`` as a separate process (the real executable path, its own locks)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NPSD_")}
    return subprocess.run(
        [sys.executable, "-m", "npsd.cli", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_org(url: str, secret_key: str | None, migrate: bool = True) -> tuple[str, str]:
    """A migrated database at ``url`` with one organization; (org id, an admin token)."""
    if migrate:
        upgrade(url)
    settings = Settings(database_url=url, secret_key=secret_key)
    db = Database(url, pool_size=1, settings=settings)
    try:
        with db.transaction() as session:
            org = auth_service.ensure_org(session, "drill")
            issued = auth_service.create_token(session, settings, org, "admin", timedelta(days=1))
            return org.id, issued.token
    finally:
        db.dispose()


def one_line_error(result: Result | subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit status 1 and said why in one line on stderr, nothing on stdout."""
    assert (result.exit_code if isinstance(result, Result) else result.returncode) == 1, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a backup or restore would leave behind if it did not clean up."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name)


def answers_in(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM nps_record").fetchone()[0])
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ the drill


@dataclass
class Sent:
    source_id: str
    score: int
    sent_at: float  # time.monotonic() when the request left
    acked_at: float | None = None  # when its 2xx arrived


class Writer(threading.Thread):
    """Writes answers through a real server until stopped: single `POST /nps` and bulk `PUT /nps`,
    each answer with its own time (so every contact's latest answer is unambiguous), a company's
    domain for some addresses, a survey for some answers, a searchable word in every comment."""

    def __init__(self, base_url: str, token: str, survey_id: str) -> None:
        super().__init__(daemon=True)
        self.base_url, self.token, self.survey_id = base_url, token, survey_id
        self.sent: list[Sent] = []
        self.stop = threading.Event()
        self.error: str | None = None
        self.first_day = datetime.now(UTC) - timedelta(days=30)
        self.n = 0

    def answer(self, source_id: str) -> dict[str, Any]:
        n = self.n
        self.n += 1
        domain = "acme.test" if n % 3 else "elsewhere.test"
        body = {
            "sourceId": source_id,
            "email": f"p{n % 40}@{domain}",
            "score": (n * 7) % 11,
            "comment": f"drill answer number {n} word{n % 5}",
            "dateAnswered": iso_ms(self.first_day + timedelta(seconds=n)),
        }
        if n % 2:
            body["campaignId"] = self.survey_id
        return body

    def acked(self) -> list[Sent]:
        return [s for s in self.sent if s.acked_at is not None]

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                if i % 4:
                    item = self.answer(f"single-{i}")
                    pending = [Sent(item["sourceId"], item["score"], time.monotonic())]
                    r = client.post("/nps", json=item)
                else:
                    items = [self.answer(f"bulk-{i}-{j}") for j in range(25)]
                    pending = [Sent(it["sourceId"], it["score"], time.monotonic()) for it in items]
                    r = client.put("/nps", json=items)
                    if r.status_code == 200 and r.json()["created"] != len(items):
                        self.error = f"bulk created {r.json()}"
                        return
                self.sent.extend(pending)
                if r.status_code != 200:
                    self.error = f"{r.status_code} {r.text[:300]}"
                    return
                now = time.monotonic()
                for s in pending:
                    s.acked_at = now


def start_worker(url: str) -> subprocess.Popen[bytes]:
    """A real `npsd worker` process on ``url``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NPSD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "npsd.cli", "worker"],
        env={**clean, "NPSD_DATABASE_URL": url, "NPSD_SECRET_KEY": KEY},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def all_records(client: httpx.Client) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        r = client.get("/nps", params={"npsExpiryDay": 0, "limit": 5000, "offset": len(records)})
        assert r.status_code == 200, r.text
        page = r.json()
        records.extend(page)
        if len(page) < 5000:
            return records


def counts(records: list[dict[str, Any]]) -> tuple[int, int, int]:
    scores = [r["score"] for r in records]
    return sum(s >= 9 for s in scores), sum(7 <= s <= 8 for s in scores), sum(s <= 6 for s in scores)


def check_rollups(client: httpx.Client, records: list[dict[str, Any]], survey_id: str) -> None:
    """The API's figures equal those recomputed from the records themselves."""
    metrics = "/v1/nps-surveys/nps-metrics"
    for params, subset in (
        ({}, records),
        ({"surveyId": survey_id}, [r for r in records if r["campaignId"] == survey_id]),
    ):
        body = client.get(metrics, params=params).json()
        p, pa, d = counts(subset)
        assert (body["promoters"], body["passives"], body["detractors"]) == (p, pa, d), params
        assert body["totalResponses"] == len(subset)
        assert body["npsScore"] == nps(p, pa, d)
    survey = client.get(f"/v1/nps-surveys/{survey_id}").json()
    mine = [r for r in records if r["campaignId"] == survey_id]
    assert (survey["responseCount"], survey["npsScore"]) == (len(mine), nps(*counts(mine)))
    groups = client.get(metrics, params={"groupBy": "company"}).json()["groups"]
    by_company = Counter(r["cId"] for r in records)
    assert {g["key"]: g["responses"] for g in groups} == dict(by_company)
    # a company's NPS: its contacts' latest answers (every answer here is of the last 30 days)
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["euId"] not in latest or r["dateAnswered"] > latest[r["euId"]]["dateAnswered"]:
            latest[r["euId"]] = r
    companies = [c for c in by_company if c is not None]
    assert len(companies) == 1
    for company_id in companies:
        mine = [r for r in latest.values() if r["cId"] == company_id]
        company = client.get(f"/companies/{company_id}").json()
        assert (company["nps"], company["npsResponses"]) == (nps(*counts(mine)), len(mine))
    for eu_id, r in list(latest.items())[:10]:
        contact = client.get(f"/endusers/{eu_id}").json()
        assert (contact["nps"], contact["npsComment"]) == (r["score"], r["comment"])


def matches(comment: str, search: str) -> bool:
    """What comment search promises: each word of the search begins a word of the comment."""
    return all(any(w.startswith(q) for w in comment.lower().split()) for q in search.lower().split())


def test_restore_drill(tmp_path: Path) -> None:
    """Back up while a server writes, restore into a fresh directory, serve the copy: every answer
    acknowledged before the backup began is there with its score, none sent after it ended is,
    roll-ups are exact, comment search works. A restore over the live database is refused while
    its server or its worker runs (each holds the database's lock: checked in the kernel's lock
    table), and works once both ended, even by SIGKILL."""
    live = tmp_path / "live" / "npsd.db"
    live.parent.mkdir()
    backup_file = tmp_path / "backups" / "npsd-1.db"
    backup_file.parent.mkdir()
    server = ServerProcess(sqlite_url(live), KEY)
    restored_server: ServerProcess | None = None
    writer: Writer | None = None
    worker = start_worker(sqlite_url(live))  # starts while the server does (migrations take a lock)
    try:
        server.start()  # it migrates the new database
        org_id, token = make_org(sqlite_url(live), KEY, migrate=False)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            r = client.post("/companies", json={"name": "Acme", "domains": ["acme.test"]})
            assert r.status_code == 200, r.text
            r = client.post("/v1/nps-surveys", json={"name": "Drill"})
            assert r.status_code in (200, 201), r.text
            survey_id = r.json()["id"]
        writer = Writer(server.base_url, token, survey_id)
        writer.start()
        wait_until(lambda: len(writer.acked()) >= 150 or writer.error is not None, "150 answers")
        assert writer.error is None, writer.error

        began = time.monotonic()
        made = npsd_process(
            "backup", str(backup_file), NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY
        )
        ended = time.monotonic()
        assert made.returncode == 0, made.stderr
        during = [s for s in writer.acked() if began < s.acked_at < ended]  # type: ignore[operator]
        assert during, "the server kept answering while the backup ran"
        n_after = len(writer.acked())
        wait_until(lambda: len(writer.acked()) >= n_after + 50 or writer.error is not None, "writes after")
        writer.stop.set()
        writer.join(60)
        assert writer.error is None, writer.error

        # what it printed, and what it wrote
        match = re.fullmatch(
            rf"wrote {re.escape(str(backup_file))}: [0-9.]+ (KiB|MiB), ([0-9,]+) answers, "
            rf"migration {head_revision()}, in [0-9.]+ s",
            made.stdout.splitlines()[0],
        )
        assert match, made.stdout
        in_backup = int(match.group(2).replace(",", ""))
        assert in_backup == answers_in(backup_file)
        acked_before = [s for s in writer.sent if s.acked_at is not None and s.acked_at < began]
        sent_after = [s for s in writer.sent if s.sent_at > ended]
        assert len(acked_before) <= in_backup <= len(writer.sent) - len(sent_after)
        assert sent_after, "answers were written after the backup"
        assert "NPSD_SECRET_KEY" in made.stdout  # no key file to copy: it says where the key is
        assert not Path(f"{backup_file}.secret-key").exists()
        assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600
        assert not Path(f"{backup_file}-wal").exists()  # one self-contained file
        assert leftovers(backup_file.parent) == []

        # a second backup onto the same file is refused and leaves it alone
        before = backup_file.read_bytes()
        again = npsd("backup", str(backup_file), NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY)
        assert "already exists" in one_line_error(again) and "--force" in again.stderr
        assert backup_file.read_bytes() == before

        # restoring over the database of a running server (and worker) is refused, and changes nothing
        wait_until(
            lambda: worker.poll() is not None or worker.pid in flock_holders(lock_path(live)), "worker"
        )
        holders = flock_holders(lock_path(live))
        assert worker.pid in holders and len(holders) == 2 and set(holders.values()) == {"READ"}, holders
        refused = npsd("restore", str(backup_file), NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY)
        assert "in use" in one_line_error(refused)
        assert [p.name for p in live.parent.iterdir() if "before-restore" in p.name] == []
        assert leftovers(live.parent) == []
        assert httpx.get(server.base_url + "/readyz").status_code == 200

        # restore into a fresh directory and serve it
        fresh = tmp_path / "fresh" / "data" / "npsd.db"  # the folder does not exist yet
        done = npsd("restore", str(backup_file), NPSD_DATABASE_URL=sqlite_url(fresh), NPSD_SECRET_KEY=KEY)
        assert done.exit_code == 0, done.output
        assert f"{in_backup:,} answers" in done.stdout
        assert answers_in(fresh) == in_backup
        restored_server = ServerProcess(sqlite_url(fresh), KEY)
        restored_server.start()
        with httpx.Client(base_url=restored_server.base_url, headers=headers, timeout=30) as client:
            records = all_records(client)
            assert len(records) == in_backup
            found = {r["sourceId"]: r["score"] for r in records}
            missing = [s.source_id for s in acked_before if found.get(s.source_id) != s.score]
            assert missing == [], f"acknowledged before the backup, not in the copy: {missing[:5]}"
            assert [s.source_id for s in sent_after if s.source_id in found] == []
            check_rollups(client, records, survey_id)
            # comment search runs on the copy's own index
            for word in ("word3", "number 17"):
                r = client.get("/nps", params={"search": word, "npsExpiryDay": 0, "limit": 5000})
                assert r.status_code == 200, r.text
                expected = {rec["_id"] for rec in records if matches(rec["comment"], word)}
                assert expected and {rec["_id"] for rec in r.json()} == expected, word
        db = Database(sqlite_url(fresh), pool_size=1)
        try:
            assert rollup_mismatches(db, org_id) == []
        finally:
            db.dispose()

        # once its server stopped, the live database can be restored in place; the old one is kept
        server.stop()
        wait_until(
            lambda: worker.poll() is not None or worker.pid in flock_holders(lock_path(live)), "worker"
        )
        assert flock_holders(lock_path(live)) == {worker.pid: "READ"}
        refused = npsd("restore", str(backup_file), NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY)
        assert "in use" in one_line_error(refused)
        worker.kill()  # SIGKILL: no handler runs, and still its lock goes with it (unlike a PID file)
        worker.wait(30)
        assert flock_holders(lock_path(live)) == {}
        in_live = answers_in(live)
        assert in_live >= len(writer.acked()) > in_backup
        back = npsd("restore", str(backup_file), NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY)
        assert back.exit_code == 0, back.output
        kept = [p for p in live.parent.iterdir() if p.name.startswith("npsd.db.before-restore-")]
        assert [p.name for p in kept] == [re.search(r"kept as .*/(\S+)", back.stdout).group(1)]  # type: ignore[union-attr]
        assert answers_in(kept[0]) == in_live  # the whole old database, its log folded in
        assert answers_in(live) == in_backup
        assert not Path(f"{live}-wal").exists() and not Path(f"{live}-shm").exists()
        assert leftovers(live.parent) == []
    finally:
        worker.kill()
        worker.wait(30)
        if writer is not None:
            writer.stop.set()
            writer.join(60)
        server.kill()
        if restored_server is not None:
            restored_server.kill()


# ------------------------------------------------------------------------------------------ the key


def test_backup_keeps_the_signing_key_and_restore_puts_it_back(tmp_path: Path) -> None:
    """Without NPSD_SECRET_KEY the key file beside the database goes with the backup (mode 0600)
    and comes back with the restore, so a token issued before the backup works on the copy; the
    app holds the database's lock while it runs, so a restore under it is refused."""
    live = tmp_path / "a" / "npsd.db"
    live.parent.mkdir()
    _, token = make_org(sqlite_url(live), None)
    key = (live.parent / SECRET_KEY_FILE).read_bytes()
    target = tmp_path / "npsd-backup.db"
    made = npsd("backup", str(target), NPSD_DATABASE_URL=sqlite_url(live))
    assert made.exit_code == 0, made.output
    key_copy = Path(f"{target}.secret-key")
    assert f"signing key copied to {key_copy}" in made.stdout
    assert key_copy.read_bytes() == key and stat.S_IMODE(key_copy.stat().st_mode) == 0o600
    target.unlink()  # FILE is gone but its key copy is not: still refused without --force
    assert "already exists" in one_line_error(npsd("backup", str(target), NPSD_DATABASE_URL=sqlite_url(live)))
    assert not target.exists()
    assert npsd("backup", "--force", str(target), NPSD_DATABASE_URL=sqlite_url(live)).exit_code == 0

    # a fresh place: the key arrives with the database
    fresh = tmp_path / "b" / "npsd.db"
    done = npsd("restore", str(target), NPSD_DATABASE_URL=sqlite_url(fresh))
    assert done.exit_code == 0, done.output
    assert "signing key came with the backup" in done.stdout
    fresh_key = fresh.parent / SECRET_KEY_FILE
    assert fresh_key.read_bytes() == key and stat.S_IMODE(fresh_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600  # a first database holds people's addresses too
    with TestClient(create_app(Settings(database_url=sqlite_url(fresh)))) as client:
        r = client.get("/nps", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert flock_holders(lock_path(fresh)) == {os.getpid(): "READ"}  # the app's lifespan holds it
        refused = npsd("restore", str(target), NPSD_DATABASE_URL=sqlite_url(fresh))
        assert "in use" in one_line_error(refused)
    assert flock_holders(lock_path(fresh)) == {}  # released when the app stopped
    again = npsd("restore", "--discard-old", str(target), NPSD_DATABASE_URL=sqlite_url(fresh))
    assert again.exit_code == 0, again.output
    assert [p.name for p in fresh.parent.iterdir() if "before-restore" in p.name] == []

    # a place with another key: the backup's key replaces it, the other is kept aside
    other = tmp_path / "c" / "npsd.db"
    other.parent.mkdir()
    (other.parent / SECRET_KEY_FILE).write_bytes(b"o" * 48)
    assert npsd("restore", str(target), NPSD_DATABASE_URL=sqlite_url(other)).exit_code == 0
    assert (other.parent / SECRET_KEY_FILE).read_bytes() == key
    aside = [p for p in other.parent.iterdir() if p.name.startswith(f"{SECRET_KEY_FILE}.before-restore-")]
    assert [p.read_bytes() for p in aside] == [b"o" * 48]

    # with NPSD_SECRET_KEY set, the key copy is left alone, and it says so
    keyed = tmp_path / "e" / "npsd.db"
    done = npsd("restore", str(target), NPSD_DATABASE_URL=sqlite_url(keyed), NPSD_SECRET_KEY=KEY)
    assert done.exit_code == 0, done.output
    assert "is not used: NPSD_SECRET_KEY is set" in done.stdout
    assert not (keyed.parent / SECRET_KEY_FILE).exists()

    # a backup without its key copy: restored, with a warning that says what it means
    key_copy.unlink()
    lone = npsd("restore", str(target), NPSD_DATABASE_URL=sqlite_url(tmp_path / "d" / "npsd.db"))
    assert lone.exit_code == 0, lone.output
    assert "warning: no " in lone.stderr and "will not verify" in lone.stderr


def flock_holders(path: Path) -> dict[int, str]:
    """pid -> READ / WRITE of the flock locks the kernel lists on ``path`` (Linux /proc/locks)."""
    inode = path.stat().st_ino
    holders: dict[int, str] = {}
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            holders[int(fields[4])] = fields[3]
    return holders


# ------------------------------------------------------------------------------------------ refusals


def test_a_backup_that_cannot_be_made_leaves_nothing_under_its_name(tmp_path: Path) -> None:
    live = tmp_path / "a" / "npsd.db"
    live.parent.mkdir()
    make_org(sqlite_url(live), KEY)
    env = {"NPSD_DATABASE_URL": sqlite_url(live), "NPSD_SECRET_KEY": KEY}
    target = tmp_path / "out" / "npsd.db"
    assert "does not exist" in one_line_error(npsd("backup", str(target), **env))
    target.parent.mkdir()
    assert "the database itself" in one_line_error(npsd("backup", str(live), **env))
    assert "is a directory" in one_line_error(npsd("backup", str(target.parent), **env))
    # no database: refused, and trying creates none
    missing = tmp_path / "nothing" / "npsd.db"
    refused = npsd("backup", str(target), NPSD_DATABASE_URL=sqlite_url(missing), NPSD_SECRET_KEY=KEY)
    assert "no database" in one_line_error(refused)
    assert not missing.exists()
    # a copy that fails verification never appears under FILE: an index entry without its answer
    conn = sqlite3.connect(live)
    conn.execute("INSERT INTO nps_record_fts(rowid, comment) VALUES (424242, 'ghost')")
    conn.commit()
    conn.close()
    failed = npsd("backup", str(target), **env)
    assert "comment search index" in one_line_error(failed)
    assert list(target.parent.iterdir()) == []


def test_restore_refuses_what_it_cannot_serve_and_touches_nothing(tmp_path: Path) -> None:
    live = tmp_path / "a" / "npsd.db"
    live.parent.mkdir()
    make_org(sqlite_url(live), KEY)
    env = {"NPSD_DATABASE_URL": sqlite_url(live), "NPSD_SECRET_KEY": KEY}
    good = tmp_path / "good.db"
    assert npsd("backup", str(good), **env).exit_code == 0
    before = live.read_bytes()
    files = sorted(p.name for p in live.parent.iterdir())

    def refused(file: Path) -> str:
        line = one_line_error(npsd("restore", str(file), **env))
        assert live.read_bytes() == before
        assert sorted(p.name for p in live.parent.iterdir()) == files
        return line

    assert "no backup file" in refused(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database\n" * 200)
    assert "not a SQLite database" in refused(junk)
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    assert "not one of npsd" in refused(foreign)
    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.commit()
    conn.close()
    assert "9999_future" in refused(newer) and "does not know" in refused(newer)
    broken = tmp_path / "broken.db"
    broken.write_bytes(good.read_bytes())
    conn = sqlite3.connect(broken)
    conn.execute("INSERT INTO nps_record_fts(rowid, comment) VALUES (424242, 'ghost')")
    conn.commit()
    conn.close()
    assert "comment search index" in refused(broken)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    assert refused(truncated)
    Path(f"{good}-wal").write_bytes(b"x" * 100)
    assert "write-ahead log" in refused(good)


def test_a_server_does_not_start_on_a_database_being_restored(tmp_path: Path) -> None:
    """While a restore holds the lock, the app refuses to start instead of serving a file that is
    about to be replaced."""
    live = tmp_path / "a" / "npsd.db"
    live.parent.mkdir()
    make_org(sqlite_url(live), KEY)
    fd = os.open(lock_path(live), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what `npsd restore` holds while it works
        app = create_app(Settings(database_url=sqlite_url(live), secret_key=KEY, worker=False))
        with pytest.raises(Exception, match=r"restore of the database .* is in progress"), TestClient(app):
            pass
        worker = npsd("worker", "--once", NPSD_DATABASE_URL=sqlite_url(live), NPSD_SECRET_KEY=KEY)
        assert "restore of the database" in one_line_error(worker)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of its own on the test PostgreSQL server (pg_dump and pg_restore work on whole
    databases, not on the schemas the rest of the suite uses); its URL."""
    base = _pg_url()
    if base is None:
        pytest.skip("PostgreSQL is not reachable (set NPSD_TEST_DATABASE_URL); CI never skips this")
    name = f"npsd_backup_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    parts = urlsplit(base)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_on_postgresql_the_printed_pg_dump_and_pg_restore_commands_work(
    pg_database: str, tmp_path: Path
) -> None:
    """`npsd backup` and `npsd restore` do nothing on PostgreSQL: they exit 1 and print the exact
    pg_dump / pg_restore command for the configured database, without its password. Those
    commands, run as printed, back up the database and put it back (an answer written after the
    dump is gone, the earlier one, its search index and the tokens are there)."""
    upgrade(pg_database)
    settings = Settings(database_url=pg_database, secret_key=KEY, worker=False, rate_limit=0)
    _, token = make_org(pg_database, KEY)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/nps",
            json={"email": "kept@example.com", "score": 9, "comment": "before the dump"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
    # the configured URL carries a password (trust authentication ignores it): never printed
    parts = urlsplit(pg_database)
    user, host = parts.netloc.split("@")
    with_password = urlunsplit((parts.scheme, f"{user}:s3cret-pw@{host}", parts.path, "", ""))
    dump = tmp_path / "npsd pg.dump"

    backup = npsd("backup", str(dump), NPSD_DATABASE_URL=with_password, NPSD_SECRET_KEY=KEY)
    assert backup.exit_code == 1
    assert backup.stdout == f"pg_dump --format=custom --file='{dump}' {pg_database}\n"
    assert "nothing was done" in backup.stderr and "PGPASSWORD" in backup.stderr
    assert "s3cret-pw" not in backup.output
    assert not dump.exists()
    subprocess.run(shlex.split(backup.stdout), check=True, capture_output=True, timeout=120)
    assert dump.stat().st_size > 0

    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/nps",
            json={"email": "later@example.com", "score": 0, "comment": "after the dump"},
            headers=headers,
        )
        assert r.status_code == 200, r.text

    restore = npsd("restore", str(dump), NPSD_DATABASE_URL=with_password, NPSD_SECRET_KEY=KEY)
    assert restore.exit_code == 1
    expected = (
        f"pg_restore --clean --if-exists --no-owner --single-transaction --dbname={pg_database} '{dump}'\n"
    )
    assert restore.stdout == expected
    assert "s3cret-pw" not in restore.output
    subprocess.run(shlex.split(restore.stdout), check=True, capture_output=True, timeout=120)

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        records = client.get("/nps", headers=headers).json()
        assert [(r["email"], r["score"]) for r in records] == [("kept@example.com", 9)]
        found = client.get("/nps", params={"search": "dump"}, headers=headers).json()
        assert [r["comment"] for r in found] == ["before the dump"]


def test_a_backup_of_an_older_schema_is_restored_then_migrated(tmp_path: Path) -> None:
    """A backup made before the comment search existed (migration 0004) is restored as it is
    and brought up to date by `npsd migrate`, search index included."""
    old = tmp_path / "old" / "npsd.db"
    old.parent.mkdir()
    upgrade(sqlite_url(old), "0004")
    env = {"NPSD_SECRET_KEY": KEY}
    made = npsd("backup", str(tmp_path / "old.db"), NPSD_DATABASE_URL=sqlite_url(old), **env)
    assert made.exit_code == 0, made.output
    assert "migration 0004" in made.stdout
    fresh = tmp_path / "new" / "npsd.db"
    done = npsd("restore", str(tmp_path / "old.db"), NPSD_DATABASE_URL=sqlite_url(fresh), **env)
    assert done.exit_code == 0, done.output
    assert f"brings it to migration {head_revision()}" in done.stdout
    assert npsd("migrate", NPSD_DATABASE_URL=sqlite_url(fresh), **env).exit_code == 0
    conn = sqlite3.connect(fresh)
    try:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision()
        conn.execute("INSERT INTO nps_record_fts(nps_record_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()
