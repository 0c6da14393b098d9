"""Delivering webhook events: the ``webhook.deliver`` job.

Each delivery (one event to one webhook) is one durable job, enqueued in the transaction of the
write that caused the event, so an event exists exactly when its change was committed and is
never lost by a restart. The handler POSTs the stored body, signed (see ``signing.py``), and
records the attempt. Any answer other than 2xx, a timeout, a refused connection or a target that
now resolves to a non-public address is a failed attempt, retried on the schedule below (about
24 hours in all), after which the delivery is ``failed``. Redirects are never followed: a 3xx is
a failed attempt, so a public URL cannot bounce npsd onto an internal one.

A receiver that hangs must delay nobody else: deliveries run on a pool of worker threads of their
own, with short connect and read timeouts, at most a few at once per receiver host and per
organization (:class:`Limiter`). A receiver that keeps failing is backed off on its own: after
``NPSD_WEBHOOK_CIRCUIT_FAILURES`` failed attempts in a row its circuit opens, one delivery (the
probe) keeps its retry schedule and the others wait, uncounted, until the probe (or a test event)
succeeds; a delivery that waited a whole day gives up unattempted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from ssl import SSLContext
from typing import Any

import httpx
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from npsd.kit import jobs
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.events import DELIVERY_JOB, RETRY_SCHEDULE, retry_delay
from npsd.kit.ids import new_id
from npsd.kit.jobs import JobInfo, RetryLater, handler
from npsd.kit.models import Job, Webhook, WebhookAttempt, WebhookDelivery
from npsd.kit.telemetry import WEBHOOK_DELIVERIES
from npsd.kit.timeutil import iso, utcnow
from npsd.webhooks import guard, signing

log = logging.getLogger("npsd.webhooks")

TEST_EVENT = "webhook.test"
TIMEOUT = httpx.Timeout(10.0, connect=3.0)  # the defaults of the settings below
MAX_ERROR_CHARS = 500
# ----------------------------------------------------------------------------------- configuration


def allow_private(db: Database) -> bool:
    """Whether deliveries from ``db`` may target private addresses (its settings decide)."""
    return db.config.webhook_allow_private


# ------------------------------------------------------------------------------------------ sending


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


@cache
def _ssl_context() -> SSLContext:
    """One verifying TLS context for all deliveries (building one per request costs a CA-bundle load)."""
    return httpx.create_ssl_context(trust_env=False)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def timeouts(settings: Settings) -> httpx.Timeout:
    """Short connect, bounded read (``NPSD_WEBHOOK_CONNECT_TIMEOUT``, ``NPSD_WEBHOOK_READ_TIMEOUT``):
    a receiver that never answers costs one attempt, not a worker."""
    read = settings.webhook_read_timeout
    return httpx.Timeout(read, connect=settings.webhook_connect_timeout, read=read, write=read, pool=read)


def send(
    url: str, msg_id: str, body: bytes, secret: str, allow_private: bool, timeout: httpx.Timeout = TIMEOUT
) -> Outcome:
    """POST one signed delivery to ``url`` and report what happened (never raises for network trouble)."""
    return post(
        url, body, lambda: signing.headers(secret, msg_id, int(time.time()), body), allow_private, timeout
    )


def post(
    url: str,
    body: bytes,
    headers_of: Callable[[], dict[str, str]],
    allow_private: bool,
    timeout: httpx.Timeout = TIMEOUT,
) -> Outcome:
    """POST ``body`` to ``url`` behind the SSRF guard and report what happened (never raises for
    network trouble); also the alerts' chat messages (``alerts/``) go through here.

    The host is resolved and checked here, and the connection goes to the checked address with the
    original ``Host`` header and TLS server name; the addresses are tried in resolver order when a
    connection is refused. ``headers_of`` is called once the target passed the guard. The response
    body is not read.
    """
    started = time.monotonic()

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(
            status, None if error is None else _clip(error), int((time.monotonic() - started) * 1000)
        )

    try:
        target = guard.check_target(url, allow_private)
    except guard.UnsafeTarget as exc:
        return done(None, f"url {exc}")
    headers = headers_of()
    original = httpx.URL(url)
    headers["host"] = original.netloc.decode("ascii")
    extensions = {} if target.host_is_literal or target.scheme != "https" else {"sni_hostname": target.host}
    error = "no address to connect to"
    for address in target.addresses:
        pinned = original.copy_with(host=str(address))
        try:
            with (
                httpx.Client(
                    timeout=timeout, follow_redirects=False, trust_env=False, verify=_ssl_context()
                ) as client,
                client.stream(
                    "POST", pinned, content=body, headers=headers, extensions=extensions
                ) as response,
            ):
                status = response.status_code
        except httpx.ConnectError as exc:
            error = f"cannot connect to {address}: {exc or type(exc).__name__}"
            continue
        except httpx.TimeoutException as exc:
            limit = timeout.connect if isinstance(exc, httpx.ConnectTimeout) else timeout.read
            return done(None, f"timed out after {limit or 0:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return done(None, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return done(status, None)
        if 300 <= status < 400:
            return done(status, f"answered {status}; redirects are not followed, use the final URL")
        return done(status, f"answered {status}")
    return done(None, error)


# ----------------------------------------------------------------------------- sharing the workers

POOL = "webhooks"
jobs.pool(POOL, lambda settings: settings.webhook_concurrency)
# A delivery whose receiver host (or organization) has all its slots in use waits this long, plus
# up to as much again at random, uncounted: an attempt there ends within the read timeout.
BUSY_RETRY = timedelta(seconds=1)


class Limiter:
    """Deliveries in flight in this process, per receiver host and per organization.

    Each slot is taken without waiting (a thread that waited for a hanging receiver's slot would
    be a thread lost to everyone else): a delivery that finds none is put back for a moment.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: Counter[str] = Counter()
        self._orgs: Counter[str] = Counter()

    def acquire(self, host: str, org_id: str, settings: Settings) -> bool:
        with self._lock:
            if (
                self._hosts[host] >= settings.webhook_per_endpoint
                or self._orgs[org_id] >= settings.webhook_per_org
            ):
                return False
            self._hosts[host] += 1
            self._orgs[org_id] += 1
            return True

    def release(self, host: str, org_id: str) -> None:
        with self._lock:
            self._hosts[host] -= 1
            self._orgs[org_id] -= 1
            self._hosts += Counter()  # drop the zeros
            self._orgs += Counter()

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._hosts[host]


