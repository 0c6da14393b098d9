"""Scale-out on PostgreSQL, proven with real processes: two ``npsd serve`` and two ``npsd worker``
on one fresh database, all started at once (so they also race to migrate it).

Through both servers: concurrent bulk upserts with overlapping ``sourceId``s and single creates,
then exact roll-ups, metrics equal to a recount of ``GET /nps``, and no ``sourceId`` twice in the
table; a token revoked through one server refused by the other within the documented 2 s. With
three workers competing for the mail (the two ``npsd worker`` and the first server's in-process
worker), every invitation is mailed exactly once: normally, while the SMTP server is down for a
while, and when the process sending a mail is killed with SIGKILL in the middle of its DATA phase.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, text, update

from conftest import Tenant, TestDatabase, make_tenant, pg_schema
from faults import HoldingSink
from invariants import rollup_mismatches
from npsd.auth.cache import STATE_TTL
from npsd.collect.service import SEND_JOB
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.models import Invitation, Job
from npsd.kit.timeutil import utcnow
from servers import NpsdProcess, ServerProcess, WorkerProcess, free_port

LEASE_SECONDS = 2.0  # NPSD_JOB_LEASE_SECONDS of every process: a dead sender's job is retaken soon
SOURCE_IDS = 400  # distinct sourceIds, each upserted by every bulk writer
SINGLES_PER_SERVER = 50


class TrackingSink(HoldingSink):
    """A :class:`HoldingSink` that knows which client connections (by port) are in DATA now."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data: set[int] = set()
        self.sent_from: dict[str, int] = {}  # recipient -> client port of the accepted message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        port = int(session.peer[1])
        with self.lock:
            self.in_data.add(port)
        try:
            reply = await super().handle_DATA(server, session, envelope)
        finally:
            with self.lock:
                self.in_data.discard(port)
        with self.lock:
            self.sent_from.update(dict.fromkeys(envelope.rcpt_tos, port))
        return reply

    def senders_in_data(self, smtp_port: int) -> set[int]:
        """The pids of the processes whose connection to us is in its DATA phase now."""
        with self.lock:
            ports = set(self.in_data)
        return set(pids_of(ports, smtp_port).values())


def pids_of(client_ports: set[int], smtp_port: int) -> dict[int, int]:
    """client port -> pid, for the connections to the SMTP server that are open now."""
    return {
        c.laddr.port: c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.pid and c.laddr and c.raddr and c.laddr.port in client_ports and c.raddr.port == smtp_port
    }


