"""The dashboard's routers, gathered: the app includes this one router (plus assets and docs)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """A browser opening the server's address lands on the dashboard."""
    return RedirectResponse("/app", status_code=303)
