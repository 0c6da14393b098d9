"""Logging: one setup for ``npsd serve``, ``npsd worker`` and uvicorn's own lines.

``NPSD_LOG_FORMAT=text`` (the default) writes readable lines; ``json`` writes one JSON object a
line to stderr, for a log shipper (Loki, Elasticsearch, CloudWatch...): ``time``, ``level``,
``logger``, ``message``, and, inside a request, ``requestId`` (the ``X-Request-Id`` header and the
``requestId`` of every error body) and ``orgId`` once the caller is authenticated. The access
line of each request (logger ``npsd.access``, written by
:class:`npsd.kit.telemetry.RequestTelemetryMiddleware`) adds ``method``, ``route`` (the route
TEMPLATE, e.g. ``/r/{token}``: paths of respondent and unsubscribe links carry tokens), ``status``
and ``durationMs``. Query strings are never logged (they may carry a token too).

Logs leave the machine, so nothing secret may be in them. The access line is built from safe
parts only; :class:`RedactFilter` is the safety net for every other line: it masks the
configured secrets wherever they appear (secret key, SMTP password, metrics token, database
password), ``Authorization``/``Bearer``/``Basic`` values, anything shaped like a JWT, the
password of a URL, ``password=``/``token=``-like pairs, and the token in ``/r/``, ``/s/`` and
``/u/`` paths.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from npsd.kit.config import Settings

MASK = "***"
# The fields a request adds to a record; the access line adds the rest (see module docstring).
ACCESS_FIELDS = ("method", "route", "status", "durationMs")


@dataclass
class RequestContext:
    """The request a log record was written in. It holds the ASGI scope, not a copy: the
    organization becomes known only when authentication has run, later in the request."""

    request_id: str
    scope: dict[str, Any] = field(repr=False)

    @property
    def org_id(self) -> str | None:
        value = self.scope.get(ORG_SCOPE_KEY)
        return value if isinstance(value, str) else None


# kit/http.py's ORG_SCOPE_KEY; repeated here so that logging imports nothing of the web stack
ORG_SCOPE_KEY = "npsd.org"
# Copied into the threads a request's sync code runs in (anyio copies the context), so a record
# written there carries the request's id too.
current_request: ContextVar[RequestContext | None] = ContextVar("npsd_request", default=None)


# ------------------------------------------------------------------------------------------ redaction

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer xxx / Basic xxx, in headers, reprs or messages
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}"), rf"\1 {MASK}"),
    (
        re.compile(r"(?i)(['\"]?(?:authorization|x-api-key|cookie)['\"]?\s*[:=,]\s*['\"]?)[^'\"\s,}]+"),
        rf"\1{MASK}",
    ),
    # anything shaped like a JWT (npsd's API and session tokens are JWTs)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # password=..., "password": "...", token=..., secret: ..., key=...
    (
        re.compile(
            r"(?i)(['\"]?\b(?:password|passwd|pwd|secret|secret_key|token|api_key|apikey|access_token)['\"]?"
            r"\s*[:=]\s*['\"]?)[^'\"\s&,}]+"
        ),
        rf"\1{MASK}",
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@"), rf"\1{MASK}@"),
    # the token of a respondent, survey-link or unsubscribe path
    (re.compile(r"(/[rsu]/)[A-Za-z0-9_-]{8,}"), rf"\1{MASK}"),
]


def _url_password(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def secrets_of(settings: Settings) -> list[str]:
    """The configured secret values, masked wherever they appear in a log line."""
    values = [
        settings.secret_key,
        getattr(settings, "metrics_token", None),
        _url_password(settings.smtp_url),
        _url_password(settings.database_url),
    ]
    return [v for v in values if v and len(v) >= 4]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value and secret-shaped part masked."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """The safety net: every record leaves through here with its message, exception and stack
    text already redacted (the formatters then use that text as it is)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


# ------------------------------------------------------------------------------------------ formats


def _request_fields(record: logging.LogRecord) -> dict[str, Any]:
    context = current_request.get()
    fields: dict[str, Any] = {}
    if context is not None:
        fields["requestId"] = context.request_id
        org_id = context.org_id
        if org_id:
            fields["orgId"] = org_id
    for name in ACCESS_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, written with orjson (any value it cannot encode becomes its ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_request_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-27T23:50:01.123Z INFO npsd.access GET /nps/{id} 404 2.1 ms [requestId=... orgId=...]``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _request_fields(record)
        for name in ACCESS_FIELDS:
            fields.pop(name, None)
        text = f"{_time(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        return text


def json_line(logger: str, message: str, level: int = logging.INFO) -> str:
    """One JSON log line written outside the logging machinery (``npsd serve`` announcing
    itself whatever the log level)."""
    record = logging.LogRecord(logger, level, "", 0, message, None, None)
    return JsonFormatter().format(record)


# ------------------------------------------------------------------------------------------ setup


def log_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: npsd's and uvicorn's records go through
    one stderr handler with the chosen format and the redaction filter. Given to uvicorn as its
    ``log_config`` as well, so that each worker process of ``npsd serve --workers N`` sets it up."""
    level = settings.log_level.upper()
    formatter = (
        "npsd.kit.logs.JsonFormatter" if settings.log_format == "json" else "npsd.kit.logs.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "npsd.kit.logs.RedactFilter", "secrets": secrets_of(settings)}},
        "formatters": {"npsd": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "npsd.kit.logs.StderrHandler",
                "formatter": "npsd",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's loggers keep no handlers of their own: their records reach the root's
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            # npsd writes its own access line (npsd.access); uvicorn's would log raw paths
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever ``sys.stderr`` is when a record is emitted, like
    logging's last-resort handler. A handler bound to the stream of the moment of configuration
    keeps writing to it after it is replaced and closed (a command run inside another program,
    such as a test runner's CLI invoker), and every record then becomes a "Logging error"
    traceback on the new stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def configure(settings: Settings) -> None:
    """Apply :func:`log_config` to this process."""
    logging.config.dictConfig(log_config(settings))
