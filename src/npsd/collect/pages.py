"""Collecting answers, respondent side: server-rendered ``/r/{token}``, ``/s/{publicId}``, ``/u/{token}``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
