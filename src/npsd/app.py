"""The application factory."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from npsd import __version__
from npsd.alerts.routes import router as alerts_router
from npsd.analytics.routes import router as metrics_router
from npsd.auth.routes import organization_router, tokens_router, users_router
from npsd.auth.routes import router as auth_router
from npsd.collect.pages import router as pages_router
from npsd.collect.routes import router as collect_router
from npsd.contacts.routes import companies_router, endusers_router
from npsd.digests.routes import router as digests_router
from npsd.exports.routes import router as exports_router
from npsd.followup.routes import router as answers_router
from npsd.imports.routes import router as imports_router
from npsd.insights.routes import router as insights_router
from npsd.kit.backup import DatabaseInUse, hold_database
from npsd.kit.config import Settings, get_settings
from npsd.kit.db import Database
from npsd.kit.errors import ErrorBody, Unauthorized, error_response, install_error_handlers
from npsd.kit.http import DbSession, json_response
from npsd.kit.idempotency import IdempotencyMiddleware, Replay, replay_response
from npsd.kit.jobs import Worker
from npsd.kit.limits import BodyLimitMiddleware, RateLimiter, RateLimitMiddleware
from npsd.kit.telemetry import RequestTelemetryMiddleware, metrics_access
from npsd.kit.telemetry import render as render_metrics
from npsd.migrations import head_revision, readiness_problem
from npsd.privacy.routes import router as privacy_router
from npsd.records.batcher import CreateBatcher
from npsd.records.routes import router as records_router
from npsd.surveys.routes import router as surveys_router
from npsd.web.assets import router as assets_router
from npsd.web.docs import router as docs_router
from npsd.web.routes import router as web_router
from npsd.webhooks.routes import router as webhooks_router

log = logging.getLogger("npsd")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Invalid input; `details` names each field",
        401: "Missing or invalid token",
        403: "The token's role does not allow this",
        404: "No such object in your organization",
        409: "Conflicts with the current state",
        413: "Body too large",
        429: "Too many requests",
    }.items()
}


class RequestIdMiddleware:
    """Gives every request an id (or keeps the caller's ``X-Request-ID``) and echoes it back."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:100]
                break
        request_id = request_id or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the npsd ASGI app. The database engine is created here, migrations are not run
    (``npsd serve`` and ``npsd migrate`` do that once, before any worker starts)."""
    settings = settings or get_settings()
    db = database or Database(settings.database_url, settings.db_pool_size, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # SQLite: declare this process a user of the database file for as long as it serves, so
        # that `npsd restore` refuses to replace the file under it (kit/backup.py)
        try:
            db_lock = hold_database(settings)
        except DatabaseInUse as exc:
            log.error("%s", exc)
            raise
        worker = Worker(db, settings.worker_poll_seconds) if settings.worker else None
        if worker is not None:
            worker.start()
        app.state.worker = worker
        if not settings.smtp_url:
            log.warning("NPSD_SMTP_URL is not set: survey invitations stay queued until it is")
        # Everything allocated so far lives as long as the process: keep the garbage collector
        # from walking it again on every collection (a 5,000-record upsert makes many objects).
        gc.freeze()
        yield
        await app.state.create_batcher.close()
        if worker is not None:
            worker.stop()
        if database is None:
            db.dispose()
        if db_lock is not None:
            db_lock.release()

    app = FastAPI(
        title="npsd",
        version=__version__,
        description=(
            "Self-hosted Net Promoter Score service. Planhat-compatible `/nps`, `/endusers`, `/companies`; "
            "SalesOS-compatible `/v1/nps-surveys`. Authenticate with `Authorization: Bearer <token>`, "
            "`X-API-Key: <token>` or HTTP Basic with the token as user name."
        ),
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        # /docs and /redoc are served by npsd.web.docs from vendored files: the defaults load a CDN
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.create_batcher = CreateBatcher(db)
    install_error_handlers(app)
    app.add_exception_handler(Replay, replay_response)
    # outermost last: request id, then body size, rate limit, idempotency, then the routes
    app.add_middleware(IdempotencyMiddleware, db=db)
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(db, settings.rate_limit))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # counts, times and logs every request (413 and 429 too), inside the request id it logs
    app.add_middleware(RequestTelemetryMiddleware)
    app.add_middleware(RequestIdMiddleware)

    # Order matters: static paths (/nps/export, /v1/nps-surveys/stats ...) before /{id} routes.
    app.include_router(auth_router)
    app.include_router(tokens_router)
    app.include_router(users_router)
    app.include_router(organization_router)
    app.include_router(exports_router)
    app.include_router(records_router)
    app.include_router(companies_router)
    app.include_router(endusers_router)
    app.include_router(answers_router)
    app.include_router(metrics_router)
    app.include_router(collect_router)
    app.include_router(surveys_router)
    app.include_router(webhooks_router)
    app.include_router(insights_router)
    app.include_router(alerts_router)
    app.include_router(digests_router)
    app.include_router(privacy_router)
    app.include_router(imports_router)
    app.include_router(pages_router)
    app.include_router(assets_router)
    app.include_router(docs_router)
    app.include_router(web_router)

    @app.get("/healthz", tags=["meta"], include_in_schema=True)
    def healthz() -> dict[str, str]:
        """Liveness probe: answers without touching the database."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["meta"],
        responses={503: {"model": ErrorBody, "description": "Not ready; `message` says why"}},
    )
    def readyz(request: Request) -> Response:
        """Readiness probe, without a token: 200 when the database answers and its schema is at
        this build's newest migration; 503 in the one error shape, the reason in `message`
        (unreachable database, or migrations not applied: run `npsd migrate`)."""
        problem = readiness_problem(db.engine)
        if problem is not None:
            return error_response(request, 503, problem)
        return json_response({"status": "ok", "migration": head_revision()})

    # GET /metrics: only when turned on (NPSD_METRICS=true, or NPSD_METRICS_TOKEN set); an
    # operator's endpoint, kept out of the API's OpenAPI document (README: Health and monitoring)
    if settings.metrics or settings.metrics_token:

        def metrics_allowed(request: Request) -> None:
            status = metrics_access(
                settings.metrics, settings.metrics_token, request.headers.get("authorization")
            )
            if status == 401:
                raise Unauthorized("GET /metrics needs Authorization: Bearer <NPSD_METRICS_TOKEN>")

        @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_allowed)])
        def prometheus_metrics(session: DbSession) -> Response:
            """Prometheus text format: requests, latency, job queue, jobs, mails, webhooks, pool."""
            body, content_type = render_metrics(session, db.engine.pool)
            return Response(body, media_type=content_type)

    return app
