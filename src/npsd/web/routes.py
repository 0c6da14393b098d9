"""The dashboard's routers, gathered: the app includes this one router (plus assets and docs)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from npsd.kit.errors import NotFound
from npsd.web.pages import (
    alerts,
    answers,
    auth,
    companies,
    data,
    digests,
    insights,
    organization,
    overview,
    responses,
    settings,
    surveys,
)
from npsd.web.render import PageRoute
from npsd.web.session import PageViewer

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """A browser opening the server's address lands on the dashboard."""
    return RedirectResponse("/app", status_code=303)


for section in (
    auth,
    overview,
    surveys,
    responses,
    answers,
    insights,
    companies,
    settings,
    organization,
    data,
    digests,
    alerts,
):
    router.include_router(section.router)

unknown_pages = APIRouter(route_class=PageRoute, include_in_schema=False)


@unknown_pages.get("/app/{rest:path}")
def unknown_page(rest: str, user: PageViewer) -> Response:
    """Any other dashboard address: the sign-in page without a session, else a 404 page."""
    raise NotFound(f"there is no dashboard page /app/{rest}")


router.include_router(unknown_pages)  # last: every real page matches first
