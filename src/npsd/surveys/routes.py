"""SalesOS-compatible ``/v1/nps-surveys``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/nps-surveys", tags=["surveys"])
