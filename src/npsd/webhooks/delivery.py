"""Delivering webhook events: the ``webhook.deliver`` job.

Each delivery (one event to one webhook) is one durable job, enqueued in the transaction of the
write that caused the event, so an event exists exactly when its change was committed and is
never lost by a restart. The handler POSTs the stored body, signed (see ``signing.py``), and
records the attempt. Any answer other than 2xx, a timeout, a refused connection or a target that
now resolves to a non-public address is a failed attempt, retried on the schedule below (about
24 hours in all), after which the delivery is ``failed``. Redirects are never followed: a 3xx is
a failed attempt, so a public URL cannot bounce npsd onto an internal one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from ssl import SSLContext

import httpx
from sqlalchemy import insert, select, update

from npsd.kit.db import Database
from npsd.kit.events import DELIVERY_JOB, retry_delay
from npsd.kit.ids import new_id
from npsd.kit.jobs import JobInfo, handler
from npsd.kit.models import Webhook, WebhookAttempt, WebhookDelivery
from npsd.kit.timeutil import utcnow
from npsd.webhooks import guard, signing

log = logging.getLogger("npsd.webhooks")

TEST_EVENT = "webhook.test"
TIMEOUT = httpx.Timeout(10.0)
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


def send(url: str, msg_id: str, body: bytes, secret: str, allow_private: bool) -> Outcome:
    """POST one signed delivery to ``url`` and report what happened (never raises for network trouble).

    The host is resolved and checked here, and the connection goes to the checked address with the
    original ``Host`` header and TLS server name; the addresses are tried in resolver order when a
    connection is refused. The response body is not read.
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
    stamp = int(time.time())
    headers = signing.headers(secret, msg_id, stamp, body)
    original = httpx.URL(url)
    headers["host"] = original.netloc.decode("ascii")
    extensions = {} if target.host_is_literal or target.scheme != "https" else {"sni_hostname": target.host}
    error = "no address to connect to"
    for address in target.addresses:
        pinned = original.copy_with(host=str(address))
        try:
            with (
                httpx.Client(
                    timeout=TIMEOUT, follow_redirects=False, trust_env=False, verify=_ssl_context()
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
            return done(None, f"timed out after {TIMEOUT.read:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return done(None, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return done(status, None)
        if 300 <= status < 400:
            return done(status, f"answered {status}; redirects are not followed, use the final URL")
        return done(status, f"answered {status}")
    return done(None, error)


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


@handler(DELIVERY_JOB, backoff=retry_delay, on_failure=_mark_failed)
def deliver(db: Database, job: JobInfo) -> None:
    """Run one attempt of one delivery. Nothing to do when the delivery is gone (its webhook was
    deleted) or already settled; an inactive webhook settles it as failed without a request."""
    delivery_id: str | None = job.payload.get("delivery_id")
    if delivery_id is None:  # no such delivery (the lookup below would find no row)
        return
    with db.transaction(write=False) as session:
        row = session.execute(
            select(
                WebhookDelivery.payload,
                WebhookDelivery.status,
                WebhookDelivery.event_type,
                Webhook.url,
                Webhook.secret,
                Webhook.is_active,
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
    outcome = send(row.url, delivery_id, row.payload.encode(), row.secret, allow_private(db))
    final = outcome.ok or job.attempts >= job.max_attempts
    now = utcnow()
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
                next_attempt_at=None if final else now + retry_delay(job.attempts),
                last_status_code=outcome.status_code,
                last_error=outcome.error,
                updated_at=now,
            )
        )
    if not outcome.ok:
        log.info("webhook delivery %s attempt %d failed: %s", delivery_id, job.attempts, outcome.error)
        raise DeliveryFailed(outcome.error or "failed")