LIMITER = Limiter()


def endpoint_of(url: str) -> str:
    """The receiver a URL names, for the per-endpoint bound: its host and port."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    return f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


# -------------------------------------------------------------------------------- endpoint health

# A delivery that found the circuit open gives up, unattempted, once it is as old as a delivery
# that used every attempt (about a day).
GIVE_UP_AFTER = sum(RETRY_SCHEDULE, timedelta())
PROBE_MARGIN = timedelta(seconds=5)
WAITING = "waiting:"  # how the job of a delivery waiting for the probe says so (its last_error)


def _probe_alive(session: Session, probe_delivery_id: str | None) -> bool:
    if probe_delivery_id is None:
        return False
    status = session.scalar(select(WebhookDelivery.status).where(WebhookDelivery.id == probe_delivery_id))
    return status == "pending"


def _become_probe(db: Database, webhook_id: str, probe_delivery_id: str | None, delivery_id: str) -> bool:
    """Take the probe's part when the probe is gone (succeeded elsewhere, gave up, deleted).
    A compare-and-set on the webhook row: of several deliveries, one wins."""
    with db.transaction() as session:
        if _probe_alive(session, probe_delivery_id):
            return False
        same = (
            Webhook.probe_delivery_id.is_(None)
            if probe_delivery_id is None
            else Webhook.probe_delivery_id == probe_delivery_id
        )
        result = session.execute(
            update(Webhook)
            .where(Webhook.id == webhook_id, Webhook.circuit_opened_at.is_not(None), same)
            .values(probe_delivery_id=delivery_id)
        )
        return bool(getattr(result, "rowcount", 0))


def _wait_for_probe(db: Database, row: Any, delivery_id: str) -> None:
    """The circuit is open and another delivery probes the endpoint: wait until just after its
    next try (uncounted), or give up unattempted once the delivery is a day old."""
    now = utcnow()
    if now - row.created_at >= GIVE_UP_AFTER:
        reason = (
            f"not sent: the endpoint failed {row.consecutive_failures} attempts in a row "
            f"since {iso(row.failing_since)} and did not recover within a day"
        )
        with db.transaction() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
                .values(status="failed", next_attempt_at=None, last_error=reason, updated_at=now)
            )
        return
    probe_at = row.next_probe_at if row.next_probe_at is not None and row.next_probe_at > now else now
    wake = probe_at + PROBE_MARGIN + timedelta(seconds=random.uniform(0, PROBE_MARGIN.total_seconds()))
    wake = min(wake, row.created_at + GIVE_UP_AFTER)
    with db.transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
            .values(next_attempt_at=wake, updated_at=now)
        )
    raise RetryLater(
        max(wake - now, timedelta(seconds=1)),
        f"{WAITING} the endpoint failed {row.consecutive_failures} attempts in a row since "
        f"{iso(row.failing_since)}; another delivery probes it",
    )


def _wake_waiting(session: Session, webhook_id: str, now: datetime) -> None:
    """The circuit closed: the deliveries that waited for it are due now, not at their next look
    (which a test event that closed it can leave hours away)."""
    waiting = select(WebhookDelivery.id).where(
        WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.status == "pending"
    )
    session.execute(
        update(Job)
        .where(
            Job.kind == DELIVERY_JOB,
            Job.status == "queued",
            Job.run_at > now,
            Job.last_error.startswith(WAITING),
            Job.payload["delivery_id"].as_string().in_(waiting.scalar_subquery()),
        )
        .values(run_at=now)
    )
    woken = select(Job.payload["delivery_id"].as_string()).where(
        Job.kind == DELIVERY_JOB,
        Job.status == "queued",
        Job.run_at == now,
        Job.last_error.startswith(WAITING),
    )
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.id.in_(woken.scalar_subquery()),
        )
        .values(next_attempt_at=now)
    )


def _record_health(
    session: Session,
    webhook_id: str,
    delivery_id: str,
    ok: bool,
    next_try: datetime | None,
    settings: Settings,
) -> None:
    """Count the attempt in the webhook's health, in the transaction that records it: a success
    closes the circuit; the failure that makes ``NPSD_WEBHOOK_CIRCUIT_FAILURES`` in a row opens it,
    with this delivery as its probe; a probe's failure moves the next probe."""
    now = utcnow()
    if ok:
        closed = session.execute(
            update(Webhook)
            .where(Webhook.id == webhook_id, Webhook.circuit_opened_at.is_not(None))
            .values(
                consecutive_failures=0,
                failing_since=None,
                circuit_opened_at=None,
                probe_delivery_id=None,
                next_probe_at=None,
            )
        )
        if getattr(closed, "rowcount", 0):
            _wake_waiting(session, webhook_id, now)
            return
        session.execute(
            update(Webhook)
            .where(Webhook.id == webhook_id, Webhook.consecutive_failures > 0)
            .values(consecutive_failures=0, failing_since=None)
        )
        return
    session.execute(
        update(Webhook)
        .where(Webhook.id == webhook_id)
        .values(
            consecutive_failures=Webhook.consecutive_failures + 1,
            failing_since=func.coalesce(Webhook.failing_since, now),
        )
    )
    hook = session.execute(
        select(Webhook.consecutive_failures, Webhook.circuit_opened_at, Webhook.probe_delivery_id).where(
            Webhook.id == webhook_id
        )
    ).first()
    if hook is None:
        return
    if hook.circuit_opened_at is None:
        if hook.consecutive_failures < settings.webhook_circuit_failures:
            return
        log.warning(
            "webhook %s: %d failed attempts in a row; its other deliveries wait for a probe",
            webhook_id,
            hook.consecutive_failures,
        )
        values: dict[str, Any] = {"circuit_opened_at": now}
        values.update(
            {"probe_delivery_id": delivery_id, "next_probe_at": next_try}
            if next_try is not None
            else {"probe_delivery_id": None, "next_probe_at": None}
        )
    elif hook.probe_delivery_id == delivery_id:
        values = (
            {"next_probe_at": next_try}
            if next_try is not None
            else {"probe_delivery_id": None, "next_probe_at": None}  # the probe gave up: the next one probes
        )
    else:
        return
    session.execute(update(Webhook).where(Webhook.id == webhook_id).values(**values))


