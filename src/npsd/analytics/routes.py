"""Survey statistics and NPS metrics: ``/v1/nps-surveys/stats``, ``/nps-metrics``, ``/metrics/nps``.

Included before the surveys router, so these static paths win over ``/v1/nps-surveys/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/nps-surveys", tags=["metrics"])
