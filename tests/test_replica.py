"""``NPSD_DATABASE_READ_URL``: heavy reads on a real streaming replica, the rest on the primary.

The replica is a hot standby of the test cluster made by ``pg_basebackup -R`` (tests/replica.py).
To tell where a read went, replay is paused on the replica (``pg_wal_replay_pause()``) and an
answer is written through the API: a heavy read that does not show it came from the replica; a
write route and a point read that show it came from the primary. Stopping the replica shows the
fallback to the primary, and starting it again the return to it.
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from conftest import Tenant, TestDatabase, _make_database, make_tenant, post_nps
from dashboard import csrf_of, make_user
from npsd.app import create_app
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.http import PRIMARY_COOKIE
from npsd.web.session import SESSION_COOKIE
from replica import Replica, replica_cluster  # noqa: F401  (the session fixture)

RETRY_SECONDS = 0.5  # the replica is tried again this soon after it failed (default 5 s)


class Records(logging.Handler):
    """Keeps the messages of the ``npsd.db`` logger (whatever the app's logging configuration)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Stack:
    client: TestClient
    db: Database
    tenant: Tenant
    replica: Replica
    dashboard_session: str
    log: Records

    def read(self, path: str, **kw: Any) -> Any:
        """A GET as a client that has not just written (no read-your-writes cookie)."""
        self.client.cookies.clear()
        return self.client.get(path, headers=self.tenant.viewer, **kw)

    def ids(self) -> set[str]:
        r = self.read("/nps", params={"npsExpiryDay": 0, "limit": 1000})
        assert r.status_code == 200, r.text
        return {rec["_id"] for rec in r.json()}

    def export_ids(self) -> set[str]:
        r = self.read("/nps/export", params={"format": "json", "npsExpiryDay": 0})
        assert r.status_code == 200, r.text
        return {rec["_id"] for rec in orjson.loads(r.content)}

    def total(self) -> int:
        r = self.read("/v1/nps-surveys/nps-metrics")
        assert r.status_code == 200, r.text
        return int(r.json()["totalResponses"])

    def feed_count(self) -> int:
        """'N responses' on the dashboard's feed, signed in with a browser session."""
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, self.dashboard_session)
        r = self.client.get("/app/responses?period=all")
        self.client.cookies.clear()
        assert r.status_code == 200, r.text[:500]
        match = re.search(r"data-count>(\d+) responses?<", r.text)
        assert match, r.text[:500]
        return int(match.group(1))


def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(replica_cluster: Replica) -> Iterator[Stack]:  # noqa: F811
    """The app on a fresh schema of the primary, with the replica as NPSD_DATABASE_READ_URL."""
    with tempfile.TemporaryDirectory() as tmp:
        primary = _make_database("postgresql", Path(tmp))
        read_url = replica_cluster.for_url(primary.url)
        settings = primary.settings.model_copy(update={"database_read_url": read_url})
        db = Database(primary.url, pool_size=5, settings=settings, replica_retry_seconds=RETRY_SECONDS)
        assert db.replica is not None
        tdb = TestDatabase("postgresql", primary.url, settings, db)
        tenant = make_tenant(tdb)
        person = make_user(db, tenant.org_id, "editor")
        log = Records()
        logging.getLogger("npsd.db").addHandler(log)
        try:
            with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
                form = client.get("/app/login")
                signed_in = client.post(
                    "/app/login",
                    data={
                        "email": person.email,
                        "password": person.password,
                        "csrf_token": csrf_of(form.text),
                    },
                    follow_redirects=False,
                )
                assert signed_in.status_code == 303, signed_in.text
                session_cookie = client.cookies[SESSION_COOKIE]
                client.cookies.clear()
                replica_cluster.catch_up()  # the schema and the tenant exist on the replica too
                yield Stack(client, db, tenant, replica_cluster, session_cookie, log)
        finally:
            logging.getLogger("npsd.db").removeHandler(log)
            db.dispose()
            primary.db.dispose()
            for fn in primary.cleanup:
                fn()


def test_heavy_reads_come_from_the_replica_and_the_rest_from_the_primary(stack: Stack) -> None:
    client, tenant, replica = stack.client, stack.tenant, stack.replica
    # the sessions really are on two servers: the replica is in recovery, the primary is not
    with stack.db.read_session() as s:
        assert s.connection().exec_driver_sql("SELECT pg_is_in_recovery()").scalar() is True
    with stack.db.session(False) as s:
        assert s.connection().exec_driver_sql("SELECT pg_is_in_recovery()").scalar() is False

    first = post_nps(client, tenant, f"first-{secrets.token_hex(3)}@example.com", 9)
    replica.catch_up()
    assert stack.ids() == {first["_id"]}
    assert stack.feed_count() == 1

    replica.pause()
    try:
        client.cookies.clear()
        second = post_nps(client, tenant, f"second-{secrets.token_hex(3)}@example.com", 3)
        # the write answered with a cookie that keeps this client's reads on the primary a while
        assert PRIMARY_COOKIE in client.cookies
        sticky = client.get("/nps", params={"npsExpiryDay": 0}, headers=tenant.viewer)
        assert {rec["_id"] for rec in sticky.json()} == {first["_id"], second["_id"]}

        # heavy reads without that cookie: the replica, which has not replayed the second answer
        assert stack.ids() == {first["_id"]}
        assert stack.export_ids() == {first["_id"]}
        assert stack.total() == 1
        assert stack.feed_count() == 1
        stats = stack.read("/v1/nps-surveys/stats")  # answers to surveys only: none here
        assert stats.status_code == 200 and stats.json()["totalResponses"] == 0, stats.text

        # a point read and a write route read the primary: they see it
        point = stack.read(f"/nps/{second['_id']}")
        assert point.status_code == 200 and point.json()["score"] == 3, point.text
        client.cookies.clear()
        changed = client.put(f"/nps/{second['_id']}", json={"score": 4}, headers=tenant.editor)
        assert changed.status_code == 200 and changed.json()["score"] == 4, changed.text
        assert stack.ids() == {first["_id"]}  # still the replica's paused view
    finally:
        replica.resume()
    until(lambda: stack.ids() == {first["_id"], second["_id"]}, "the replica shows the second answer")
    until(lambda: stack.total() == 2, "the replica's metrics count both answers")
    assert stack.export_ids() == {first["_id"], second["_id"]}
    assert stack.feed_count() == 2
    assert not stack.db.replica_down


