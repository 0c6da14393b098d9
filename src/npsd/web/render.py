"""Rendering dashboard pages: the Jinja2 environment, the security headers, the page route class.

Templates are autoescaped: every stored text (comments, names, addresses) is shown as text,
never as markup. Pages send a Content-Security-Policy that allows scripts, styles and fonts only
from npsd itself, without ``unsafe-inline``; charts are SVG with presentation attributes and
classes, never ``style`` attributes.

:class:`PageRoute` turns the errors a page can meet into pages: no session is a redirect to the
sign-in page; an :class:`~npsd.kit.errors.NpsdError` (404 for another organization's object,
403 for a role, 400 for a parameter) is the error page in the one error shape (status, message,
the fields it names, the request id).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from npsd.kit.errors import NpsdError, summary, validation_details
from npsd.kit.http import TransactionRoute
from npsd.web.assets import asset_url
from npsd.web.session import PAGE_USER_SCOPE_KEY, ROLE_LABELS, PageUser, SignInRequired

TEMPLATES_DIR = Path(__file__).parent / "templates"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def one_decimal(value: float | None, empty: str = "—") -> str:
    """A figure as the API reports it: one decimal; a dash for no value (never 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return empty
    return f"{value:.1f}"


def signed(value: float | None, empty: str = "—") -> str:
    """A change with its sign: +3.2, -1.0, ±0.0."""
    if value is None:
        return empty
    if value == 0:
        return "±0.0"
    return f"{value:+.1f}"


def percent(value: float | None, empty: str = "—") -> str:
    return empty if value is None else f"{value:.1f}%"


def share(value: float | None, empty: str = "—") -> str:
    """A fraction of 1 (the insights API's ``share``) as a percentage: 0.125 is 12.5%."""
    return empty if value is None else f"{100 * value:.1f}%"


def effect(impact: float | None, margin: float | None = None, empty: str = "—") -> str:
    """A theme's effect on the NPS in words, from the API's ``impact`` (NPS without the theme's
    answers minus the NPS of all; positive: the theme pulls the score down): "down 4.2 ± 1.1"
    means without these answers the NPS would be 4.2 points higher."""
    if impact is None:
        return empty
    plus = "" if margin is None else f" ± {margin:.1f}"
    if round(impact, 1) == 0:
        return f"none (0.0{plus})"
    return f"{'down' if impact > 0 else 'up'} {abs(impact):.1f}{plus}"


def day(value: date | datetime | str | None) -> str:
    """A date as ``2026-11-27`` (answers are dated in UTC, as in the API)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:10]
    return value.strftime("%Y-%m-%d")


def moment(value: datetime | str | None) -> str:
    """A time as ``2026-11-27 14:05 UTC``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:16].replace("T", " ") + " UTC"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def with_query(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """``path`` with ``params`` updated by ``changes``; empty values are left out (shareable URLs)."""
    merged = {**params, **changes}
    pairs = [(k, str(v)) for k, v in merged.items() if v not in (None, "", [])]
    return path + ("?" + urlencode(pairs) if pairs else "")


CATEGORY_LABELS = {"promoter": "Promoters", "passive": "Passives", "detractor": "Detractors"}
FEED_PATH = "/app/responses"


def category_tiles(feed: Mapping[str, Any]) -> dict[str, Any]:
    """What ``_figures.html``'s tiles need: each category's label and its link to the feed with
    ``feed``'s filters."""
    return {
        "category_labels": CATEGORY_LABELS,
        "category_links": {key: with_query(FEED_PATH, feed, category=key) for key in CATEGORY_LABELS},
    }


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(asset=asset_url, with_query=with_query, role_labels=ROLE_LABELS)
    env.filters.update(
        one_decimal=one_decimal,
        signed=signed,
        percent=percent,
        share=share,
        effect=effect,
        day=day,
        moment=moment,
        urlquote=quote,
    )
    return env


templates = _env()


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    user: PageUser | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page with the signed-in user, the current path (for the navigation) and the
    security headers."""
    body = templates.get_template(template).render(
        {"request": request, "user": user, "path": request.url.path, **(context or {})}
    )
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def sign_in_redirect(request: Request, expired: bool = False) -> Response:
    """To the sign-in page, coming back here afterwards (htmx requests get ``HX-Redirect``)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/app/login?" + urlencode({"next": here} | ({"expired": "1"} if expired else {}))
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, message: str, details: list[dict[str, str]]) -> HTMLResponse:
    """The one error shape, as a page."""
    request_id = request.scope.get("state", {}).get("request_id", "")
    return render(
        request,
        "error.html",
        {"status": status, "message": message, "details": details, "request_id": request_id},
        user=request.scope.get(PAGE_USER_SCOPE_KEY),
        status=status,
    )


class PageRoute(TransactionRoute):
    """The route class of dashboard pages: errors become pages, a missing session a redirect."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except SignInRequired as exc:
                return sign_in_redirect(request, exc.expired)
            except NpsdError as exc:
                return error_page(request, exc.status, exc.message, exc.details)
            except (RequestValidationError, ValidationError) as exc:
                details = validation_details(list(exc.errors()))
                return error_page(request, 400, summary(details), details)

        return handle


def field_errors(exc: NpsdError) -> dict[str, str]:
    """A service's refusal as messages per form field (the form's fields carry the API's names);
    a refusal that names no field is shown at the top of the form under ``""``."""
    errors: dict[str, str] = {}
    for detail in exc.details:
        errors.setdefault(detail.get("field", ""), detail.get("issue", exc.message))
    return errors or {"": exc.message}
