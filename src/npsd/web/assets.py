"""Static files of the dashboard and the API docs, served by npsd itself under content-hashed names.

Every file under ``web/static`` (our stylesheet and scripts, and the vendored htmx, Swagger UI
and ReDoc that ``scripts/vendor_assets.py`` fetched and checked) is served at
``/app/static/<stem>.<hash>.<suffix>``, where ``hash`` is the first 12 hex digits of the file's
SHA-256. A new release changes the name, so the files can be cached for a year without ever
serving a stale one. Nothing is loaded from another host.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/app/static/"
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str


@cache
def _manifest() -> tuple[dict[str, str], dict[str, Asset]]:
    """(relative name -> hashed name, hashed name -> file), read once per process."""
    urls: dict[str, str] = {}
    files: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        rel = path.relative_to(STATIC_DIR).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        stem, dot, suffix = rel.rpartition(".")
        hashed = f"{stem}.{digest}.{suffix}" if dot else f"{rel}.{digest}"
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media_type.startswith("text/") or media_type.endswith("javascript"):
            media_type += "; charset=utf-8"
        urls[rel] = hashed
        files[hashed] = Asset(path, media_type)
    return urls, files


def asset_url(name: str) -> str:
    """The URL of ``web/static/<name>`` (e.g. ``vendor/htmx.min.js``), with its content hash."""
    urls, _ = _manifest()
    return PREFIX + urls[name]


router = APIRouter(include_in_schema=False)


@router.get(PREFIX + "{name:path}")
def static_file(name: str) -> Response:
    """A static file by its hashed name; any other name is a plain 404."""
    _, files = _manifest()
    asset = files.get(name)
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        asset.path.read_bytes(),
        media_type=asset.media_type,
        headers={"Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"},
    )
