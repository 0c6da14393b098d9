"""Process metrics for ``GET /metrics`` (Prometheus text format, prometheus-client).

The counters live here, at the bottom of the stack, so that every area can count what it does
(jobs, webhook deliveries, mails, export fallbacks) without importing the web layer. Figures
that are read from the database when scraped (job queue depth, oldest due job, pool use) are
collected by the app's ``/metrics`` route, not kept here.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
EXPORT_FALLBACKS = Counter(
    "npsd_export_fallbacks",
    "Large CSV exports on SQLite written by one reader instead of the export workers, by reason",
    ["reason"],
)