def test_the_page_after_a_form_shows_its_change_while_the_replica_lags(stack: Stack) -> None:
    """Read your own writes: the form's reply carries the cookie that keeps the next pages on the
    primary; without it, the survey's page would read the replica, which has not seen the survey."""
    client, replica = stack.client, stack.replica
    replica.catch_up()
    replica.pause()
    try:
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, stack.dashboard_session)
        token = csrf_of(client.get("/app/surveys/new").text)
        name = f"Made while the replica lags {secrets.token_hex(3)}"
        form = {  # every field of the form, as a browser sends it
            "csrf_token": token,
            "name": name,
            "description": "",
            "surveyType": "RELATIONSHIP",
            "triggerEvent": "",
            "question": "How likely are you to recommend us?",
            "followUpQuestion": "Why?",
            "isActive": "true",
            "language": "en",
            "throttleDays": "30",
            "reminderAfterDays": "",
            "thankYouMessage": "Thanks!",
            "startsAt": "",
            "endsAt": "",
        }
        made = client.post("/app/surveys", data=form, follow_redirects=False)
        assert made.status_code == 303, re.findall(r'class="error"[^>]*>([^<]+)', made.text)
        assert PRIMARY_COOKIE in client.cookies
        page = client.get(made.headers["location"])
        assert page.status_code == 200 and name in page.text
        listed = client.get("/app/surveys")
        assert listed.status_code == 200 and name in listed.text
        client.cookies.delete(PRIMARY_COOKIE)
        assert client.get(made.headers["location"]).status_code == 404  # the paused replica's view
        assert name not in client.get("/app/surveys").text
    finally:
        replica.resume()
        client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, stack.dashboard_session)
    until(lambda: client.get(made.headers["location"]).status_code == 200, "the replica has the survey")
    client.cookies.clear()


def test_reads_fall_back_to_the_primary_while_the_replica_is_down(stack: Stack) -> None:
    client, tenant, replica = stack.client, stack.tenant, stack.replica
    before = set(stack.ids())
    stack.log.messages.clear()
    replica.stop()
    try:
        client.cookies.clear()
        written = post_nps(client, tenant, f"down-{secrets.token_hex(3)}@example.com", 10)
        # every heavy read still answers, from the primary: the new answer is there at once
        assert stack.ids() == before | {written["_id"]}
        assert stack.db.replica_down
        assert stack.export_ids() == before | {written["_id"]}
        assert stack.total() == len(before) + 1
        assert stack.feed_count() == len(before) + 1
        assert stack.read("/readyz").status_code == 200  # readiness is the primary's
        unreachable = [m for m in stack.log.messages if "read replica unreachable" in m]
        assert len(unreachable) == 1, stack.log.messages  # one warning per outage, not per request
        assert "127.0.0.1" in unreachable[0] and "postgres@" not in unreachable[0]
    finally:
        replica.start()
    replica.catch_up()

    # back: once the retry interval has passed, heavy reads go to the replica again
    replica.pause()
    try:
        client.cookies.clear()
        later = post_nps(client, tenant, f"later-{secrets.token_hex(3)}@example.com", 8)
        until(lambda: later["_id"] not in stack.ids(), "heavy reads return to the (paused) replica")
        assert not stack.db.replica_down
        assert any("read replica answers again" in m for m in stack.log.messages), stack.log.messages
    finally:
        replica.resume()
    until(lambda: later["_id"] in stack.ids(), "the replica shows the answer written while paused")


def test_a_read_replica_must_be_postgresql_behind_a_postgresql_primary() -> None:
    pg = "postgresql://postgres@127.0.0.1:5432/test"
    assert Settings(database_url=pg, database_read_url=pg.replace("5432", "5433")).database_read_url
    assert Settings(database_url=pg, database_read_url="").database_read_url is None
    for primary, read_url, says in [
        (pg, "mysql://db/npsd", "a read replica is a PostgreSQL URL"),
        (pg, "postgresql://", "a read replica is a PostgreSQL URL"),
        (pg, "not a url", "a read replica is a PostgreSQL URL"),
        ("sqlite:///x.db", pg, "needs NPSD_DATABASE_URL on PostgreSQL"),
    ]:
        with pytest.raises(ValidationError) as caught:
            Settings(database_url=primary, database_read_url=read_url)
        assert says in str(caught.value)

    # the command line says it in one line naming the setting, without a traceback or the URL
    done = subprocess.run(
        [sys.executable, "-m", "npsd.cli", "migrate"],
        env={
            "PATH": "/usr/bin:/bin",
            "NPSD_DATABASE_URL": pg,
            "NPSD_SECRET_KEY": "k" * 40,
            "NPSD_DATABASE_READ_URL": "mysql://secret-pass@db/npsd",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NPSD_DATABASE_READ_URL" in lines[0], done.stderr
    assert "secret-pass" not in done.stderr and "Traceback" not in done.stderr
