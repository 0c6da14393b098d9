"""``GET /nps/export``: every record matching the ``/nps`` list filters, streamed.

Included before the records router, so ``/nps/export`` wins over ``/nps/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["exports"])