class Smtp:
    """A real SMTP server (aiosmtpd) on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        self.sink = TrackingSink()
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def counts(self, addresses: list[str]) -> dict[str, int]:
        return {a: self.sink.count_to(a) for a in addresses}


@dataclass
class Cluster:
    url: str
    db: Database
    tenant: Tenant
    servers: list[ServerProcess]
    workers: list[WorkerProcess]
    smtp: Smtp

    @property
    def processes(self) -> list[NpsdProcess]:
        return [*self.servers, *self.workers]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with pg_schema("npsd_scale") as url:  # empty: the processes migrate it
        yield from _cluster(url)


def _cluster(url: str) -> Iterator[Cluster]:
    """Two servers and two workers started at once on the empty schema at ``url``, stopped after."""
    secret = "scale-" + secrets.token_hex(16)
    smtp = Smtp()
    smtp.start()
    env = {
        "NPSD_SMTP_URL": smtp.url,
        "NPSD_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "NPSD_WORKER_POLL_SECONDS": "0.2",
    }
    servers = [
        ServerProcess(url, secret, 1, NPSD_WORKER="true", **env),  # the third worker: in-process
        ServerProcess(url, secret, 1, NPSD_WORKER="false", **env),
    ]
    workers = [WorkerProcess(url, secret, **env) for _ in range(2)]
    processes: list[NpsdProcess] = [*servers, *workers]
    db: Database | None = None
    try:
        # all four at once, on an empty schema: they rely on the migration lock
        with ThreadPoolExecutor(len(processes)) as pool:
            started = [pool.submit(p.start, 120) for p in processes]
            for future in started:
                future.result()
        settings = Settings(database_url=url, secret_key=secret, worker=False, rate_limit=0)
        db = Database(url, pool_size=2, settings=settings)
        tenant = make_tenant(TestDatabase("postgresql", url, settings, db))
        yield Cluster(url, db, tenant, servers, workers, smtp)
    finally:
        for p in processes:
            p.kill()
        smtp.stop()
        if db is not None:
            db.dispose()


def test_four_processes_started_at_once_all_run(cluster: Cluster) -> None:
    for p in cluster.processes:
        assert p.alive, p.output()[-2000:]
    for server in cluster.servers:
        r = httpx.get(server.base_url + "/readyz", timeout=10)
        assert r.status_code == 200, r.text


def test_concurrent_writes_through_both_servers_keep_every_figure_exact(cluster: Cluster) -> None:
    tenant = cluster.tenant
    source_ids = [f"crm-{i}" for i in range(SOURCE_IDS)]

    def bulk_writer(server: ServerProcess, seed: int) -> list[int]:
        """Upsert every sourceId, in an order of its own, in batches of 100."""
        rng = random.Random(seed)
        order = source_ids[:]
        rng.shuffle(order)
        statuses = []
        with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=120) as client:
            for start in range(0, len(order), 100):
                items = [
                    {"sourceId": sid, "email": f"{sid}@example.com", "score": rng.randint(0, 10)}
                    for sid in order[start : start + 100]
                ]
                statuses.append(client.put("/nps", json=items).status_code)
        return statuses

    def single_writer(server: ServerProcess, tag: str) -> list[int]:
        statuses = []
        with httpx.Client(base_url=server.base_url, headers=tenant.editor, timeout=120) as client:
            for i in range(SINGLES_PER_SERVER):
                body = {"email": f"single-{tag}-{i}@example.com", "score": i % 11}
                statuses.append(client.post("/nps", json=body).status_code)
        return statuses

    a, b = cluster.servers
    with ThreadPoolExecutor(6) as pool:
        jobs = [
            pool.submit(bulk_writer, a, 1),
            pool.submit(bulk_writer, b, 2),
            pool.submit(bulk_writer, a, 3),
            pool.submit(bulk_writer, b, 4),
            pool.submit(single_writer, a, "a"),
            pool.submit(single_writer, b, "b"),
        ]
        statuses = [s for job in jobs for s in job.result()]
    assert set(statuses) == {200}, sorted(set(statuses))

    records = httpx.get(
        b.base_url + "/nps",
        params={"npsExpiryDay": 0, "limit": 10_000},
        headers=tenant.viewer,
        timeout=60,
    ).json()
    assert len(records) == SOURCE_IDS + 2 * SINGLES_PER_SERVER
    assert sorted(r["sourceId"] for r in records if r.get("sourceId")) == sorted(source_ids)
    with cluster.db.transaction(write=False) as session:
        duplicates = session.execute(
            text(
                "SELECT source_id, count(*) FROM nps_record WHERE org_id = :org AND source_id IS NOT NULL"
                " GROUP BY source_id HAVING count(*) > 1"
            ),
            {"org": tenant.org_id},
        ).all()
    assert duplicates == []
    assert rollup_mismatches(cluster.db, tenant.org_id) == []

    scores = [r["score"] for r in records]
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    for server in cluster.servers:
        metrics = httpx.get(
            server.base_url + "/v1/nps-surveys/nps-metrics", headers=tenant.viewer, timeout=60
        ).json()
        assert (metrics["totalResponses"], metrics["promoters"], metrics["detractors"]) == (
            len(scores),
            promoters,
            detractors,
        )
        assert metrics["passives"] == len(scores) - promoters - detractors
        assert metrics["npsScore"] == round(100 * (promoters - detractors) / len(scores), 1)


def test_a_token_revoked_through_one_server_is_refused_by_the_other_within_two_seconds(
    cluster: Cluster,
) -> None:
    a, b = cluster.servers
    admin = cluster.tenant.admin
    created = httpx.post(
        a.base_url + "/v1/tokens", json={"role": "viewer", "name": "scale-out"}, headers=admin, timeout=30
    )
    assert created.status_code == 201, created.text
    token = {"Authorization": f"Bearer {created.json()['token']}"}
    for server in (a, b):  # both servers now remember the token as valid
        assert httpx.get(server.base_url + "/nps?limit=1", headers=token, timeout=30).status_code == 200
    revoked = httpx.delete(a.base_url + f"/v1/tokens/{created.json()['jti']}", headers=admin, timeout=30)
    assert revoked.status_code == 204, revoked.text
    revoked_at = time.monotonic()
    assert httpx.get(a.base_url + "/nps?limit=1", headers=token, timeout=30).status_code == 401
    refused_at: list[float] = []

    def refused_by_b() -> bool:
        sent = time.monotonic()
        if httpx.get(b.base_url + "/nps?limit=1", headers=token, timeout=30).status_code == 401:
            refused_at.append(sent)  # when the request left: its own latency is not the delay
            return True
        return False

    wait_for(refused_by_b, 30, "the other server to refuse the revoked token")
    took = refused_at[0] - revoked_at
    assert took <= STATE_TTL + 1.0, took  # the documented delay, plus a loaded machine's slack


def _survey(cluster: Cluster) -> str:
    r = httpx.post(
        cluster.servers[0].base_url + "/v1/nps-surveys",
        json={"name": "Scale-out " + secrets.token_hex(3)},
        headers=cluster.tenant.editor,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _invite(server: ServerProcess, cluster: Cluster, survey_id: str, addresses: list[str]) -> list[str]:
    r = httpx.post(
        server.base_url + f"/v1/nps-surveys/{survey_id}/invitations",
        json={"recipients": [{"email": a} for a in addresses]},
        headers=cluster.tenant.editor,
        timeout=60,
    )
    assert r.status_code in (200, 201, 202), r.text
    results = r.json()["results"]
    assert len(results) == len(addresses), results
    return [str(x["invitationId"]) for x in results]


def _send_jobs(cluster: Cluster, invitation_ids: list[str]) -> list[Job]:
    with cluster.db.transaction(write=False) as session:
        keys = [f"{SEND_JOB}:{i}" for i in invitation_ids]
        return list(session.scalars(select(Job).where(Job.dedupe_key.in_(keys))))


def _statuses(cluster: Cluster, invitation_ids: list[str]) -> set[str]:
    with cluster.db.transaction(write=False) as session:
        return set(session.scalars(select(Invitation.status).where(Invitation.id.in_(invitation_ids))))


def _mailed_once(cluster: Cluster, addresses: list[str], invitation_ids: list[str]) -> None:
    wait_for(
        lambda: all(n >= 1 for n in cluster.smtp.counts(addresses).values()),
        90,
        "every invitation to be mailed",
    )
    time.sleep(2 * LEASE_SECONDS)  # room for a second, wrong delivery to show up
    assert cluster.smtp.counts(addresses) == dict.fromkeys(addresses, 1)
    wait_for(lambda: _statuses(cluster, invitation_ids) == {"sent"}, 30, "every invitation marked sent")


def test_three_competing_workers_mail_every_invitation_exactly_once(cluster: Cluster) -> None:
    survey_id = _survey(cluster)
    addresses = [f"mail-{i}-{secrets.token_hex(3)}@example.com" for i in range(30)]
    a, b = cluster.servers
    with ThreadPoolExecutor(2) as pool:
        halves = [
            pool.submit(_invite, a, cluster, survey_id, addresses[:15]),
            pool.submit(_invite, b, cluster, survey_id, addresses[15:]),
        ]
        invitation_ids = [i for half in halves for i in half.result()]
    _mailed_once(cluster, addresses, invitation_ids)
    jobs = _send_jobs(cluster, invitation_ids)
    assert len(jobs) == 30 and {j.status for j in jobs} == {"done"}
    # they did compete: the mails came from more than one process (a mailer keeps its connection
    # open for the next mail, so the client port of each accepted message still names its sender)
    sink = cluster.smtp.sink
    with sink.lock:
        ports = {sink.sent_from[a] for a in addresses}
    pids = pids_of(ports, cluster.smtp.port)
    senders = [p.command()[0] for p in cluster.processes if any(p.owns(pid) for pid in pids.values())]
    assert len(senders) >= 2, (senders, ports, pids)


def test_mail_waits_while_the_smtp_server_is_down_then_goes_out_once(cluster: Cluster) -> None:
    survey_id = _survey(cluster)
    addresses = [f"down-{i}-{secrets.token_hex(3)}@example.com" for i in range(8)]
    cluster.smtp.stop()
    try:
        invitation_ids = _invite(cluster.servers[1], cluster, survey_id, addresses)

        # the workers try, fail to connect, and leave each job queued for a retry
        def all_failed() -> list[Job] | None:
            jobs = _send_jobs(cluster, invitation_ids)
            retried = [j for j in jobs if j.status == "queued" and j.attempts >= 1 and j.last_error]
            return retried if len(retried) == len(addresses) else None

        failed: list[Job] = wait_for(all_failed, 60, "every send to fail while the SMTP server is down")
        assert _statuses(cluster, invitation_ids) == {"queued"}
        assert sum(cluster.smtp.counts(addresses).values()) == 0
    finally:
        cluster.smtp.start()  # the same port again
    # the retry is a minute away (mail backoff): let that minute pass for these jobs
    with cluster.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_([j.id for j in failed]), Job.status == "queued")
            .values(run_at=utcnow())
        )
    _mailed_once(cluster, addresses, invitation_ids)


def test_a_sender_killed_mid_send_leaves_its_mail_to_the_others_exactly_once(cluster: Cluster) -> None:
    survey_id = _survey(cluster)
    addresses = [f"kill-{i}-{secrets.token_hex(3)}@example.com" for i in range(6)]
    sink, smtp_port = cluster.smtp.sink, cluster.smtp.port
    aborted_before = sink.aborted
    sink.hold.set()  # every DATA phase waits: sends are in flight, none acknowledged
    killed: NpsdProcess | None = None
    try:
        invitation_ids = _invite(cluster.servers[0], cluster, survey_id, addresses)
        sender = wait_for(lambda: sink.senders_in_data(smtp_port), 60, "a send in its DATA phase")
        pid = next(iter(sender))
        owners = [p for p in cluster.processes if p.owns(pid)]
        assert len(owners) == 1, pid
        killed = owners[0]
        held = {
            j.id
            for j in _send_jobs(cluster, invitation_ids)
            if j.status == "running" and j.locked_by and killed.owns(int(j.locked_by.split(":")[1]))
        }
        assert held, "the process sending holds its job"
        killed.kill()  # mid-send
        killed_at = time.monotonic()
        # the server sees the connection drop in DATA: that message was never acknowledged
        wait_for(lambda: sink.aborted > aborted_before, 30, "the SMTP server to see the killed sender go")
    finally:
        sink.hold.clear()
    _mailed_once(cluster, addresses, invitation_ids)
    took = time.monotonic() - killed_at
    assert took < 10 * LEASE_SECONDS + 20, took  # within a few leases, not five minutes
    jobs = {j.id: j for j in _send_jobs(cluster, invitation_ids)}
    assert {j.status for j in jobs.values()} == {"done"}
    assert all(jobs[i].attempts >= 2 for i in held)  # claimed by the dead process, then taken over
    survivors = [p for p in cluster.processes if p is not killed]
    assert all(p.alive for p in survivors), [p.output()[-1000:] for p in survivors if not p.alive]
