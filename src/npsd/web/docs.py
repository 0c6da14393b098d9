"""The API documentation pages ``/docs`` and ``/redoc``, served without any other host.

(Filled in with the vendored Swagger UI and ReDoc by ``scripts/vendor_assets.py``.)
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
