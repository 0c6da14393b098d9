"""The overview ``/app``: the organization's NPS with its uncertainty (filled in by the overview work)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from npsd.web.render import PageRoute, render
from npsd.web.session import PageViewer

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/app", response_class=HTMLResponse)
def overview(request: Request, user: PageViewer) -> HTMLResponse:
    """The organization's NPS at a glance."""
    return render(request, "overview.html", {}, user=user)
