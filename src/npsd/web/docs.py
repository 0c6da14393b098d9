"""The API documentation pages ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served without any
other host.

FastAPI's own pages load Swagger UI, ReDoc and Google Fonts from CDNs; these load only the copies
that ``scripts/vendor_assets.py`` vendored into ``web/static/vendor`` (pinned, integrity-checked,
see ``scripts/vendor-assets.json``) and ``/openapi.json``. Neither page has an inline script:
Swagger UI is started by ``web/static/docs-init.js``, ReDoc by its ``<redoc spec-url>`` element.
Swagger UI's validator badge (an image from validator.swagger.io) is off; ReDoc 2 loads no web
font by itself (FastAPI's page linked Google Fonts, this one does not) and its side-menu logo from
cdn.redoc.ly is patched out by the vendoring script.

Each page sends a Content-Security-Policy of its own, loosened only where its library needs it
(each found by a browser refusing the stricter policy): both draw icons from ``data:`` SVGs
(``img-src data:``); ReDoc injects its styles as ``<style>`` elements (styled-components), so its
``style-src`` allows ``'unsafe-inline'``, and runs its search index in a worker made from a
``blob:`` URL (``worker-src blob:``). Swagger UI needs neither, nor any font.
"""

from __future__ import annotations

import json
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from npsd.web.assets import asset_url

TITLE = "npsd API"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

_BASE_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "worker-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}


def content_security_policy(**loosened: str) -> str:
    """npsd's policy for a docs page, with the directives a library needs replaced
    (``style_src="'self' 'unsafe-inline'"`` replaces ``style-src``)."""
    directives = dict(_BASE_CSP)
    for name, value in loosened.items():
        key = name.replace("_", "-")
        if key not in directives:
            raise ValueError(f"unknown directive {key}")
        directives[key] = value
    return "; ".join(f"{name} {value}" for name, value in directives.items())


SWAGGER_CSP = content_security_policy()
REDOC_CSP = content_security_policy(style_src="'self' 'unsafe-inline'", worker_src="'self' blob:")
OAUTH2_REDIRECT_CSP = content_security_policy()

# ReDoc's theme names Roboto and Montserrat, which it expects from Google Fonts: use the system's.
REDOC_THEME = {
    "typography": {
        "fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        "headings": {"fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
        "code": {"fontFamily": "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"},
    }
}

router = APIRouter(include_in_schema=False)


def _page(head: str, body: str, csp: str) -> HTMLResponse:
    html = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(TITLE)}</title>\n"
        # No icon: without this line the browser asks for /favicon.ico, a 404 on the console.
        '<link rel="icon" href="data:,">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


def _openapi_url(request: Request) -> str:
    url = request.app.openapi_url
    return url if isinstance(url, str) else "/openapi.json"


@router.get("/docs")
def swagger_ui(request: Request) -> Response:
    """Swagger UI over /openapi.json, started by web/static/docs-init.js."""
    head = f'<link rel="stylesheet" href="{escape(asset_url("vendor/swagger-ui.css"))}">\n'
    body = (
        f'<div id="swagger-ui" data-openapi-url="{escape(_openapi_url(request))}"'
        f' data-oauth2-redirect-url="{escape(OAUTH2_REDIRECT_PATH)}"></div>\n'
        f'<script src="{escape(asset_url("vendor/swagger-ui-bundle.js"))}"></script>\n'
        f'<script src="{escape(asset_url("docs-init.js"))}"></script>\n'
    )
    return _page(head, body, SWAGGER_CSP)


@router.get(OAUTH2_REDIRECT_PATH)
def swagger_ui_oauth2_redirect() -> Response:
    """Where an OAuth2 provider sends the browser back to Swagger UI (FastAPI serves this page by
    default; npsd's own schemes are a bearer token and an API key, which do not use it)."""
    body = f'<script src="{escape(asset_url("vendor/swagger-ui-oauth2-redirect.js"))}"></script>\n'
    return _page("", body, OAUTH2_REDIRECT_CSP)


@router.get("/redoc")
def redoc(request: Request) -> Response:
    """ReDoc over /openapi.json, started by its <redoc spec-url> element (no inline script)."""
    theme = json.dumps(REDOC_THEME, separators=(",", ":"))
    body = (
        f'<redoc spec-url="{escape(_openapi_url(request))}" theme="{escape(theme)}"></redoc>\n'
        f'<script src="{escape(asset_url("vendor/redoc.standalone.js"))}"></script>\n'
    )
    return _page("<style>body{margin:0;padding:0}</style>\n", body, REDOC_CSP)
