"""Process metrics for ``GET /metrics`` (Prometheus text format, prometheus-client), and the
middleware that counts, times and logs every request.

The counters live here, at the bottom of the stack, so that every area can count what it does
(jobs, webhook deliveries, mails, export fallbacks) without importing the web layer. Figures
that are read when scraped (the job queue from the ``job`` table, the connection pool) come
from :class:`DatabaseCollector`, built for each scrape.

Requests are labelled by route TEMPLATE (``/nps/{id}``), never by raw path: one series per
route, however many ids are asked for, and no token of a ``/r/{token}`` link in a label. A
request no route matched is counted under ``route="unmatched"``.

Several processes: ``npsd serve --workers N`` runs prometheus-client's multiprocess mode (a
``PROMETHEUS_MULTIPROC_DIR`` it creates and removes), so a scrape of any worker returns the sum
of all of them; the pool figures are those of the process that answered. Separate processes
(``npsd worker``, other machines) are not summed: scrape each server, and watch the queue, which
every process reads from the one database.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from npsd.kit.logs import RequestContext, current_request
from npsd.kit.models import Job
from npsd.kit.timeutil import utcnow

REQUESTS = Counter(
    "npsd_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "npsd_http_request_duration_seconds",
    "Time from a request's arrival to the end of its reply, by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HEADER_TIMEOUTS = Counter(
    "npsd_http_header_timeouts",
    "Connections closed because their request line and headers were not in after NPSD_HEADER_TIMEOUT_SECONDS",
)
JOB_OUTCOMES = Counter(
    "npsd_jobs",
    "Background job runs by kind and outcome (done, retry, failed, deferred)",
    ["kind", "outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "npsd_webhook_delivery_attempts",
    "Webhook delivery attempts by outcome (succeeded, failed)",
    ["outcome"],
)
MAILS = Counter("npsd_mails", "Survey e-mails by outcome (sent, failed)", ["outcome"])
ALERT_DELIVERIES = Counter(
    "npsd_alert_delivery_attempts",
    "Alert delivery attempts by channel (email, chat) and outcome (sent, failed)",
    ["channel", "outcome"],
)
EXPORT_FALLBACKS = Counter(
    "npsd_export_fallbacks",
    "Large CSV exports on SQLite written by one reader instead of the export workers, by reason",
    ["reason"],
)

UNMATCHED = "unmatched"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
access_log = logging.getLogger("npsd.access")


# ------------------------------------------------------------------------------------------ requests


def route_template(scope: dict[str, Any]) -> str:
    """The template of the route that answered (``/nps/{key}``), or ``unmatched``."""
    route = scope.get("route")
    # path_format drops converters: /nps/{key:path} is counted as /nps/{key}
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class RequestTelemetryMiddleware:
    """Counts and times every HTTP request by route template, method and status, writes its
    access line (logger ``npsd.access``), and makes the request id the context of every log
    record written while the request runs. It sits inside ``RequestIdMiddleware`` (which gives
    the id) and outside everything else, so 413 and 429 replies count too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = str(scope.get("state", {}).get("request_id", ""))
        token = current_request.set(RequestContext(request_id, scope))
        status = 500  # unless a reply starts: an exception escaping here becomes a 500 outside

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            # the 500 handler outside logs the error next, in this same task: keep the request's
            # context for it (the task, and the context with it, ends with the request)
            failed = True
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", ""))
            REQUESTS.labels(route, method, str(status)).inc()
            REQUEST_SECONDS.labels(route, method).observe(elapsed)
            duration_ms = round(elapsed * 1000, 1)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                route,
                status,
                duration_ms,
                extra={"method": method, "route": route, "status": status, "durationMs": duration_ms},
            )
            if not failed:
                current_request.reset(token)


# ------------------------------------------------------------------------------------------ scrape


def metrics_access(enabled: bool, token: str | None, authorization: str | None) -> int:
    """Who may read ``/metrics``: 200, 401 (a token is set and not given) or 404 (turned off).

    ``NPSD_METRICS_TOKEN`` wins over ``NPSD_METRICS=true``: a set token always protects it. The
    token is compared in constant time; it is not an API token and grants nothing else.
    """
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return 200
        return 401
    return 200 if enabled else 404


def _age_seconds(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class DatabaseCollector(Collector):
    """The job queue read from the ``job`` table (one grouped query over the ``(status, run_at)``
    index's queued and running rows), and this process's connection pool."""

    def __init__(self, session: Session, pool: Any) -> None:
        self.session = session
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        rows = self.session.execute(
            select(
                Job.kind,
                Job.status,
                func.count(),
                func.sum(case((Job.run_at <= now, 1), else_=0)),
                func.min(Job.run_at),
            )
            .where(Job.status.in_(("queued", "running")))
            .group_by(Job.kind, Job.status)
        ).all()
        queued = GaugeMetricFamily(
            "npsd_job_queue_depth", "Queued jobs by kind, due now or later", labels=["kind"]
        )
        due = GaugeMetricFamily(
            "npsd_job_queue_due", "Queued jobs whose time has come, by kind", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "npsd_job_queue_oldest_due_age_seconds",
            "How long the oldest due job has waited past its time, by kind (0: none waiting)",
            labels=["kind"],
        )
        running = GaugeMetricFamily("npsd_jobs_running", "Jobs claimed by a worker, by kind", labels=["kind"])
        for kind, status, count, due_count, first_run_at in rows:
            if status == "running":
                running.add_metric([kind], count)
                continue
            queued.add_metric([kind], count)
            due.add_metric([kind], due_count or 0)
            oldest.add_metric([kind], _age_seconds(now, first_run_at) if due_count else 0.0)
        yield from (queued, due, oldest, running)
        size = getattr(self.pool, "size", None)
        checked_out = getattr(self.pool, "checkedout", None)
        if callable(size) and callable(checked_out):
            yield GaugeMetricFamily(
                "npsd_db_pool_size", "Connections this process keeps in its pool", value=float(size())
            )
            yield GaugeMetricFamily(
                "npsd_db_pool_checked_out",
                "Connections of this process's pool in use now (may exceed the size by the overflow)",
                value=float(checked_out()),
            )


def render(session: Session, pool: Any) -> tuple[bytes, str]:
    """The Prometheus text of this process (of all ``npsd serve`` workers in multiprocess mode)
    followed by the figures read now from the database; and its content type."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(DatabaseCollector(session, pool))
    return counted + generate_latest(scraped), CONTENT_TYPE_LATEST
