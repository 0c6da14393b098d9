"""Collecting answers, API side: invitations and unsubscribes under ``/v1``.

Included before the surveys router, so ``/v1/nps-surveys/{id}/invitations`` is matched here.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["collect"])
