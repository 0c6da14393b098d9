"""The one error shape and the handlers that produce it.

Every error, from validation to an unexpected crash, leaves as::

    {"statusCode": 400, "error": "Bad Request", "message": "...",
     "details": [{"field": "score", "issue": "..."}], "path": "/nps", "requestId": "..."}

Both seed APIs answer validation errors with 400, so request validation is 400, never 422.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Self

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("npsd")


class ErrorDetail(BaseModel):
    field: str
    issue: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    statusCode: int
    error: str
    message: str
    details: list[ErrorDetail] = []
    path: str
    requestId: str


class NpsdError(Exception):
    """An error that maps to an HTTP status. Services raise these; the handler renders them."""

    status = 400

    def __init__(
        self, message: str, details: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    @classmethod
    def field(cls, field: str, issue: str) -> Self:
        """An error about one named field, which the body's ``details`` name."""
        return cls(f"{field}: {issue}", [{"field": field, "issue": issue}])


class BadRequest(NpsdError):
    status = 400


class Unauthorized(NpsdError):
    status = 401

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(NpsdError):
    status = 403


class NotFound(NpsdError):
    status = 404


class Conflict(NpsdError):
    status = 409


class Gone(NpsdError):
    status = 410


class Unprocessable(NpsdError):
    status = 422


class PayloadTooLarge(NpsdError):
    status = 413


class TooManyRequests(NpsdError):
    status = 429


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_response(
    request: Request | None,
    status: int,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    path: str | None = None,
) -> Response:
    """Render the one error shape."""
    request_id = ""
    if request is not None:
        request_id = request.scope.get("state", {}).get("request_id", "") or request.headers.get(
            "x-request-id", ""
        )
        path = request.url.path
    body = {
        "statusCode": status,
        "error": _phrase(status),
        "message": message,
        "details": details or [],
        "path": path or "",
        "requestId": request_id,
    }
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """Turn a Pydantic error location into the client's field name (``body.items.0.score`` -> ``items.0.score``)."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


_FRIENDLY = {
    "score": "must be an integer from 0 to 10",
    "nps": "must be an integer from 0 to 10",
}


# What a missing parameter should have been, for parameters whose name alone does not say
# (registered by the module that owns the parameter, e.g. exports' ``format``).
REQUIRED_HINTS: dict[str, str] = {}

_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def _count(n: Any, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


# Pydantic's bound errors in words a person filling a form understands ("Value should have at
# least 1 item after validation, not 0" said the survey form of an empty name).
_BOUNDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "string_too_short": lambda c: (
        "must not be empty"
        if c.get("min_length") == 1
        else f"must be at least {_count(c.get('min_length'), 'character', 'characters')}"
    ),
    "string_too_long": lambda c: f"must be at most {_count(c.get('max_length'), 'character', 'characters')}",
    "too_short": lambda c: (
        "must have at least one entry"
        if c.get("min_length") == 1
        else f"must have at least {c.get('min_length')} entries"
    ),
    "too_long": lambda c: f"must have at most {c.get('max_length')} entries",
    "greater_than_equal": lambda c: f"must be at least {c.get('ge')}",
    "greater_than": lambda c: f"must be greater than {c.get('gt')}",
    "less_than_equal": lambda c: f"must be at most {c.get('le')}",
    "less_than": lambda c: f"must be less than {c.get('lt')}",
}


def validation_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as ``{"field", "issue"}`` pairs a client can act on."""
    details: list[dict[str, str]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = err.get("type")
        field = field_name(loc)
        leaf = field.rsplit(".", 1)[-1]
        if kind == "json_invalid":
            # FastAPI puts the character offset where the field name would be: ("body", 17)
            position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            field = "body"
            issue = "is not valid JSON: " + str(err.get("ctx", {}).get("error", "syntax error"))
            if position is not None:
                issue += f" (at character {position})"
        elif kind == "extra_forbidden":
            issue = "is not a known field"
        elif kind == "missing":
            issue = "is required" + (f": {REQUIRED_HINTS[leaf]}" if leaf in REQUIRED_HINTS else "")
        elif kind in _NOT_AN_OBJECT:
            issue = "must be a JSON object"
        elif leaf in _FRIENDLY and err.get("type") != "missing":
            issue = _FRIENDLY[leaf]
        elif kind in _BOUNDS:
            # a text checked after stripping reports "too_short" like a list: say it as text
            if kind in ("too_short", "too_long") and isinstance(err.get("input"), str):
                kind = "string_" + kind
            issue = _BOUNDS[kind](err.get("ctx", {}))
        else:
            issue = str(err.get("msg", "is invalid"))
            if issue.startswith("Value error, "):
                issue = issue[len("Value error, ") :]
        details.append({"field": field, "issue": issue})
    return details


def summary(details: list[dict[str, str]]) -> str:
    return (
        "; ".join(
            f"{d['field']} {d['issue']}" if not d["issue"].startswith(d["field"]) else d["issue"]
            for d in details[:5]
        )
        or "invalid request"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every kind of failure through :func:`error_response`."""

    @app.exception_handler(NpsdError)
    async def _npsd(request: Request, exc: NpsdError) -> Response:
        return error_response(request, exc.status, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        details = validation_details(list(exc.errors()))
        return error_response(request, 400, summary(details), details)

    @app.exception_handler(ValidationError)
    async def _pyd_validation(request: Request, exc: ValidationError) -> Response:
        details = validation_details(list(exc.errors()))
        return error_response(request, 400, summary(details), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
            message = f"{request.method} is not allowed on this path" + (
                f"; use {allowed}" if allowed else ""
            )
        return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    # Safety nets: input validation should catch bad values and conflicts first, naming the field.
    # Whatever slips past is still the client's data, not a server fault, so never a 500.
    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            request,
            400,
            "a value is not acceptable (too long, out of range or "
            "containing NUL characters); the request was not applied",
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> Response:
        log.warning("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            request, 409, "conflicts with the current state of another object; the request was not applied"
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Rendered outside the request-id middleware, so the header is added here.
        request_id = request.scope.get("state", {}).get("request_id", "")
        return error_response(
            request,
            500,
            "internal error; the request was not applied",
            headers={"X-Request-ID": request_id} if request_id else None,
        )
