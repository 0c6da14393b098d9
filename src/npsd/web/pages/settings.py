"""Dashboard section `settings` (filled in by its own change)."""

from __future__ import annotations

from fastapi import APIRouter

from npsd.web.render import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