# -------------------------------------------------------------------------------------------- job


class DeliveryFailed(Exception):
    """Raised to the job runner so that it retries on :func:`retry_delay`."""


def _mark_failed(db: Database, job: JobInfo, reason: str) -> None:
    """Job gave up (all attempts used, or a crash on the last one): the delivery is ``failed``."""
    delivery_id = job.payload.get("delivery_id")
    with db.transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
            .values(status="failed", next_attempt_at=None, last_error=_clip(reason), updated_at=utcnow())
        )


@handler(DELIVERY_JOB, backoff=retry_delay, on_failure=_mark_failed, pool=POOL)
def deliver(db: Database, job: JobInfo) -> None:
    """Run one attempt of one delivery. Nothing to do when the delivery is gone (its webhook was
    deleted) or already settled; an inactive webhook settles it as failed without a request.

    Deliveries run on a pool of threads of their own (``NPSD_WEBHOOK_CONCURRENCY``), at most
    ``NPSD_WEBHOOK_PER_ENDPOINT`` at once to one receiver host and ``NPSD_WEBHOOK_PER_ORG`` for
    one organization, so a receiver that hangs delays nobody else. When a webhook's circuit is
    open (see :func:`_record_health`) only its probe is attempted; a test event always is.
    """
    delivery_id: str | None = job.payload.get("delivery_id")
    if delivery_id is None:  # no such delivery (the lookup below would find no row)
        return
    with db.transaction(write=False) as session:
        row = session.execute(
            select(
                WebhookDelivery.payload,
                WebhookDelivery.status,
                WebhookDelivery.event_type,
                WebhookDelivery.created_at,
                Webhook.id.label("webhook_id"),
                Webhook.org_id,
                Webhook.url,
                Webhook.secret,
                Webhook.is_active,
                Webhook.consecutive_failures,
                Webhook.failing_since,
                Webhook.circuit_opened_at,
                Webhook.probe_delivery_id,
                Webhook.next_probe_at,
            )
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.id == delivery_id)
        ).first()
    if row is None or row.status != "pending":
        return
    now = utcnow()
    if not row.is_active and row.event_type != TEST_EVENT:
        with db.transaction() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(
                    status="failed", next_attempt_at=None, last_error="webhook is inactive", updated_at=now
                )
            )
        return
    if (
        row.circuit_opened_at is not None
        and row.event_type != TEST_EVENT
        and row.probe_delivery_id != delivery_id
        and not _become_probe(db, row.webhook_id, row.probe_delivery_id, delivery_id)
    ):
        _wait_for_probe(db, row, delivery_id)
        return
    settings = db.config
    endpoint = endpoint_of(row.url)
    if not LIMITER.acquire(endpoint, row.org_id, settings):
        pause = BUSY_RETRY.total_seconds()
        raise RetryLater(
            timedelta(seconds=pause + random.uniform(0, pause)), "receiver busy with other deliveries"
        )
    try:
        outcome = send(
            row.url, delivery_id, row.payload.encode(), row.secret, allow_private(db), timeouts(settings)
        )
    finally:
        LIMITER.release(endpoint, row.org_id)
    WEBHOOK_DELIVERIES.labels("succeeded" if outcome.ok else "failed").inc()
    final = outcome.ok or job.attempts >= job.max_attempts
    now = utcnow()
    next_try = None if final else now + retry_delay(job.attempts)
    with db.transaction() as session:
        session.execute(
            insert(WebhookAttempt).values(
                id=new_id(),
                delivery_id=delivery_id,
                attempted_at=now,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(
                status="succeeded" if outcome.ok else ("failed" if final else "pending"),
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=next_try,
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                updated_at=now,
            )
        )
        _record_health(session, row.webhook_id, delivery_id, outcome.ok, next_try, settings)
    if not outcome.ok:
        log.info("webhook delivery %s attempt %d failed: %s", delivery_id, job.attempts, outcome.error)
        raise DeliveryFailed(outcome.error or "failed")
